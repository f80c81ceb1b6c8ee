// SPDX-License-Identifier: GPL-2.0-only
/*
 * The store's commit step that turns a generation's log of extents into
 * disjoint spans (store/index.c resolve_log), against a page-by-page model:
 * every page goes to the entry with the highest pass, the later one on a
 * tie; pages outside the final regions are dropped; neighbouring pages of
 * one kind and chunk make one span with the highest pass among them.
 * Logs of one pass and of several, each pass made of disjoint runs put in
 * a shuffled order (what the workers do), and logs whose passes overlap
 * themselves (the general sweep).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "basic/util.h"
#include "store/internal.h"

#define PAGES 512
#define BASE 0x10000000ULL
#define PG PAGE_SIZE_4K


static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

struct model {
	int64_t winner[PAGES]; /* log index, or -1 */
};

static void model_apply(struct model *m, const struct disk_span *log, size_t n)
{
	for (size_t p = 0; p < PAGES; p++)
		m->winner[p] = -1;
	for (size_t i = 0; i < n; i++)
		for (uint64_t a = log[i].start; a < log[i].end; a += PG) {
			int64_t *w = &m->winner[(a - BASE) / PG];

			if (*w < 0 || log[*w].seq <= log[i].seq)
				*w = (int64_t)i;
		}
}

/*
 * The spans the model expects: seamless pages of one kind and chunk merged
 * (the highest pass among them), then cut at the final regions' bounds.
 */
static size_t model_spans(const struct model *m, const struct disk_span *log,
			  const struct pass_region *rg, size_t n_rg, struct disk_span *out)
{
	static struct disk_span flat[PAGES];
	size_t n_flat = 0, n = 0;

	for (size_t p = 0; p < PAGES; p++) {
		uint64_t a = BASE + p * PG;

		if (m->winner[p] < 0)
			continue;
		const struct disk_span *e = &log[m->winner[p]];
		struct disk_span *last = n_flat ? &flat[n_flat - 1] : NULL;
		if (last && last->end == a && last->kind == e->kind && last->chunk == e->chunk) {
			last->end += PG;
			last->seq = MAX(last->seq, e->seq);
		} else {
			flat[n_flat++] = (struct disk_span){ a, a + PG, e->seq, e->kind, e->chunk };
		}
	}
	for (size_t r = 0; r < n_rg; r++)
		for (size_t i = 0; i < n_flat; i++) {
			uint64_t a = MAX(flat[i].start, rg[r].start), b = MIN(flat[i].end, rg[r].end);

			if (a < b)
				out[n++] = (struct disk_span){ a, b, flat[i].seq, flat[i].kind,
							       flat[i].chunk };
		}
	return n;
}

/* One pass: runs of disjoint extents over a random subset of pages. */
static size_t make_pass(uint64_t seq, uint32_t *chunk, struct disk_span *log, size_t n,
			uint64_t *s, bool overlap)
{
	size_t first = n;
	uint64_t p = rnd(s) % 8;

	while (p < PAGES) {
		uint64_t len = 1 + rnd(s) % 6, kind = rnd(s) % 2;

		len = MIN(len, PAGES - p);
		log[n++] = (struct disk_span){ BASE + p * PG, BASE + (p + len) * PG, seq,
					       (uint32_t)kind, kind ? SPAN_NO_CHUNK : *chunk };
		if (rnd(s) % 4 == 0)
			(*chunk)++;
		p += len + (rnd(s) % 3 == 0 ? rnd(s) % 20 : 0);
		if (overlap && rnd(s) % 16 == 0)
			p -= MIN(p, 1 + rnd(s) % 4);
	}
	/* Shuffle stretches of the pass, as workers finish chunks out of order. */
	for (size_t k = 0; k < 8 && n - first > 2; k++) {
		size_t a = first + rnd(s) % (n - first), b = first + rnd(s) % (n - first);
		struct disk_span t = log[a];

		log[a] = log[b];
		log[b] = t;
	}
	return n;
}

static void one_case(uint64_t seed, unsigned passes, bool overlap)
{
	static struct disk_span log[8 * PAGES], want[2 * PAGES];
	struct pass_region rg[3] = {
		{ .start = BASE, .end = BASE + 200 * PG },
		{ .start = BASE + 200 * PG, .end = BASE + 300 * PG },
		{ .start = BASE + 340 * PG, .end = BASE + 500 * PG },
	};
	struct disk_span *got = NULL;
	uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
	uint32_t chunk = 0;
	size_t n = 0, n_got = 0, n_want;
	struct model m;

	for (unsigned k = 0; k < passes; k++)
		n = make_pass(1 + k + (rnd(&s) % 3 == 0), &chunk, log, n, &s, overlap);
	model_apply(&m, log, n);
	n_want = model_spans(&m, log, rg, 3, want);
	int r = resolve_log(log, n, rg, 3, &got, &n_got);
	CHECK(r == 0, "seed %llu: resolve_log %d", (unsigned long long)seed, r);
	if (r == 0) {
		CHECK(n_got == n_want, "seed %llu (%u passes%s): %zu spans, model %zu",
		      (unsigned long long)seed, passes, overlap ? ", overlapping" : "", n_got,
		      n_want);
		for (size_t i = 0; i < MIN(n_got, n_want); i++)
			CHECK(!memcmp(&got[i], &want[i], sizeof(want[i])),
			      "seed %llu span %zu: [%llx, %llx) seq %llu kind %u chunk %u, model "
			      "[%llx, %llx) seq %llu kind %u chunk %u",
			      (unsigned long long)seed, i, (unsigned long long)got[i].start,
			      (unsigned long long)got[i].end, (unsigned long long)got[i].seq,
			      got[i].kind, got[i].chunk, (unsigned long long)want[i].start,
			      (unsigned long long)want[i].end, (unsigned long long)want[i].seq,
			      want[i].kind, want[i].chunk);
	}
	free(got);
}

int main(void)
{
	unsigned cases = 0;

	for (uint64_t seed = 1; seed <= 300; seed++)
		for (unsigned passes = 1; passes <= 4; passes++)
			for (int overlap = 0; overlap <= 1; overlap++, cases++)
				one_case(seed, passes, overlap);
	printf("resolve: %u logs against the model, %d failures\n", cases, test_failures);
	return test_failures ? 1 : 0;
}
