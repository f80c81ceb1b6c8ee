// SPDX-License-Identifier: GPL-2.0-only
/*
 * Restore's write-back (restore.c calls it frozen): the pages to put back
 * go by process_vm_writev to a private mapping and pwritev to a shared
 * one's file, straight from the decoded image, split over two threads when
 * there are many; and, before the freeze, a pass that makes the kernel
 * read those image pages once so the frozen copy does not pay for it.
 */
#include "restore-internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/util.h"
#include "track/freeze.h"

#define ZEROS_LEN (64U << 10)

static const uint8_t zeros[ZEROS_LEN];

/* A run of at most this many pages needs at most as many local iovecs:
 * it always fits an empty batch. */
#define RUN_PAGES 256

struct wbatch {
	struct iovec l[IOV_BATCH], rv[IOV_BATCH];
	size_t nl, nr;
	uint64_t bytes;
};

/* Local iovecs for the image's content of [a, e): data runs and zeros. */
static void add_content(struct rst *x, struct wbatch *b, uint64_t a, uint64_t e)
{
	while (a < e) {
		const uint8_t *p = ri_page(x->ri, a, &x->hint);
		uint64_t len = PAGE_SIZE_4K;

		while (a + len < e && (p || len < ZEROS_LEN)) {
			const uint8_t *q = ri_page(x->ri, a + len, &x->hint);

			if (p ? q != p + len : q != NULL)
				break;
			len += PAGE_SIZE_4K;
		}
		b->l[b->nl++] = (struct iovec){ (void *)(p ? p : zeros), len };
		b->bytes += len;
		a += len;
	}
}

static int vm_flush(struct rst *x, struct wbatch *b)
{
	ssize_t n;

	if (!b->nr)
		return 0;
	x->touched = true;
	n = process_vm_writev(x->pid, b->l, b->nl, b->rv, b->nr, 0);
	x->st->write_calls++;
	if (n < 0)
		return -errno;
	if ((uint64_t)n != b->bytes)
		return -EFAULT;
	b->nl = b->nr = 0;
	b->bytes = 0;
	return 0;
}

/* The pages of set in a private mapping: process_vm_writev, in batches of
 * up to 1024 remote and 1024 local iovecs. */
static int write_vm(struct rst *x, struct wbatch *b, const struct range_set *set)
{
	int r = 0;

	for (size_t i = 0; r == 0 && i < set->n; i++)
		for (uint64_t a = set->r[i].start; r == 0 && a < set->r[i].end;) {
			uint64_t e = MIN(set->r[i].end, a + RUN_PAGES * PAGE_SIZE_4K);

			if (b->nr == IOV_BATCH || b->nl + (e - a) / PAGE_SIZE_4K > IOV_BATCH)
				r = vm_flush(x, b);
			if (r < 0)
				break;
			b->rv[b->nr++] = (struct iovec){ (void *)a, e - a };
			add_content(x, b, a, e);
			a = e;
		}
	return r;
}

/* The pages of set in a shared mapping: pwritev to its backing file.
 * -EINVAL before anything was written: the file takes no writes
 * (hugetlbfs); the caller goes through the process instead. */
static int write_file(struct rst *x, struct wbatch *b, int fd, const struct pass_region *reg,
		      const struct range_set *set)
{
	bool wrote = false;
	int r = 0;

	for (size_t i = 0; r == 0 && i < set->n; i++)
		for (uint64_t a = set->r[i].start; r == 0 && a < set->r[i].end;) {
			uint64_t e = MIN(set->r[i].end, a + RUN_PAGES * PAGE_SIZE_4K);
			off_t off = (off_t)(reg->pgoff * PAGE_SIZE_4K + (a - reg->start));
			ssize_t n;

			b->nl = 0;
			b->bytes = 0;
			add_content(x, b, a, e);
			n = pwritev(fd, b->l, (int)b->nl, off);
			x->st->write_calls++;
			if (n < 0 && !wrote && (errno == EINVAL || errno == EBADF || errno == EPERM))
				return -EINVAL; /* not one byte of it written */
			x->touched = wrote = true;
			if (n < 0)
				r = -errno;
			else if ((uint64_t)n != b->bytes)
				r = -EIO;
			a = e;
		}
	b->nl = 0;
	b->bytes = 0;
	return r;
}

/* restore_warm's batch, read by the kernel into x->buf; emptied. */
static void warm_flush(struct rst *x, struct wbatch *b, pid_t self)
{
	struct iovec to = { x->buf, b->bytes };

	if (b->nl)
		(void)process_vm_writev(self, b->l, b->nl, &to, 1, 0);
	b->nl = 0;
	b->bytes = 0;
}

/* Makes the kernel read once, through our own address space, every image
 * page of set that the frozen write-back will copy: process_vm_writev from
 * them to x->buf, in this process.  On the project's test machine (a VM
 * with shadow paging) the kernel's first access to a page of ours costs
 * 2-3 us inside the copy and the next ones about 0.5 us; reading the pages
 * in user mode does not help (docs/restore.md).  Paid here, while the
 * process runs, it is not paid frozen.  Nothing of the process is read or
 * changed, and a failure only costs time: it is not one. */
void restore_warm(struct rst *x, const struct range_set *set)
{
	struct wbatch *b = calloc(1, sizeof(*b));
	pid_t self = getpid();

	for (size_t i = 0; b && i < set->n; i++)
		for (uint64_t a = set->r[i].start; a < set->r[i].end;) {
			uint64_t e = MIN(set->r[i].end, a + RUN_PAGES * PAGE_SIZE_4K);

			if (b->nl + (e - a) / PAGE_SIZE_4K > IOV_BATCH ||
			    b->bytes + (e - a) > STEP)
				warm_flush(x, b, self);
			add_content(x, b, a, e);
			a = e;
		}
	if (b)
		warm_flush(x, b, self);
	free(b);
}

/* Every page of c, region by region, batched in b. */
static int write_back_in(struct rst *x, struct wbatch *b, const struct range_set *c)
{
	int r = 0;

	for (size_t i = 0; r == 0 && i < x->ri->n_regions; i++) {
		const struct pass_region *reg = &x->ri->regions[i];
		struct range_set part = { 0 };
		int fd = x->wfd[i];

		r = range_set_clip(c, reg->start, reg->end, &part);
		if (r == 0 && fd >= 0 && part.n) {
			r = vm_flush(x, b); /* keep the order of the writes simple */
			if (r == 0)
				r = write_file(x, b, fd, reg, &part);
			if (r == -EINVAL)
				r = write_vm(x, b, &part);
		} else if (r == 0) {
			r = write_vm(x, b, &part);
		}
		range_set_free(&part);
	}
	if (r == 0)
		r = vm_flush(x, b);
	return r;
}

static int write_back(struct rst *x, const struct range_set *c)
{
	struct wbatch *b = calloc(1, sizeof(*b));
	int r = b ? write_back_in(x, b, c) : -ENOMEM;

	free(b);
	return r;
}

/* The pages to write cut in chunks of CHUNK_PAGES, which both writers take
 * in turn: one that starts late (its CPU was asleep: 1-4 ms in 3 of 20
 * restores here, traced) leaves the other more, rather than its half to
 * do after it.  Taken under the writer's mutex: once the freezing thread
 * has closed the list and no chunk is in flight, nothing more is written. */
#define CHUNK_PAGES 256

struct chunks {
	const struct range_set *c;
	uint64_t *cut; /* n + 1 addresses: chunk i is [cut[i], cut[i + 1]) */
	size_t n, next, in_flight;
	bool closed;   /* the freezing thread is done: take no more */
	int r;         /* the first failure */
};

/* The second writer: started before the freeze (restore_writer_start),
 * so that neither the thread nor its memory is made while the process is
 * frozen (here a new thread and the first touch of its batch cost
 * 0.1-0.4 ms); let go to the chunks restore_write cut, or to a closed
 * list (nothing for it: it quits). */
struct writer {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool go;
	struct rst x; /* a copy of the caller's, with its own hint and stats */
	struct restore_stats st;
	struct chunks ch;
	struct wbatch b;  /* touched before the freeze, */
	struct wbatch mb; /* as is the freezing thread's */
};

/* Write chunks while there are any and none failed; b: this thread's. */
static void write_chunks(struct writer *w, struct rst *x, struct wbatch *b)
{
	struct chunks *ch = &w->ch;

	pthread_mutex_lock(&w->mu);
	while (!ch->closed && !ch->r && ch->next < ch->n) {
		size_t i = ch->next++;
		struct range_set part = { 0 };
		int r;

		ch->in_flight++;
		pthread_mutex_unlock(&w->mu);
		r = range_set_clip(ch->c, ch->cut[i], ch->cut[i + 1], &part);
		if (r == 0)
			r = write_back_in(x, b, &part);
		range_set_free(&part);
		pthread_mutex_lock(&w->mu);
		if (r < 0 && !ch->r)
			ch->r = r;
		if (!--ch->in_flight)
			pthread_cond_broadcast(&w->cv);
	}
	pthread_mutex_unlock(&w->mu);
}

static void *writer_main(void *p)
{
	struct writer *w = p;

	/* As the freezing thread (freeze.h); without the privilege it keeps
	 * its own: the process is frozen, a CPU is likely free anyway. */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), FREEZE_NICE) < 0)
		log_debug_errno(errno, "restore writer keeps its priority: %m");
	pthread_mutex_lock(&w->mu);
	while (!w->go)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
	write_chunks(w, &w->x, &w->b);
	return NULL;
}

void restore_writer_start(struct rst *x)
{
	struct writer *w;

	if (x->w || sysconf(_SC_NPROCESSORS_ONLN) < 2)
		return;
	w = malloc(sizeof(*w));
	if (!w)
		return;
	memset(w, 0, sizeof(*w)); /* touches it: no first-touch fault frozen */
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
		log_debug("restore: no second writer thread: one writes everything");
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		free(w);
		return;
	}
	x->w = w;
}

/* Lets the writer go (w->x and w->ch set); close: with nothing to take. */
static void writer_go(struct writer *w, bool close)
{
	pthread_mutex_lock(&w->mu);
	if (close)
		w->ch.closed = true;
	w->go = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void restore_writer_stop(struct rst *x)
{
	struct writer *w = x->w;

	if (!w)
		return;
	writer_go(w, true);
	pthread_join(w->thread, NULL);
	x->st->write_calls += w->st.write_calls;
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w->ch.cut);
	free(w);
	x->w = NULL;
}

/* Cut c into chunks of CHUNK_PAGES pages (the last may hold fewer). */
static int cut_chunks(const struct range_set *c, struct chunks *ch)
{
	uint64_t pages = range_set_bytes(c) / PAGE_SIZE_4K, left = CHUNK_PAGES;
	size_t n = 0;

	ch->c = c;
	ch->cut = calloc(pages / CHUNK_PAGES + 2, sizeof(*ch->cut));
	if (!ch->cut)
		return -ENOMEM;
	ch->cut[n++] = c->r[0].start;
	for (size_t i = 0; i < c->n; i++)
		for (uint64_t a = c->r[i].start; a < c->r[i].end;) {
			uint64_t k = MIN(left, (c->r[i].end - a) / PAGE_SIZE_4K);

			a += k * PAGE_SIZE_4K;
			left -= k;
			if (!left) {
				ch->cut[n++] = a;
				left = CHUNK_PAGES;
			}
		}
	if (left != CHUNK_PAGES)
		ch->cut[n++] = c->r[c->n - 1].end;
	ch->n = n - 1;
	return 0;
}

/* write_back, shared in chunks with the second writer: while the process
 * is frozen it uses no CPU, and the kernel's copies into it run on both
 * (docs/restore.md).  One thread when there is one CPU, few pages, or no
 * thread could be started. */
int restore_write(struct rst *x, const struct range_set *c)
{
	struct writer *w;
	int r;

	if (range_set_bytes(c) / PAGE_SIZE_4K < RESTORE_SPLIT_PAGES) {
		restore_writer_stop(x);
		return write_back(x, c);
	}
	restore_writer_start(x); /* when more were written since than expected */
	w = x->w;
	if (!w || cut_chunks(c, &w->ch) < 0) {
		restore_writer_stop(x);
		return write_back(x, c); /* no thread, or no memory: all here */
	}
	w->x = *x;
	w->x.st = &w->st;
	w->x.w = NULL;
	writer_go(w, false);
	write_chunks(w, x, &w->mb);
	/* Close the list, wait for the writer's chunk in flight if any; one
	 * that has not started yet takes nothing now (restore_process joins
	 * it after the thaw). */
	pthread_mutex_lock(&w->mu);
	w->ch.closed = true;
	while (w->ch.in_flight)
		pthread_cond_wait(&w->cv, &w->mu);
	x->touched |= w->x.touched;
	r = w->ch.r;
	pthread_mutex_unlock(&w->mu);
	return r;
}
