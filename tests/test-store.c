// SPDX-License-Identifier: GPL-2.0-only
/*
 * The image store with real files and real compression.  Each mode is a
 * separate meson test (argv[1]):
 *   model     random full + incremental generations (several passes,
 *             overlapping data and zero, regions appearing, vanishing,
 *             moving, growing, splitting) read back and exported equal to
 *             the model byte for byte, after every generation
 *   directed  a hand-computed chain: higher seq wins, parents, regions that
 *             shrink and grow back, a new full generation, an empty one
 *   threads   4 workers putting chunks of all passes at once, then commit
 * (test-store-admin.c and test-store-fault.c hold the rest of the suite.)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "pagegen.h"
#include "store-testlib.h"
#include "basic/util.h"

#define SLOT(i) (0x100000000ULL + (uint64_t)(i) * 0x1000000ULL)
#define N_SLOTS 12

static char *scratch; /* export target */
/* What random_regions did, to show the run covered every kind of change. */
static struct { int kept, dropped, moved, resized, split, added; } ev;

static unsigned slot_of(uint64_t a)
{
	return (unsigned)((a - SLOT(0)) / 0x1000000ULL);
}

static bool slot_free(const struct range *r, size_t n, unsigned s)
{
	for (size_t i = 0; i < n; i++)
		if (slot_of(r[i].start) == s)
			return false;
	return true;
}

static void add_in_free_slot(struct range *r, size_t *n, const struct tl_plan *prev, uint64_t *rng)
{
	for (int tries = 0; tries < 8 && *n < 30; tries++) {
		unsigned s = (unsigned)(pg_rand(rng) % N_SLOTS);
		uint64_t start = SLOT(s) + (pg_rand(rng) % 8) * TL_PG;

		if (!slot_free(r, *n, s) || (prev && !slot_free(prev->regions, prev->n_regions, s)))
			continue;
		r[(*n)++] = (struct range){ start, start + (1 + pg_rand(rng) % 48) * TL_PG };
		return;
	}
}

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Regions of the next generation: kept, dropped, moved, resized, split, new. */
static void random_regions(struct tl_plan *p, const struct tl_plan *prev, uint64_t *rng)
{
	struct range r[32];
	size_t n = 0;

	for (size_t i = 0; prev && i < prev->n_regions; i++) {
		struct range x = prev->regions[i];
		bool last_in_slot = i + 1 == prev->n_regions || prev->regions[i + 1].start != x.end;
		unsigned d = (unsigned)(pg_rand(rng) % 100);

		if (d < 10) { /* unmapped */
			ev.dropped++;
			continue;
		}
		if (d < 20) { /* moved: mremap to a fresh slot */
			add_in_free_slot(r, &n, prev, rng);
			ev.moved++;
			continue;
		}
		if (d < 35 && last_in_slot) { /* grown or shrunk */
			x.end = x.start + (1 + pg_rand(rng) % 48) * TL_PG;
			ev.resized++;
		} else if (d >= 90 && x.end - x.start >= 2 * TL_PG) { /* split by mprotect */
			uint64_t mid = x.start + (1 + pg_rand(rng) % ((x.end - x.start) / TL_PG - 1)) * TL_PG;
			r[n++] = (struct range){ x.start, mid };
			x.start = mid;
			ev.split++;
		} else {
			ev.kept++;
		}
		r[n++] = x;
	}
	if (!prev || pg_rand(rng) % 100 < 40) {
		add_in_free_slot(r, &n, prev, rng);
		ev.added++;
	}
	qsort(r, n, sizeof(*r), cmp_range);
	memcpy(p->regions, r, n * sizeof(*r));
	p->n_regions = n;
}

static void random_passes(struct tl_plan *p, uint64_t *rng)
{
	p->n_passes = 1 + pg_rand(rng) % 4;
	for (size_t i = 0; i < p->n_passes; i++) {
		struct tl_pass *ps = &p->passes[i];

		*ps = (struct tl_pass){ .seq = i + 1 };
		for (size_t r = 0; r < p->n_regions; r++)
			tl_random_run(ps, p->regions[r].start, p->regions[r].end, p->full && !i, rng);
		/* pages of a mapping gone by the final pass: must not show up */
		if (pg_rand(rng) % 10 < 3)
			tl_random_run(ps, SLOT(14), SLOT(14) + 20 * TL_PG, false, rng);
	}
	p->chunk_pages = (uint32_t)(1 + pg_rand(rng) % 48);
	p->threads = (unsigned)(1 + pg_rand(rng) % 3);
	p->sections = (unsigned)(pg_rand(rng) % 4);
}

static void test_model(void)
{
	for (uint64_t seed = 1; seed <= 20; seed++) {
		struct tl_plan plan[2] = { 0 };
		struct tl_model m = { 0 };
		char set[32];
		uint64_t rng = seed * 7919, gen = 0;
		char *dir = tl_tmpdir("model");
		struct store *st;

		snprintf(set, sizeof(set), "model-%llu", (unsigned long long)seed);
		CHECK(store_open(dir, &st) == 0, "open");
		for (int g = 0; g < 8; g++) {
			struct tl_plan *p = &plan[g % 2], *prev = g ? &plan[(g + 1) % 2] : NULL;

			tl_plan_free(p);
			p->full = !g || pg_rand(&rng) % 100 < 15;
			random_regions(p, prev, &rng);
			random_passes(p, &rng);
			int r = tl_write_gen(st, set, p, gen, &m, &gen);
			CHECK(r == 0, "seed %llu gen %d: write %d", (unsigned long long)seed, g, r);
			/* every generation so far must still read back exactly */
			for (size_t gi = 0; r == 0 && gi < m.n; gi++)
				CHECK(tl_check_gen(st, set, &m, gi, scratch) == 0, "seed %llu gen %zu",
				      (unsigned long long)seed, gi + 1);
		}
		tl_plan_free(&plan[0]);
		tl_plan_free(&plan[1]);
		tl_model_free(&m);
		store_close(st);
		tl_rmrf(dir);
		free(dir);
	}
	printf("model: regions kept %d, unmapped %d, moved %d, resized %d, split %d, new %d\n",
	       ev.kept, ev.dropped, ev.moved, ev.resized, ev.split, ev.added);
	CHECK(ev.kept && ev.dropped && ev.moved && ev.resized && ev.split && ev.added,
	      "some kind of region change never happened");
}

/* ---- directed: expectations computed by hand, not by the model ---- */

#define X 0x7f0000000000ULL
#define P(i) (X + (uint64_t)(i) * TL_PG)

static void set_regions(struct tl_plan *p, uint64_t pages)
{
	p->regions[0] = (struct range){ X, P(pages) };
	p->n_regions = 1;
	p->chunk_pages = 3;
	p->threads = 2;
}

static void add(struct tl_plan *p, uint64_t seq, bool data, unsigned from, unsigned to)
{
	struct tl_pass *ps = &p->passes[seq - 1];

	ps->seq = seq;
	p->n_passes = MAX(p->n_passes, (size_t)seq);
	range_set_add(data ? &ps->data : &ps->zero, P(from), P(to));
}

/* want[i]: generation and seq whose page i must be there, {0, 0} for zero. */
static void expect(struct store *st, uint64_t gen, const uint64_t (*want)[2], unsigned pages)
{
	struct store_image *img;
	uint8_t got[TL_PG], exp[TL_PG];

	CHECK(store_image_open(st, "d", gen, &img) == 0, "open gen %llu", (unsigned long long)gen);
	for (unsigned i = 0; i < pages; i++) {
		memset(exp, 0, sizeof(exp));
		if (want[i][0])
			tl_page(exp, want[i][0], want[i][1], P(i));
		CHECK(store_image_read(img, P(i), TL_PG, got) == 0 && !memcmp(got, exp, TL_PG),
		      "gen %llu page %u", (unsigned long long)gen, i);
	}
	CHECK(store_image_read(img, P(pages), 1, got) == -ENXIO, "read past the region");
	store_image_close(img);
}

static void test_directed(void)
{
	char *dir = tl_tmpdir("directed");
	struct tl_plan p = { 0 };
	struct store *st;
	uint64_t g;

	CHECK(store_open(dir, &st) == 0, "open");
	/* gen 1, full: data 0-7, then zero 2, then data 2 again and zero 5 */
	p.full = true;
	set_regions(&p, 8);
	add(&p, 1, true, 0, 8);
	add(&p, 2, false, 2, 3);
	add(&p, 3, true, 2, 3);
	add(&p, 3, false, 5, 6);
	CHECK(tl_write_gen(st, "d", &p, 0, NULL, &g) == 0 && g == 1, "gen 1");
	const uint64_t w1[8][2] = { {1, 1}, {1, 1}, {1, 3}, {1, 1}, {1, 1}, {0, 0}, {1, 1}, {1, 1} };
	expect(st, 1, w1, 8);
	/* gen 2: the region shrinks to 4 pages; page 0 rewritten */
	tl_plan_free(&p);
	p = (struct tl_plan){ 0 };
	set_regions(&p, 4);
	add(&p, 1, true, 0, 1);
	CHECK(tl_write_gen(st, "d", &p, 1, NULL, &g) == 0 && g == 2, "gen 2");
	const uint64_t w2[4][2] = { {2, 1}, {1, 1}, {1, 3}, {1, 1} };
	expect(st, 2, w2, 4);
	/* gen 3: grows back to 8; pages 4-7 were not mapped at gen 2: zero,
	   not gen 1's data.  Page 1 zeroed, page 6 written in pass 2 over pass 1. */
	tl_plan_free(&p);
	p = (struct tl_plan){ 0 };
	set_regions(&p, 8);
	add(&p, 1, false, 1, 2);
	add(&p, 1, true, 6, 7);
	add(&p, 2, true, 6, 7);
	CHECK(tl_write_gen(st, "d", &p, 2, NULL, &g) == 0 && g == 3, "gen 3");
	const uint64_t w3[8][2] = { {2, 1}, {0, 0}, {1, 3}, {1, 1}, {0, 0}, {0, 0}, {3, 2}, {0, 0} };
	expect(st, 3, w3, 8);
	/* gen 4: a new tracking session, full: only page 3 was captured */
	tl_plan_free(&p);
	p = (struct tl_plan){ .full = true };
	set_regions(&p, 8);
	add(&p, 1, true, 3, 4);
	CHECK(tl_write_gen(st, "d", &p, 0, NULL, &g) == 0 && g == 4, "gen 4");
	const uint64_t w4[8][2] = { {0, 0}, {0, 0}, {0, 0}, {4, 1}, {0, 0}, {0, 0}, {0, 0}, {0, 0} };
	expect(st, 4, w4, 8);
	/* gen 5: nothing written at all, no chunk: the same as gen 4 */
	tl_plan_free(&p);
	p = (struct tl_plan){ 0 };
	set_regions(&p, 8);
	CHECK(tl_write_gen(st, "d", &p, 4, NULL, &g) == 0 && g == 5, "gen 5");
	expect(st, 5, w4, 8);
	expect(st, 1, w1, 8); /* older generations untouched */
	tl_plan_free(&p);
	store_close(st);
	tl_rmrf(dir);
	free(dir);
}

static void test_threads(void)
{
	char *dir = tl_tmpdir("threads");
	struct tl_plan p = { .full = true, .chunk_pages = 16, .threads = 4 };
	struct tl_model m = { 0 };
	struct store_gen_info *info = NULL;
	uint64_t rng = 99, g, want_chunks = 0;
	size_t n = 0;
	struct store *st;

	for (unsigned i = 0; i < 8; i++)
		p.regions[p.n_regions++] = (struct range){ SLOT(i), SLOT(i) + 512 * TL_PG };
	p.n_passes = 3;
	for (size_t i = 0; i < p.n_passes; i++) {
		p.passes[i].seq = i + 1;
		for (size_t r = 0; r < p.n_regions; r++)
			tl_random_run(&p.passes[i], p.regions[r].start, p.regions[r].end, !i, &rng);
		want_chunks += (range_set_bytes(&p.passes[i].data) / TL_PG + 15) / 16;
	}
	CHECK(store_open(dir, &st) == 0, "open");
	CHECK(tl_write_gen(st, "t", &p, 0, &m, &g) == 0, "write");
	CHECK(tl_check_gen(st, "t", &m, 0, scratch) == 0, "content");
	CHECK(store_list_generations(st, "t", &info, &n) == 0 && n == 1, "list");
	CHECK(n == 1 && info[0].n_chunks == want_chunks, "chunks %u want %llu",
	      n ? info[0].n_chunks : 0, (unsigned long long)want_chunks);
	free(info);
	tl_plan_free(&p);
	tl_model_free(&m);
	store_close(st);
	tl_rmrf(dir);
	free(dir);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} modes[] = {
		{ "model", test_model }, { "directed", test_directed }, { "threads", test_threads },
	};

	scratch = tl_tmpdir("export");
	rmdir(scratch); /* export creates it */
	for (size_t i = 0; i < ARRAY_SIZE(modes); i++)
		if (argc < 2 || !strcmp(argv[1], modes[i].name))
			modes[i].fn();
	tl_rmrf(scratch);
	if (test_failures)
		fprintf(stderr, "%d check(s) failed\n", test_failures);
	return test_failures ? 1 : 0;
}
