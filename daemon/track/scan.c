// SPDX-License-Identifier: GPL-2.0-only
/*
 * PAGEMAP_SCAN loops.  The vector can fill and the walk stop early, so a
 * scan resumes until the range is covered.  When a call returns more than
 * 512 regions the kernel restarts its walk internally and may report
 * walk_end short of where it got although it returned every page, so
 * walk_end < end is not taken alone as "pages left": we resume from the
 * further of walk_end and the last returned region, and rescanning an
 * already re-protected range is harmless (nothing is reported twice).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "internal.h"
#include "basic/log.h"
#include "basic/util.h"
#include "track/freeze.h"

/* Zero-pfn pages are zero; every other page returned is data. */
static int scan_loop(struct tracker *t, struct page_region *vec, struct pm_scan_arg tmpl,
		     struct pass *out)
{
	uint64_t cur = tmpl.start, end = tmpl.end;

	while (cur < end) {
		struct pm_scan_arg arg = tmpl;
		long n;

		arg.start = cur;
		arg.vec = (uint64_t)(uintptr_t)vec;
		arg.vec_len = t->vec_len;
		n = ioctl(t->pagemap_fd, PAGEMAP_SCAN, &arg);
		out->st.scan_calls++;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		for (long i = 0; i < n; i++) {
			const struct page_region *r = &vec[i];
			uint64_t pages = (r->end - r->start) / PAGE_SIZE_4K;
			bool zero = r->categories & PAGE_IS_PFNZERO;
			int rc = range_set_add(zero ? &out->zero : &out->data, r->start, r->end);

			if (rc < 0)
				return rc;
			if (zero)
				out->st.zero_pages += pages;
			if (r->categories & PAGE_IS_WRITTEN)
				out->st.written_pages += pages;
		}
		uint64_t next = MAX(arg.walk_end, n > 0 ? vec[n - 1].end : cur);
		if (next <= cur || (n < (long)t->vec_len && arg.walk_end >= end))
			break;
		cur = next;
	}
	return 0;
}

/*
 * Written pages in [start, end), atomically re-protected: only populated
 * ones (present or swapped).  Asked only for "written", this kernel also
 * reports every empty entry and protects it with a marker, allocating page
 * tables to hold the markers: 2 MiB per GiB of never-touched mapping, kept
 * after we detach; for an ASan binary's terabytes of shadow that is tens of
 * GiB and the OOM killer.  An empty page needs no protection anyway: a
 * write to it populates an entry without the protect bit, reported by the
 * next scan; one emptied by a zap is announced by UFFD_EVENT_REMOVE.
 */
static int scan_written_vec(struct tracker *t, struct page_region *vec, uint64_t start,
			    uint64_t end, struct pass *out)
{
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
		.start = start,
		.end = end,
		.category_mask = PAGE_IS_WRITTEN,
		.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		.return_mask = PAGE_IS_WRITTEN | PAGE_IS_PFNZERO,
	};

	return scan_loop(t, vec, arg, out);
}

int scan_written(struct tracker *t, uint64_t start, uint64_t end, struct pass *out)
{
	return scan_written_vec(t, t->vec, start, end, out);
}

/* Populated pages in [start, end), no protection change. */
int scan_present(struct tracker *t, uint64_t start, uint64_t end, struct pass *out)
{
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.start = start,
		.end = end,
		.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_PFNZERO,
	};

	return scan_loop(t, t->vec, arg, out);
}

/*
 * Data and holes of a file range mapped at [start, end) from offset off:
 * holes read as zero, so they are recorded as zero without reading.
 */
int scan_file_extents(int fd, uint64_t off, uint64_t start, uint64_t end, struct pass *out)
{
	uint64_t len = end - start, pos = off;
	int r;

	while (pos < off + len) {
		off_t d = lseek(fd, (off_t)pos, SEEK_DATA);
		uint64_t data = d < 0 ? off + len : MIN((uint64_t)d, off + len);

		if (d < 0 && errno != ENXIO)
			return -errno;
		if (data > pos) {
			r = range_set_add(&out->zero, start + (pos - off), start + (data - off));
			if (r < 0)
				return r;
		}
		if (data >= off + len)
			break;
		off_t h = lseek(fd, (off_t)data, SEEK_HOLE);
		uint64_t hole = h < 0 ? off + len : MIN((uint64_t)h, off + len);
		/* SEEK_HOLE is page-granular on shmem; round data outwards. */
		uint64_t a = data & ~(PAGE_SIZE_4K - 1);
		uint64_t b = (hole + PAGE_SIZE_4K - 1) & ~(PAGE_SIZE_4K - 1);
		r = range_set_add(&out->data, start + (a - off), start + (MIN(b, off + len) - off));
		if (r < 0)
			return r;
		pos = hole;
	}
	return 0;
}

/*
 * The final pass's written-scan, split between the calling thread and a
 * helper thread: the target is frozen then, so the CPUs it ran on are free,
 * and walking the page tables of a large mapping is most of the final pass
 * (1 GiB: about 1 ms here, even when it finds nothing).  Both threads take
 * pieces in address order from one list; the calling thread never waits
 * for a piece nobody took, so a helper that gets no CPU costs nothing but
 * its wakeup.  Each piece is scanned into its own sets, appended in order
 * afterwards (appending keeps the merge linear).
 */
struct scan_piece {
	uint64_t start, end;
	struct pass out; /* data, zero and st only */
	int r;
};

struct scan_helper {
	struct tracker *t;
	struct page_region *vec; /* the helper's own: t->vec is the caller's */
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	struct scan_piece *pieces;
	size_t n, next, finished;
	bool stop;
	_Atomic bool can_idle; /* at FREEZE_NICE: allowed back out of SCHED_IDLE */
	/* tracker_helper_hold: spin until then (now_ns), or until pieces are
	 * posted (posts changes) */
	_Atomic uint64_t hold_until;
	_Atomic unsigned posts;
};

/* Pieces of about an eighth of the ranges, cut at 2 MiB (one page table). */
#define SPLIT_PIECES 8
#define SPLIT_ALIGN (2ULL << 20)

/* Held: on this CPU at SCHED_IDLE until pieces come, the hold ends or the
 * helper is stopped; then back to SCHED_OTHER (at FREEZE_NICE still). */
static void helper_spin(struct scan_helper *h)
{
	struct sched_param sp = { 0 };
	unsigned posts = h->posts;

	if (sched_setscheduler(0, SCHED_IDLE, &sp) < 0) {
		h->hold_until = 0;
		return;
	}
	for (unsigned i = 1; h->posts == posts; i++) {
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause(); /* a spin-wait hint: the sibling thread runs on */
#endif
		if (!(i % 256) && now_ns() >= h->hold_until)
			break;
	}
	if (sched_setscheduler(0, SCHED_OTHER, &sp) < 0) {
		/* Not expected (can_idle); at SCHED_IDLE it must not hold again. */
		log_warning_errno(errno, "scan helper left at SCHED_IDLE: %m");
		h->can_idle = false;
		h->hold_until = 0;
	}
}

static void *helper_main(void *arg)
{
	struct scan_helper *h = arg;

	/* At the freezing thread's priority; asleep but for the final scans,
	 * so it takes no CPU from anyone otherwise.  Without the privilege the
	 * pieces it takes are the ones the freezing thread had no time for. */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), FREEZE_NICE) < 0)
		log_debug_errno(errno, "scan helper keeps its priority: %m");
	else
		h->can_idle = true; /* leaving SCHED_IDLE needs what nice -20 needs */
	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (!h->stop && h->next >= h->n) {
			if (now_ns() < h->hold_until) {
				pthread_mutex_unlock(&h->mu);
				helper_spin(h);
				pthread_mutex_lock(&h->mu);
				continue;
			}
			pthread_cond_wait(&h->work, &h->mu);
		}
		if (h->stop)
			break;
		struct scan_piece *p = &h->pieces[h->next++];

		pthread_mutex_unlock(&h->mu);
		p->r = scan_written_vec(h->t, h->vec, p->start, p->end, &p->out);
		pthread_mutex_lock(&h->mu);
		if (++h->finished == h->n)
			pthread_cond_signal(&h->done);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

int scan_helper_start(struct tracker *t)
{
	struct scan_helper *h;
	int r;

	if (t->helper)
		return 0;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->t = t;
	h->vec = calloc(t->vec_len, sizeof(*h->vec));
	if (!h->vec) {
		free(h);
		return -ENOMEM;
	}
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->work, NULL);
	pthread_cond_init(&h->done, NULL);
	r = -pthread_create(&h->thread, NULL, helper_main, h);
	if (r < 0) {
		pthread_cond_destroy(&h->done);
		pthread_cond_destroy(&h->work);
		pthread_mutex_destroy(&h->mu);
		free(h->vec);
		free(h);
		return r;
	}
	t->helper = h;
	return 0;
}

void scan_helper_stop(struct tracker *t)
{
	struct scan_helper *h = t->helper;

	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->stop = true;
	h->hold_until = 0;
	h->posts++;
	pthread_cond_signal(&h->work);
	pthread_mutex_unlock(&h->mu);
	pthread_join(h->thread, NULL);
	pthread_cond_destroy(&h->done);
	pthread_cond_destroy(&h->work);
	pthread_mutex_destroy(&h->mu);
	free(h->vec);
	free(h);
	t->helper = NULL;
}

void tracker_helper_hold(struct tracker *t, uint64_t ns)
{
	struct scan_helper *h = t->helper;

	if (!h || !h->can_idle)
		return;
	pthread_mutex_lock(&h->mu);
	h->hold_until = now_ns() + ns;
	pthread_cond_signal(&h->work);
	pthread_mutex_unlock(&h->mu);
}

void tracker_helper_release(struct tracker *t)
{
	if (t->helper)
		t->helper->hold_until = 0;
}

/* Cut ranges into pieces of at most size bytes (size a multiple of 2 MiB). */
static int cut_pieces(const struct range_set *ranges, uint64_t size, struct scan_piece **ret,
		      size_t *n_ret)
{
	size_t n = 0, cap = ranges->n + SPLIT_PIECES + 1;
	struct scan_piece *p = calloc(cap, sizeof(*p));

	if (!p)
		return -ENOMEM;
	for (size_t i = 0; i < ranges->n; i++) {
		uint64_t s = ranges->r[i].start, e = ranges->r[i].end;

		while (s < e) {
			/* Cut at the next multiple of size: pieces line up
			 * with page tables whatever the range's start. */
			uint64_t cut = MIN(e, (s / size + 1) * size);

			if (n == cap) {
				struct scan_piece *np = reallocarray(p, cap * 2, sizeof(*p));

				if (!np) {
					free(p);
					return -ENOMEM;
				}
				memset(np + cap, 0, cap * sizeof(*np));
				p = np;
				cap *= 2;
			}
			p[n++] = (struct scan_piece){ .start = s, .end = cut };
			s = cut;
		}
	}
	*ret = p;
	*n_ret = n;
	return 0;
}

/* Append a piece's findings (in address order after what is there). */
static int merge_piece(struct scan_piece *p, struct pass *out, struct range_set *failed)
{
	int r = p->r;

	/* EPERM: a VMA in there is not ours any more; the caller re-reads
	 * the layout and scans again. */
	if (r == -EPERM)
		r = range_set_add(failed, p->start, p->end);
	for (size_t i = 0; r == 0 && i < p->out.data.n; i++)
		r = range_set_add(&out->data, p->out.data.r[i].start, p->out.data.r[i].end);
	for (size_t i = 0; r == 0 && i < p->out.zero.n; i++)
		r = range_set_add(&out->zero, p->out.zero.r[i].start, p->out.zero.r[i].end);
	out->st.scan_calls += p->out.st.scan_calls;
	out->st.zero_pages += p->out.st.zero_pages;
	out->st.written_pages += p->out.st.written_pages;
	return r;
}

uint64_t scan_split_min(const struct tracker *t)
{
	return t->opts.scan_split_min ? t->opts.scan_split_min : SCAN_SPLIT_MIN;
}

bool scan_split_worth(const struct tracker *t, const struct range_set *ranges)
{
	return t->helper && range_set_bytes(ranges) >= scan_split_min(t);
}

int scan_written_split(struct tracker *t, const struct range_set *ranges, struct pass *out,
		       struct range_set *failed)
{
	struct scan_helper *h = t->helper;
	uint64_t bytes = range_set_bytes(ranges);
	uint64_t size = MAX(SPLIT_ALIGN, (bytes / SPLIT_PIECES + SPLIT_ALIGN - 1) & ~(SPLIT_ALIGN - 1));
	struct scan_piece *p;
	size_t n;
	int r = cut_pieces(ranges, size, &p, &n);

	if (r < 0)
		return r;
	pthread_mutex_lock(&h->mu);
	h->pieces = p;
	h->n = n;
	h->next = h->finished = 0;
	h->posts++;
	pthread_cond_signal(&h->work);
	while (h->next < n) {
		struct scan_piece *mine = &p[h->next++];

		pthread_mutex_unlock(&h->mu);
		mine->r = scan_written_vec(t, t->vec, mine->start, mine->end, &mine->out);
		pthread_mutex_lock(&h->mu);
		h->finished++;
	}
	while (h->finished < n)
		pthread_cond_wait(&h->done, &h->mu);
	h->pieces = NULL;
	h->n = h->next = h->finished = 0;
	pthread_mutex_unlock(&h->mu);
	for (size_t i = 0; i < n; i++) {
		int rp = merge_piece(&p[i], out, failed);

		if (r == 0 && rp < 0)
			r = rp;
		range_set_free(&p[i].out.data);
		range_set_free(&p[i].out.zero);
	}
	free(p);
	return r;
}
