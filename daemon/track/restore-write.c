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
#include <sys/uio.h>
#include <unistd.h>

#include "basic/util.h"

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
			    b->bytes + (e - a) > STEP) {
				struct iovec to = { x->buf, b->bytes };

				(void)process_vm_writev(self, b->l, b->nl, &to, 1, 0);
				b->nl = 0;
				b->bytes = 0;
			}
			add_content(x, b, a, e);
			a = e;
		}
	if (b && b->nl) {
		struct iovec to = { x->buf, b->bytes };

		(void)process_vm_writev(self, b->l, b->nl, &to, 1, 0);
	}
	free(b);
}

/* Every page of c, region by region. */
static int write_back(struct rst *x, const struct range_set *c)
{
	struct wbatch *b = calloc(1, sizeof(*b));
	int r = b ? 0 : -ENOMEM;

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
	free(b);
	return r;
}

/* Below this many pages one thread writes everything: a second one costs
 * more to start than it saves. */
#define SPLIT_PAGES 512

struct half {
	struct rst x; /* a copy of the caller's, with its own hint and stats */
	struct restore_stats st;
	struct range_set c;
	int r;
};

static void *write_half(void *p)
{
	struct half *h = p;

	h->r = write_back(&h->x, &h->c);
	return NULL;
}

/* The address below which lie half of c's pages. */
static uint64_t middle(const struct range_set *c)
{
	uint64_t left = range_set_bytes(c) / PAGE_SIZE_4K / 2 * PAGE_SIZE_4K;

	for (size_t i = 0; i < c->n; i++) {
		uint64_t len = c->r[i].end - c->r[i].start;

		if (left < len)
			return c->r[i].start + left;
		left -= len;
	}
	return UINT64_MAX;
}

/* write_back, the upper half of the pages by a second thread: while the
 * process is frozen it uses no CPU, and the kernel's copies into it run
 * on both (docs/restore.md).  One thread when there is one CPU, few pages,
 * or no thread can be started. */
int restore_write(struct rst *x, const struct range_set *c)
{
	struct range_set lo = { 0 };
	struct half *h;
	pthread_t th;
	uint64_t mid;
	int r;

	if (range_set_bytes(c) / PAGE_SIZE_4K < SPLIT_PAGES || sysconf(_SC_NPROCESSORS_ONLN) < 2)
		return write_back(x, c);
	h = calloc(1, sizeof(*h));
	if (!h)
		return write_back(x, c);
	h->x = *x;
	h->x.st = &h->st;
	mid = middle(c);
	r = range_set_clip(c, mid, UINT64_MAX, &h->c);
	if (r == 0)
		r = range_set_clip(c, 0, mid, &lo);
	if (r == 0 && pthread_create(&th, NULL, write_half, h) == 0) {
		r = write_back(x, &lo);
		pthread_join(th, NULL);
		x->touched |= h->x.touched;
		x->st->write_calls += h->st.write_calls;
		if (r == 0)
			r = h->r;
	} else {
		r = write_back(x, c); /* no memory or no thread: all here */
	}
	range_set_free(&lo);
	range_set_free(&h->c);
	free(h);
	return r;
}
