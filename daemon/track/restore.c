// SPDX-License-Identifier: GPL-2.0-only
/*
 * Restore (restore.h): compare while the process runs, then a short freeze
 * that writes back only what differs and puts the threads' state back.
 *
 * Why the pages written back are all the pages that differ: the tracker
 * pass taken before the comparison re-protects every page; a page the
 * comparison found equal and the process did not write after that pass is
 * still equal at the freeze, and the pass taken frozen reports every page
 * written after the first (writes, zaps, remaps: the tracker's contract).
 */
#include "restore-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>

#include "basic/util.h"
#include "track/freeze.h"

static bool page_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < PAGE_SIZE_4K / 8; i += 8)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
			return false;
	return true;
}

static int note_pass(struct range_set *set, const struct pass *p)
{
	int r = 0;

	for (size_t i = 0; r == 0 && i < p->data.n; i++)
		r = range_set_add(set, p->data.r[i].start, p->data.r[i].end);
	for (size_t i = 0; r == 0 && i < p->zero.n; i++)
		r = range_set_add(set, p->zero.r[i].start, p->zero.r[i].end);
	return r;
}

/* ---- the mappings must be the image's ---- */

static bool same_backing(const struct pass_region *a, const struct pass_region *b)
{
	return a->kind == b->kind && a->shared == b->shared && a->ino == b->ino &&
	       a->dev_major == b->dev_major && a->dev_minor == b->dev_minor;
}

/* b continues a: adjacent, same object, file offsets following on (the
 * kernel may split or merge a mapping's VMAs without changing anything). */
static bool continues(const struct pass_region *a, uint64_t a_end, const struct pass_region *b)
{
	return a_end == b->start && same_backing(a, b) &&
	       (!a->ino || a->pgoff + (a_end - a->start) / PAGE_SIZE_4K == b->pgoff);
}

/* The extent of the mapping starting at region i (adjacent pieces merged). */
static uint64_t mapping_end(const struct pass_region *r, size_t n, size_t *i)
{
	uint64_t end = r[*i].end;

	while (*i + 1 < n && continues(&r[*i], end, &r[*i + 1]))
		end = r[++*i].end;
	return end;
}

static bool is_stack(const struct pass_region *r)
{
	return r->kind == VMA_ANON && r->path && !strcmp(r->path, "[stack]");
}

static const char *path_of(const struct pass_region *r)
{
	return r->path && r->path[0] ? r->path : "anonymous";
}

/*
 * Every mapping of the image is a mapping now, exactly (the main stack may
 * have grown down since: the part below is left as it is), and no writable
 * mapping is new.  Names the first difference.
 */
static int check_layout(struct rst *x, const struct pass *live)
{
	const struct pass_region *im = x->ri->regions, *lv = live->regions;
	size_t ni = x->ri->n_regions, nl = live->n_regions, i = 0, l = 0;

	while (i < ni || l < nl) {
		size_t i0 = i, l0 = l;
		uint64_t ie = i < ni ? mapping_end(im, ni, &i) : 0;
		uint64_t le = l < nl ? mapping_end(lv, nl, &l) : 0;

		if (i0 < ni && l0 < nl && ie == le && same_backing(&im[i0], &lv[l0]) &&
		    (im[i0].start == lv[l0].start ||
		     (is_stack(&im[i0]) && lv[l0].start < im[i0].start)) &&
		    (!im[i0].ino || im[i0].pgoff == lv[l0].pgoff)) {
			i++, l++;
			continue;
		}
		if (l0 >= nl || (i0 < ni && im[i0].start <= lv[l0].start))
			snprintf(x->why, x->why_len, "the mappings of process %d differ from the "
				 "checkpoint's: %llx-%llx (%s) is gone, moved, resized or replaced; "
				 "nothing was changed",
				 (int)x->pid, (unsigned long long)im[i0].start, (unsigned long long)ie,
				 path_of(&im[i0]));
		else
			snprintf(x->why, x->why_len, "the mappings of process %d differ from the "
				 "checkpoint's: %llx-%llx (%s) is new or changed since; nothing was "
				 "changed",
				 (int)x->pid, (unsigned long long)lv[l0].start, (unsigned long long)le,
				 path_of(&lv[l0]));
		return -ESTALE;
	}
	return 0;
}

/* The live region holding [start, end), for its backing file. */
static const struct pass_region *live_region(const struct pass *live, uint64_t start)
{
	ssize_t k = pass_find_region(live, start);

	return k >= 0 ? &live->regions[k] : NULL;
}

static int backing_fd(struct rst *x, const struct pass *live, const struct pass_region *img)
{
	const struct pass_region *lr = live_region(live, img->start);

	return lr && lr->kind == VMA_SHARED ? tracker_backing_fd(x->t, lr->backing) : -1;
}

/*
 * The backing file of each shared region, opened again for writing (the
 * tracker's copy only reads), before the freeze: a region without one is
 * written through the process instead.
 */
static int open_writers(struct rst *x, const struct pass *live)
{
	x->wfd = calloc(x->ri->n_regions + 1, sizeof(int));
	if (!x->wfd)
		return -ENOMEM;
	for (size_t i = 0; i < x->ri->n_regions; i++) {
		int fd = backing_fd(x, live, &x->ri->regions[i]);
		char path[64];

		x->wfd[i] = -1;
		if (fd < 0)
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		x->wfd[i] = open(path, O_WRONLY | O_CLOEXEC);
	}
	return 0;
}

static void close_writers(struct rst *x)
{
	for (size_t i = 0; x->wfd && i < x->ri->n_regions; i++)
		closep(&x->wfd[i]);
	free(x->wfd);
}

/* ---- comparing while it runs ---- */

static void progress(struct rst *x, uint64_t pages)
{
	uint64_t before = x->done;

	x->done += pages;
	if (x->o->progress && (x->done >> 12) != (before >> 12))
		x->o->progress(x->o->ud, "compare", x->done, x->st->image_pages);
}

/* Pages of [a, b) that in holds not: different (the image has data there). */
static int add_gaps(struct range_set *out, uint64_t a, uint64_t b, const struct range_set *in)
{
	struct range_set part = { 0 };
	uint64_t pos = a;
	int r = range_set_clip(in, a, b, &part);

	for (size_t i = 0; r == 0 && i <= part.n; i++) {
		uint64_t next = i < part.n ? part.r[i].start : b;

		if (next > pos)
			r = range_set_add(out, pos, next);
		if (i < part.n)
			pos = part.r[i].end;
	}
	range_set_free(&part);
	return r;
}

/* Compare len bytes read from addr (at buf) with the image, page by page. */
static int compare_buf(struct rst *x, uint64_t addr, const uint8_t *buf, uint64_t len)
{
	int r = 0;

	for (uint64_t o = 0; r == 0 && o < len; o += PAGE_SIZE_4K) {
		const uint8_t *want = ri_page(x->ri, addr + o, &x->hint);
		const uint8_t *got = buf + o;

		if (want ? memcmp(want, got, PAGE_SIZE_4K) : !page_zero(got))
			r = range_set_add(&x->diff, addr + o, addr + o + PAGE_SIZE_4K);
	}
	x->st->pages_compared += len / PAGE_SIZE_4K;
	progress(x, len / PAGE_SIZE_4K);
	return r;
}

/* One page by itself: read and compared, or noted unreadable. */
static int compare_page(struct rst *x, int fd, const struct pass_region *reg, uint64_t a)
{
	ssize_t n;

	if (fd >= 0) {
		n = pread(fd, x->buf, PAGE_SIZE_4K,
			  (off_t)(reg->pgoff * PAGE_SIZE_4K + (a - reg->start)));
	} else {
		struct iovec l = { x->buf, PAGE_SIZE_4K }, rv = { (void *)a, PAGE_SIZE_4K };
		n = process_vm_readv(x->pid, &l, 1, &rv, 1, 0);
	}
	if (n == (ssize_t)PAGE_SIZE_4K)
		return compare_buf(x, a, x->buf, PAGE_SIZE_4K);
	progress(x, 1);
	return range_set_add(&x->unreadable, a, a + PAGE_SIZE_4K);
}

/* The segments [seg, seg + n) read with one process_vm_readv into x->buf. */
static int compare_vm(struct rst *x, const struct pass_region *reg, const struct range *seg,
		      size_t n)
{
	struct iovec l = { x->buf, 0 }, *rv = x->rv;
	int r = 0;

	for (size_t i = 0; i < n; i++) {
		rv[i] = (struct iovec){ (void *)seg[i].start, seg[i].end - seg[i].start };
		l.iov_len += rv[i].iov_len;
	}
	ssize_t got = process_vm_readv(x->pid, &l, 1, rv, n, 0);
	uint64_t at = 0;
	for (size_t i = 0; r == 0 && i < n; i++) {
		uint64_t len = seg[i].end - seg[i].start;

		if (got >= 0 && at + len <= (uint64_t)got) {
			r = compare_buf(x, seg[i].start, x->buf + at, len);
		} else {
			/* short: this segment page by page, to find what fails */
			for (uint64_t a = seg[i].start; r == 0 && a < seg[i].end; a += PAGE_SIZE_4K)
				r = compare_page(x, -1, reg, a);
			got = -1; /* the buffer no longer holds the rest */
		}
		at += len;
	}
	return r;
}

/* [a, b) of a shared mapping, read from its backing file. */
static int compare_file(struct rst *x, int fd, const struct pass_region *reg, uint64_t a,
			uint64_t b)
{
	int r = 0;

	for (uint64_t pos = a; r == 0 && pos < b;) {
		uint64_t len = MIN(b - pos, STEP);
		ssize_t n = pread(fd, x->buf, len,
				  (off_t)(reg->pgoff * PAGE_SIZE_4K + (pos - reg->start)));

		if (n == (ssize_t)len) {
			r = compare_buf(x, pos, x->buf, len);
		} else {
			for (uint64_t p = pos; r == 0 && p < pos + len; p += PAGE_SIZE_4K)
				r = compare_page(x, fd, reg, p);
		}
		pos += len;
	}
	return r;
}

/* Read what set holds of a region, in batches, and compare it. */
static int compare_set(struct rst *x, int fd, const struct pass_region *reg,
		       const struct range_set *set)
{
	struct range seg[IOV_BATCH];
	size_t n = 0;
	uint64_t bytes = 0;
	int r = 0;

	for (size_t i = 0; r == 0 && i < set->n; i++) {
		if (fd >= 0) {
			r = compare_file(x, fd, reg, set->r[i].start, set->r[i].end);
			continue;
		}
		for (uint64_t a = set->r[i].start; r == 0 && a < set->r[i].end;) {
			uint64_t len = MIN(set->r[i].end - a, STEP - bytes);

			seg[n++] = (struct range){ a, a + len };
			bytes += len;
			a += len;
			if (n == IOV_BATCH || bytes == STEP) {
				r = compare_vm(x, reg, seg, n);
				n = 0;
				bytes = 0;
			}
		}
	}
	if (r == 0 && n)
		r = compare_vm(x, reg, seg, n);
	return r;
}

/*
 * One region of the image.  Anonymous memory: only populated pages are read
 * (reading an empty one would populate it); an empty page where the image
 * has data differs.  Shared: read from the backing file (holes cost
 * nothing).  Private file mappings: every page.
 */
static int compare_region(struct rst *x, const struct pass *live, const struct pass_region *reg)
{
	struct range_set read = { 0 };
	int fd = backing_fd(x, live, reg), r = 0;
	uint64_t pages = (reg->end - reg->start) / PAGE_SIZE_4K, before = x->st->pages_compared;

	if (reg->kind == VMA_ANON) {
		r = tracker_populated(x->t, reg->start, reg->end, &read);
		for (size_t i = ri_find(x->ri, reg->start);
		     r == 0 && i < x->ri->n && x->ri->p[i].start < reg->end; i++)
			if (x->ri->p[i].off != RI_ZERO)
				r = add_gaps(&x->diff, MAX(x->ri->p[i].start, reg->start),
					     MIN(x->ri->p[i].end, reg->end), &read);
	} else {
		r = range_set_add(&read, reg->start, reg->end);
	}
	if (r == 0)
		r = compare_set(x, fd, reg, &read);
	range_set_free(&read);
	progress(x, pages - MIN(pages, x->st->pages_compared - before));
	return r;
}

static int compare(struct rst *x, const struct pass *live)
{
	int r = 0;

	for (size_t i = 0; r == 0 && i < x->ri->n_regions; i++)
		r = compare_region(x, live, &x->ri->regions[i]);
	if (r < 0)
		snprintf(x->why, x->why_len, "cannot compare process %d with the image: %s",
			 (int)x->pid, strerror(-r));
	x->st->pages_differing = range_set_bytes(&x->diff) / PAGE_SIZE_4K;
	return r;
}

/* ---- the freeze ---- */

/* How long the scan helper is held on a CPU (tracker_helper_hold) before
 * the kernel-read pass and again before the freeze: both take less. */
#define HOLD_NS (20ULL * 1000 * 1000)

/* From here a dying daemon must take the process with it rather than leave
 * it running half restored (as in the injection window: tracking.md). */
static int exit_kill(const struct freeze *f)
{
	for (size_t i = 0; i < f->n; i++)
		if (ptrace(PTRACE_SETOPTIONS, f->t[i].tid, NULL, (void *)PTRACE_O_EXITKILL) < 0)
			return -errno;
	return 0;
}

/* What to write back: found different, or written since (but readable). */
static int pages_to_write(struct rst *x, const struct pass *fin, struct range_set *c)
{
	struct range_set since = { 0 };
	int r = note_pass(&since, fin);

	for (size_t i = 0; r == 0 && i < x->ri->n_regions; i++)
		r = range_set_clip(&since, x->ri->regions[i].start, x->ri->regions[i].end, c);
	for (size_t i = 0; r == 0 && i < x->diff.n; i++)
		r = range_set_add(c, x->diff.r[i].start, x->diff.r[i].end);
	x->st->pages_written_since = (range_set_bytes(c) - range_set_bytes(&x->diff)) / PAGE_SIZE_4K;
	for (size_t i = 0; r == 0 && i < x->unreadable.n; i++)
		r = range_set_remove(c, x->unreadable.r[i].start, x->unreadable.r[i].end);
	range_set_free(&since);
	return r;
}

/* Frozen: check, find what was written since, write back, put the threads
 * back, thaw.  *c: the pages written. */
static int frozen(struct rst *x, struct range_set *c)
{
	struct restore_stats *st = x->st;
	struct pass fin = { 0 };
	struct freeze f;
	pid_t bad_tid = 0;
	uint64_t t;
	int r;

	tracker_helper_hold(x->t, HOLD_NS);
	r = freeze_process(x->pid, &f);

	if (r < 0) {
		snprintf(x->why, x->why_len, "cannot stop process %d: %s", (int)x->pid,
			 f.why[0] ? f.why : strerror(-r));
		return r;
	}
	t = now_ns();
	st->freeze_ns = t - f.t_start_ns;
	/*
	 * The pass before the threads' check: it needs no ptrace, and the first
	 * ptrace request after a freeze waits until every stopped thread has
	 * left its CPU, which took 0.3-1 ms in most 1 GiB restores here when a
	 * thread of ours ran there next (entering our address space is slow
	 * under shadow paging: docs/restore.md).  A refusal hands the pass back
	 * all the same (restore_process).
	 */
	r = tracker_pass(x->t, PASS_FINAL, &fin);
	if (r == 0)
		r = note_pass(&x->taken, &fin);
	if (r < 0)
		snprintf(x->why, x->why_len, "cannot scan process %d: %s", (int)x->pid,
			 strerror(-r));
	if (r == 0 && !x->o->memory_only)
		r = threads_check(x->o->threads, &f, x->why, x->why_len);
	if (r == 0)
		r = check_layout(x, &fin);
	if (r == 0)
		r = pages_to_write(x, &fin, c);
	st->scan_ns = now_ns() - t;
	if (r == 0)
		r = exit_kill(&f);
	t = now_ns();
	if (r == 0) {
		r = restore_write(x, c);
		if (r < 0)
			snprintf(x->why, x->why_len, "writing back the memory of process %d failed "
				 "part-way: %s", (int)x->pid, strerror(-r));
	}
	st->write_ns = now_ns() - t;
	tracker_helper_release(x->t);
	t = now_ns();
	if (r == 0 && !x->o->memory_only) {
		r = threads_apply(x->o->threads, &f, &bad_tid);
		if (r < 0)
			snprintf(x->why, x->why_len, "setting the registers of thread %d failed: %s",
				 (int)bad_tid, strerror(-r));
		else
			st->threads = (uint32_t)x->o->threads->n;
	}
	st->threads_ns = now_ns() - t;
	t = now_ns();
	/* Half restored it cannot run on: leave it stopped for its owner. */
	thaw_process(&f, r < 0 && x->touched);
	st->thaw_ns = now_ns() - t;
	st->pause_ns = now_ns() - f.t_start_ns;
	if (r < 0 && x->touched) {
		size_t len = strlen(x->why);
		snprintf(x->why + len, x->why_len - len, "; process %d was left stopped (SIGSTOP): "
			 "it cannot safely run on half restored: restore it again, or kill it",
			 (int)x->pid);
	}
	st->pages_written = r == 0 ? range_set_bytes(c) / PAGE_SIZE_4K : 0;
	pass_free(&fin);
	return r;
}

int restore_process(struct tracker *t, const struct restore_image *ri,
		    const struct restore_opts *o, struct restore_stats *st, char *why,
		    size_t why_len)
{
	struct rst x = { .t = t, .pid = tracker_pid(t), .ri = ri, .o = o, .st = st, .why = why,
			 .why_len = why_len };
	struct range_set c = { 0 };
	struct pass live = { 0 };
	uint64_t t0 = now_ns();
	int r = 0;

	*st = (struct restore_stats){ .image_pages = ri->pages };
	why[0] = 0;
	if ((!o->memory_only && !o->threads) || ri->fill != ri->data_len ||
	    (ri->data_len && !ri->data))
		return -EINVAL; /* no threads given, or the image not sealed */
	x.buf = malloc(STEP);
	if (!x.buf)
		return -ENOMEM;
	/* Early, friendly refusals; both are checked again frozen. */
	if (!o->memory_only)
		r = threads_check_live(o->threads, x.pid, why, why_len);
	if (r < 0)
		goto out;
	/* From this pass on the tracker knows what the process writes. */
	r = tracker_pass(t, 0, &live);
	if (r == 0)
		r = note_pass(&x.taken, &live);
	if (r < 0)
		snprintf(why, why_len, "cannot scan process %d: %s", (int)x.pid, strerror(-r));
	if (r == 0)
		r = check_layout(&x, &live);
	if (r == 0)
		r = open_writers(&x, &live);
	if (r == 0)
		r = compare(&x, &live);
	/* The writer first: it has settled by the freeze. */
	if (r == 0 && range_set_bytes(&x.diff) / PAGE_SIZE_4K >= RESTORE_SPLIT_PAGES)
		restore_writer_start(&x);
	/* From here to the write-back the CPUs should not doze off. */
	if (r == 0)
		tracker_helper_hold(t, HOLD_NS);
	if (r == 0)
		restore_warm(&x, &x.diff);
	st->compare_ns = now_ns() - t0;
	if (r == 0)
		r = frozen(&x, &c);
	/* What our passes took, and what we wrote (a pwrite to a shared file
	 * is no write fault), is owed to the next checkpoint. */
	for (size_t i = 0; i < c.n; i++)
		range_set_add(&x.taken, c.r[i].start, c.r[i].end);
	tracker_resync(t, &x.taken);
out:
	tracker_helper_release(t);
	restore_writer_stop(&x);
	close_writers(&x);
	pass_free(&live);
	range_set_free(&c);
	range_set_free(&x.taken);
	range_set_free(&x.diff);
	range_set_free(&x.unreadable);
	free(x.buf);
	return r;
}
