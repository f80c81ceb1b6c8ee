// SPDX-License-Identifier: GPL-2.0-only
/*
 * One pass: events taken, layout synced, every registered range scanned,
 * and what changed without a write fault captured by kind.  See tracker.h
 * for what a pass yields.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"
#include "basic/log.h"
#include "basic/util.h"
#include "track/regions.h"

/* The whole content of [s, e) from the source of truth for its kind. */
static int capture_whole(struct tracker *t, const struct pass_region *pr, uint64_t s,
			 uint64_t e, struct pass *out)
{
	if (pr->kind == VMA_SHARED && pr->backing >= 0)
		return scan_file_extents(t->backing[pr->backing].fd,
					 pr->pgoff * PAGE_SIZE_4K + (s - pr->start), s, e, out);
	return range_set_add(&out->data, s, e);
}

/* First capture of a newly registered range. */
static int capture_new(struct tracker *t, const struct pass_region *pr, uint64_t s, uint64_t e,
		       struct pass *out)
{
	out->st.new_bytes += e - s;
	/* Anon: unpopulated pages are zero; the written-scan of this pass
	 * reported every populated one (nothing was protected before). */
	if (pr->kind == VMA_ANON)
		return range_set_add(&out->zero, s, e);
	return capture_whole(t, pr, s, e, out);
}

/* A range whose content changed without a write fault (MADV_DONTNEED,
 * MADV_REMOVE, MREMAP_DONTUNMAP), or one we cannot protect: read again. */
static int capture_removed(struct tracker *t, const struct pass_region *pr, uint64_t s,
			   uint64_t e, struct pass *out)
{
	out->st.event_bytes += e - s;
	if (pr->kind == VMA_ANON) {
		int r = range_set_add(&out->zero, s, e);
		return r < 0 ? r : scan_present(t, s, e, out);
	}
	return capture_whole(t, pr, s, e, out);
}

/* Apply fn to every piece of set inside each image region. */
static int for_each_in_regions(struct tracker *t, const struct range_set *set, struct pass *out,
			       int (*fn)(struct tracker *, const struct pass_region *, uint64_t,
					 uint64_t, struct pass *))
{
	for (size_t i = 0; i < out->n_regions; i++) {
		const struct pass_region *pr = &out->regions[i];
		struct range_set part = { 0 };
		int r = range_set_clip(set, pr->start, pr->end, &part);

		for (size_t j = 0; r == 0 && j < part.n; j++)
			r = fn(t, pr, part.r[j].start, part.r[j].end, out);
		range_set_free(&part);
		if (r < 0)
			return r;
	}
	return 0;
}

static int scan_registered(struct tracker *t, struct pass *out, struct range_set *failed,
			   bool final)
{
	struct range_set parts = { 0 };
	int r = 0;

	for (size_t i = 0; r == 0 && i < out->n_regions; i++)
		r = range_set_clip(&t->registered, out->regions[i].start, out->regions[i].end,
				   &parts);
	/* Frozen, the target leaves its CPUs to us: split the walk. */
	if (r == 0 && final && scan_split_worth(t, &parts)) {
		r = scan_written_split(t, &parts, out, failed);
		range_set_free(&parts);
		return r;
	}
	for (size_t j = 0; r == 0 && j < parts.n; j++) {
		r = scan_written(t, parts.r[j].start, parts.r[j].end, out);
		/* EPERM: a VMA in there is not ours any more (replaced
		 * or moved while we looked): re-read the layout. */
		if (r == -EPERM)
			r = range_set_add(failed, parts.r[j].start, parts.r[j].end);
	}
	range_set_free(&parts);
	return r;
}

static int sync_and_scan(struct tracker *t, struct pass *out, struct range_set *removed,
			 bool final)
{
	struct range_set failed = { 0 };
	struct vma_list maps;
	int r;

	for (int attempt = 0;; attempt++) {
		uint64_t t0 = now_ns();

		r = maps_read(t->pid, &maps);
		if (r < 0)
			return r == -ENOENT ? -ESRCH : r;
		r = layout_sync(t, &maps, out);
		vma_list_free(&maps);
		if (r < 0)
			break;
		uint64_t t1 = now_ns();
		out->st.sync_ns += t1 - t0;
		range_set_clear(&failed);
		r = scan_registered(t, out, &failed, final);
		out->st.scan_ns += now_ns() - t1;
		if (r < 0 || !failed.n)
			break;
		if (attempt == 8) {
			r = -EAGAIN;
			break;
		}
		out->st.layout_retries++;
		r = tracker_take_events(t, removed);
		if (r < 0)
			break;
	}
	range_set_free(&failed);
	return r;
}

int tracker_pass(struct tracker *t, unsigned flags, struct pass *out)
{
	struct range_set removed = { 0 };
	uint64_t t0 = now_ns();
	int r;

	*out = (struct pass){ 0 };
	/* Writes through long-term pins never fault: read everything again. */
	if ((flags & PASS_FINAL) && t->always_dirty)
		tracker_invalidate(t);
	pthread_mutex_lock(&t->pass_lock);
	if (!(flags & PASS_FINAL))
		layout_recheck_sharing(t, t0);
	/* Started while the target runs, for the final scan to split; without
	 * it that scan runs in this thread alone. */
	if (!(flags & PASS_FINAL) && !t->helper &&
	    range_set_bytes(&t->registered) >= scan_split_min(t) && scan_helper_start(t) < 0)
		log_debug("no scan helper for process %d: the final scan runs alone", (int)t->pid);
	r = tracker_take_events(t, &removed);
	if (r == 0)
		r = sync_and_scan(t, out, &removed, flags & PASS_FINAL);
	/* Ranges removed since the last final pass are read again when the
	 * target is frozen: the zap that follows the event may land after a
	 * live pass read the range. */
	for (size_t i = 0; r == 0 && i < removed.n; i++)
		r = range_set_add(&t->gen_removed, removed.r[i].start, removed.r[i].end);
	if (r == 0)
		r = for_each_in_regions(t, &t->pending_new, out, capture_new);
	if (r == 0)
		r = for_each_in_regions(t, (flags & PASS_FINAL) ? &t->gen_removed : &removed, out,
					capture_removed);
	/* What cannot be write-protected is read whole in the final pass only:
	 * in a live pass it would be copied again each time, every copy
	 * stored, and the last one (frozen) is the one that counts. */
	if (r == 0 && (flags & PASS_FINAL))
		r = for_each_in_regions(t, &t->untracked, out, capture_removed);
	if (r == 0 && t->resync.n) {
		r = for_each_in_regions(t, &t->resync, out, capture_removed);
		if (r == 0)
			range_set_clear(&t->resync);
	}
	/* Another process writes these without faulting here: read whole,
	 * when frozen (the other writer is not, but this is as late as it gets). */
	for (size_t i = 0; r == 0 && (flags & PASS_FINAL) && i < out->n_regions; i++)
		if (out->regions[i].flags & REGION_SHARED_ELSEWHERE)
			r = capture_whole(t, &out->regions[i], out->regions[i].start,
					  out->regions[i].end, out);
	/* Data wins over zero where both were recorded. */
	for (size_t i = 0; r == 0 && i < out->data.n; i++)
		r = range_set_remove(&out->zero, out->data.r[i].start, out->data.r[i].end);
	if (r == 0) {
		for (size_t i = 0; i < out->n_regions; i++)
			if (range_set_overlaps(&t->pending_new, out->regions[i].start,
					       out->regions[i].end))
				out->regions[i].flags |= REGION_NEW;
		range_set_clear(&t->pending_new);
		if (flags & PASS_FINAL)
			range_set_clear(&t->gen_removed);
		t->passes++;
		t->last_written = out->st.written_pages;
		t->last_scan_ns = out->st.scan_ns;
	}
	pthread_mutex_unlock(&t->pass_lock);
	range_set_free(&removed);
	out->st.total_ns = now_ns() - t0;
	if (r < 0)
		pass_free(out);
	return r;
}

int tracker_resync(struct tracker *t, const struct range_set *ranges)
{
	int r = 0;

	pthread_mutex_lock(&t->pass_lock);
	for (size_t i = 0; r == 0 && i < ranges->n; i++)
		r = range_set_add(&t->resync, ranges->r[i].start, ranges->r[i].end);
	pthread_mutex_unlock(&t->pass_lock);
	return r;
}

int tracker_populated(struct tracker *t, uint64_t start, uint64_t end, struct range_set *out)
{
	struct pass tmp = { 0 };
	int r;

	pthread_mutex_lock(&t->pass_lock); /* the scan vector is the tracker's */
	r = scan_present(t, start, end, &tmp);
	pthread_mutex_unlock(&t->pass_lock);
	for (size_t i = 0; r == 0 && i < tmp.data.n; i++)
		r = range_set_add(out, tmp.data.r[i].start, tmp.data.r[i].end);
	pass_free(&tmp);
	return r;
}

int tracker_invalidate(struct tracker *t)
{
	struct range_set all = { 0 };
	int r = 0;

	pthread_mutex_lock(&t->pass_lock);
	for (size_t i = 0; r == 0 && i < t->registered.n; i++)
		r = range_set_add(&all, t->registered.r[i].start, t->registered.r[i].end);
	pthread_mutex_unlock(&t->pass_lock);
	/* Untracked ranges are read whole at every final pass anyway. */
	if (r == 0)
		r = tracker_resync(t, &all);
	range_set_free(&all);
	return r;
}

void pass_free(struct pass *p)
{
	if (!p)
		return;
	regions_free(p->regions, p->n_regions);
	range_set_free(&p->data);
	range_set_free(&p->zero);
	*p = (struct pass){ 0 };
}

ssize_t pass_find_region(const struct pass *p, uint64_t addr)
{
	size_t lo = 0, hi = p->n_regions;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (p->regions[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < p->n_regions && p->regions[lo].start <= addr)
		return (ssize_t)lo;
	return -1;
}

