// SPDX-License-Identifier: GPL-2.0-only
/*
 * What commit writes after the chunks: the log of a generation resolved
 * into disjoint spans (highest seq wins, clipped to the final regions) and
 * the index section holding them with the chunk table and region table.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "basic/util.h"

/* Max-heap of log entries: higher seq first, later arrival on a tie. */
struct heap {
	const struct disk_span *log;
	uint32_t *v;
	size_t n;
};

static bool wins(const struct heap *h, uint32_t a, uint32_t b)
{
	if (h->log[a].seq != h->log[b].seq)
		return h->log[a].seq > h->log[b].seq;
	return a > b;
}

static void swap_u32(uint32_t *a, uint32_t *b)
{
	uint32_t t = *a;

	*a = *b;
	*b = t;
}

static void heap_push(struct heap *h, uint32_t e)
{
	size_t i = h->n++;

	h->v[i] = e;
	for (; i && wins(h, h->v[i], h->v[(i - 1) / 2]); i = (i - 1) / 2)
		swap_u32(&h->v[i], &h->v[(i - 1) / 2]);
}

static void heap_pop(struct heap *h)
{
	size_t i = 0;

	h->v[0] = h->v[--h->n];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < h->n && wins(h, h->v[l], h->v[m]))
			m = l;
		if (r < h->n && wins(h, h->v[r], h->v[m]))
			m = r;
		if (m == i)
			return;
		swap_u32(&h->v[i], &h->v[m]);
		i = m;
	}
}

static int cmp_start(const void *a, const void *b, void *ud)
{
	const struct disk_span *log = ud;
	uint64_t x = log[*(const uint32_t *)a].start, y = log[*(const uint32_t *)b].start;

	return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Append [a, b) of entry e, merging with the previous span when seamless. */
static void emit(struct disk_span *out, size_t *n, uint64_t a, uint64_t b,
		 const struct disk_span *e)
{
	struct disk_span *last = *n ? &out[*n - 1] : NULL;

	if (last && last->end == a && last->kind == e->kind && last->chunk == e->chunk) {
		last->end = b;
		last->seq = MAX(last->seq, e->seq);
		return;
	}
	out[(*n)++] = (struct disk_span){ a, b, e->seq, e->kind, e->chunk };
}

/* All entry boundaries, sorted and unique. */
static uint64_t *boundaries(const struct disk_span *log, size_t n, size_t *ret_n)
{
	uint64_t *pts = malloc(2 * n * sizeof(*pts));
	size_t m = 0;

	if (!pts)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		pts[2 * i] = log[i].start;
		pts[2 * i + 1] = log[i].end;
	}
	qsort(pts, 2 * n, sizeof(*pts), cmp_u64);
	for (size_t i = 0; i < 2 * n; i++)
		if (!m || pts[i] != pts[m - 1])
			pts[m++] = pts[i];
	*ret_n = m;
	return pts;
}

/* Sweep the boundaries keeping the entries that cover the point in a heap. */
static int sweep(const struct disk_span *log, size_t n, struct disk_span *flat, size_t *n_flat)
{
	_cleanup_free_ uint32_t *order = malloc(n * sizeof(*order));
	_cleanup_free_ uint32_t *hv = malloc(n * sizeof(*hv));
	_cleanup_free_ uint64_t *pts = NULL;
	struct heap h = { .log = log, .v = hv };
	size_t n_pts = 0, j = 0;

	pts = boundaries(log, n, &n_pts);
	if (!order || !hv || !pts)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		order[i] = (uint32_t)i;
	qsort_r(order, n, sizeof(*order), cmp_start, (void *)log);
	for (size_t k = 0; k + 1 < n_pts; k++) {
		uint64_t x = pts[k];

		while (j < n && log[order[j]].start <= x)
			heap_push(&h, order[j++]);
		while (h.n && log[h.v[0]].end <= x)
			heap_pop(&h);
		if (h.n)
			emit(flat, n_flat, x, pts[k + 1], &log[h.v[0]]);
	}
	return 0;
}

/*
 * Runs: stretches of consecutive log entries of one pass, each starting
 * where the one before ends (a chunk's extents; chunks that follow each
 * other in address and were put one after the other).  Seamless, not just
 * increasing: when workers finish chunks 1, 3, 2, the run 1-3 would
 * overlap the run of 2.
 */
struct runs {
	const struct disk_span *log;
	size_t n;
	uint32_t *first; /* first entry of each run, sorted by (seq, start) */
	size_t n_runs;
};

static bool run_continues(const struct disk_span *log, size_t n, size_t i)
{
	return i < n && log[i].start == log[i - 1].end && log[i].seq == log[i - 1].seq;
}

static int cmp_seq_start(const void *a, const void *b, void *ud)
{
	const struct disk_span *log = ud, *x = &log[*(const uint32_t *)a],
				*y = &log[*(const uint32_t *)b];

	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* The entries of runs [k0, k1) in order: NULL at the end. */
struct run_iter {
	const struct runs *rs;
	size_t k, k1, i;
};

static const struct disk_span *iter_next(struct run_iter *it)
{
	const struct runs *rs = it->rs;

	if (it->k >= it->k1)
		return NULL;
	const struct disk_span *e = &rs->log[it->i++];
	if (!run_continues(rs->log, rs->n, it->i) && ++it->k < it->k1)
		it->i = rs->first[it->k];
	return e;
}

/* Pieces go to an array (kept apart, seq exact) or, at the last step, to emit(). */
struct pieces {
	struct disk_span *v;
	size_t n;
	bool merge;
};

static void put_piece(struct pieces *o, uint64_t a, uint64_t b, const struct disk_span *e)
{
	if (a >= b)
		return;
	if (o->merge)
		emit(o->v, &o->n, a, b, e);
	else
		o->v[o->n++] = (struct disk_span){ a, b, e->seq, e->kind, e->chunk };
}

/* The runs [k0, k1) of one pass, under top (later passes, disjoint, by address). */
static void overlay(struct run_iter *low, const struct disk_span *top, size_t n_top,
		    struct pieces *out)
{
	const struct disk_span *e = iter_next(low);
	uint64_t from = e ? e->start : 0;
	size_t j = 0;

	while (e || j < n_top) {
		if (e && (j == n_top || from < top[j].start)) {
			uint64_t stop = j < n_top ? MIN(e->end, top[j].start) : e->end;

			put_piece(out, from, stop, e);
			if (stop == e->end && (e = iter_next(low)))
				from = e->start;
			else if (e)
				from = stop;
			continue;
		}
		put_piece(out, top[j].start, top[j].end, &top[j]);
		while (e && e->end <= top[j].end)
			if ((e = iter_next(low)))
				from = e->start;
		if (e && from < top[j].end)
			from = top[j].end;
		j++;
	}
}

/*
 * Without the sweep: each pass (seq) of a log is runs of increasing,
 * disjoint entries (a chunk's extents, a zero set), put in any order by the
 * workers.  Sorted by (seq, start), the runs of one pass must not overlap
 * each other either; then the passes are laid over each other from the
 * last down, the first pass (a full checkpoint's whole memory) streaming
 * straight into flat.  A 1 GiB checkpoint of pages alternating between zero
 * and data logs ~200,000 extents: the sweep sorts them twice and heaps them
 * on the commit's critical path (~0.1 s here); this sorts the runs (about
 * one per chunk) and passes over the entries once.
 * 1: done; 0: entries of one pass overlap (take the sweep); -ENOMEM.
 */
static int flat_from_runs(const struct disk_span *log, size_t n, struct disk_span *flat,
			  size_t *n_flat)
{
	_cleanup_free_ uint32_t *first = malloc(n * sizeof(*first));
	_cleanup_free_ struct disk_span *top = NULL, *next = NULL;
	struct runs rs = { .log = log, .n = n, .first = first };
	size_t n_top = 0, k1;

	if (!first)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (log[i].start >= log[i].end)
			return 0;
		if (!i || !run_continues(log, n, i))
			first[rs.n_runs++] = (uint32_t)i;
	}
	qsort_r(first, rs.n_runs, sizeof(*first), cmp_seq_start, (void *)log);
	/* Within a pass: runs in order, none overlapping the one before. */
	for (size_t k = 1; k < rs.n_runs; k++) {
		const struct disk_span *a = &log[first[k - 1]], *b = &log[first[k]];
		size_t last = first[k - 1];

		while (run_continues(log, n, last + 1))
			last++;
		if (a->seq == b->seq && b->start < log[last].end)
			return 0;
	}
	/* From the last pass down; every step adds at most 2 pieces per top piece. */
	for (k1 = rs.n_runs; k1 > 0;) {
		size_t k0 = k1, pass_n = 0;

		while (k0 > 0 && log[first[k0 - 1]].seq == log[first[k1 - 1]].seq)
			k0--;
		struct run_iter it = { &rs, k0, k1, first[k0] };
		if (k0 == 0) {
			struct pieces out = { flat, 0, true };
			overlay(&it, top, n_top, &out);
			*n_flat = out.n;
			return 1;
		}
		for (size_t k = k0; k < k1; k++)
			for (size_t i = first[k]; i == first[k] || run_continues(log, n, i); i++)
				pass_n++;
		free(next);
		next = malloc((pass_n + 2 * n_top + 1) * sizeof(*next));
		if (!next)
			return -ENOMEM;
		struct pieces out = { next, 0, false };
		overlay(&it, top, n_top, &out);
		free(top);
		top = next;
		next = NULL;
		n_top = out.n;
		k1 = k0;
	}
	*n_flat = 0;
	return 1;
}

int resolve_log(const struct disk_span *log, size_t n, const struct pass_region *regions,
		size_t n_regions, struct disk_span **ret, size_t *ret_n)
{
	_cleanup_free_ struct disk_span *flat = NULL;
	struct disk_span *out;
	size_t n_flat = 0, n_out = 0, i = 0, r = 0;
	int err;

	if (n >= UINT32_MAX)
		return -E2BIG;
	flat = malloc(MAX(2 * n, (size_t)1) * sizeof(*flat));
	if (!flat)
		return -ENOMEM;
	err = n ? flat_from_runs(log, n, flat, &n_flat) : 1;
	if (err == 0) {
		n_flat = 0;
		err = sweep(log, n, flat, &n_flat);
	}
	if (err < 0)
		return err;
	/* A span crossing k region boundaries becomes k + 1 pieces. */
	out = malloc((n_flat + n_regions + 1) * sizeof(*out));
	if (!out)
		return -ENOMEM;
	while (i < n_flat && r < n_regions) {
		uint64_t a = MAX(flat[i].start, regions[r].start), b = MIN(flat[i].end, regions[r].end);

		if (a < b)
			out[n_out++] = (struct disk_span){ a, b, flat[i].seq, flat[i].kind, flat[i].chunk };
		if (flat[i].end <= regions[r].end)
			i++;
		else
			r++;
	}
	*ret = out;
	*ret_n = n_out;
	return 0;
}

int regions_check(const struct pass_region *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (r[i].start >= r[i].end || ((r[i].start | r[i].end) & (PAGE_SIZE_4K - 1)) ||
		    (i && r[i].start < r[i - 1].end) || (unsigned)r[i].kind > VMA_SPECIAL ||
		    (r[i].path && strlen(r[i].path) > STORE_PATH_MAX))
			return -EINVAL;
	}
	return 0;
}

static void fill_region(struct disk_region *d, const struct pass_region *r, uint32_t path_off)
{
	*d = (struct disk_region){
		.start = r->start, .end = r->end, .pgoff = r->pgoff, .ino = r->ino,
		.dev_major = r->dev_major, .dev_minor = r->dev_minor,
		.prot = r->prot, .flags = r->flags, .kind = (uint32_t)r->kind,
		.shared = r->shared, .path_off = path_off,
		.path_len = r->path ? (uint32_t)strlen(r->path) : 0,
	};
}

int index_build(const struct index_params *w, const struct pass_region *regions, size_t n_regions,
		const struct disk_span *spans, size_t n_spans, void **ret, size_t *ret_len)
{
	uint64_t strings = 0, len;
	struct disk_index *ix;
	uint8_t *p;

	for (size_t i = 0; i < n_regions; i++)
		strings += regions[i].path ? strlen(regions[i].path) : 0;
	len = pad8(sizeof(*ix) + w->n_chunks * 8 + w->n_sections * sizeof(*w->sections) +
		   n_spans * sizeof(*spans) + n_regions * sizeof(struct disk_region) + strings);
	if (len > STORE_INDEX_MAX || n_regions > UINT32_MAX)
		return -E2BIG;
	ix = calloc(1, len);
	if (!ix)
		return -ENOMEM;
	*ix = (struct disk_index){
		.magic = STORE_INDEX_MAGIC, .n_regions = (uint32_t)n_regions,
		.n_chunks = (uint32_t)w->n_chunks, .strings_len = (uint32_t)strings,
		.n_spans = n_spans, .generation = w->generation, .created_ns = w->created_ns,
		.data_pages = w->data_pages, .zero_pages = w->zero_pages,
		.n_sections = (uint32_t)w->n_sections,
	};
	for (size_t i = 0; i < n_spans; i++) {
		uint64_t pages = (spans[i].end - spans[i].start) / PAGE_SIZE_4K;

		*(spans[i].kind == EXT_DATA ? &ix->live_data_pages : &ix->live_zero_pages) += pages;
	}
	p = (uint8_t *)(ix + 1);
	if (w->n_chunks) /* no NULL to mempcpy, even for 0 bytes */
		p = mempcpy(p, w->chunk_off, w->n_chunks * 8);
	if (w->n_sections)
		p = mempcpy(p, w->sections, w->n_sections * sizeof(*w->sections));
	if (n_spans)
		p = mempcpy(p, spans, n_spans * sizeof(*spans));
	char *pool = (char *)p + n_regions * sizeof(struct disk_region);
	uint32_t off = 0;
	for (size_t i = 0; i < n_regions; i++, p += sizeof(struct disk_region)) {
		struct disk_region d;

		fill_region(&d, &regions[i], off);
		memcpy(p, &d, sizeof(d));
		if (d.path_len)
			memcpy(pool + off, regions[i].path, d.path_len);
		off += d.path_len;
	}
	*ret = ix;
	*ret_len = len;
	return 0;
}

