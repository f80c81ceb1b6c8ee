/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Store test helpers: a model of what each generation must contain (built
 * from the same passes the test writes), a writer that feeds passes through
 * the store's sink from several threads, and checks of read and export
 * against the model, byte for byte.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "basic/ranges.h"
#include "store/store.h"

#define TL_PG 4096ULL

/* 1 MiB windows where pages are always random (stored raw) or text (zstd). */
#define TL_RANDOM_WINDOW 0x7e0000000000ULL
#define TL_TEXT_WINDOW 0x7e0000100000ULL

/* Content of the data page generation gen wrote in pass seq at addr:
   zero, text or random, chosen by a hash (or by the windows above). */
void tl_page(uint8_t *p, uint64_t gen, uint64_t seq, uint64_t addr);

struct tl_pass {
	uint64_t seq;
	struct range_set data, zero; /* disjoint */
};

struct tl_plan {
	bool full;
	struct range regions[32];
	size_t n_regions;
	struct tl_pass passes[6];
	size_t n_passes;
	uint32_t chunk_pages; /* pages per encoded chunk */
	unsigned threads;     /* workers calling put_chunk at once */
	unsigned sections;    /* sections put while the chunks go in (tl_section) */
};

/* Section k of generation gen: its name, type and bytes (*len of them,
 * 0 to 200000; free *data). */
void tl_section(uint64_t gen, unsigned k, char name[32], uint32_t *type, uint8_t **data,
		size_t *len);

void tl_plan_free(struct tl_plan *p);
/* Runs of 1..12 pages over [a, b): data, zero or nothing (first_full: no gaps). */
void tl_random_run(struct tl_pass *ps, uint64_t a, uint64_t b, bool first_full, uint64_t *rng);

struct tl_entry {
	uint64_t start, end, seq;
	bool data;
};

struct tl_gen {
	uint64_t gen;
	bool full;
	struct range *regions;
	size_t n_regions;
	struct tl_entry *e;
	size_t n;
	unsigned sections;
};

struct tl_model {
	struct tl_gen *g; /* generations 1..n in order, none missing */
	size_t n;
};

/* Record what generation gen written from plan holds. */
int tl_model_add(struct tl_model *m, uint64_t gen, const struct tl_plan *plan);
void tl_model_drop_last(struct tl_model *m);
void tl_model_free(struct tl_model *m);
/* Page at addr of generation index gi: 1 data (in buf), 0 zero, -1 outside. */
int tl_model_page(const struct tl_model *m, size_t gi, uint64_t addr, uint8_t *buf);

/*
 * Write a generation of set from plan (chunks spread over plan->threads
 * threads, zero ranges put from this one), commit; add it to m if not NULL.
 * stop_after_chunks > 0: return after that many chunks without commit,
 * leaving the sink open in *open_sink (for abort tests).
 */
int tl_write_gen(struct store *st, const char *set, const struct tl_plan *plan,
		 uint64_t expect_parent, struct tl_model *m, uint64_t *gen);
int tl_write_partial(struct store *st, const char *set, const struct tl_plan *plan,
		     uint64_t expect_parent, size_t max_chunks, struct sink **open_sink);

/* Read back generation m->g[gi] (whole regions, odd sub-ranges, outside
 * ranges) and export it into a fresh dir: every byte must match the model.
 * Returns the number of mismatches found. */
int tl_check_gen(struct store *st, const char *set, const struct tl_model *m, size_t gi,
		 const char *scratch_dir);

/* The plan's regions as the tracker would give them (paths, kinds...). */
void tl_pass_regions(const struct tl_plan *plan, struct pass_region *out);

char *tl_tmpdir(const char *tag);
void tl_rmrf(const char *path);
/* Files in dir whose name starts with prefix. */
int tl_count_files(const char *dir, const char *prefix);
