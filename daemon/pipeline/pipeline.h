/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The data path of a pass, off the event loop: read chunks of the pages a
 * pass found, encode them (zero detection, zstd, checksums) and hand them
 * to a sink, on a pool of worker threads.  For the pass taken with the
 * target frozen the work is split: capture (copy out only, while frozen),
 * then encode and store after the target runs again.
 */
#pragma once

#include <stdint.h>

#include "pipeline/sink.h"
#include "track/reader.h"
#include "track/tracker.h"

struct pipeline_opts {
	unsigned workers;     /* threads; 0 = number of CPUs, at most 8 */
	int zstd_level;
	uint64_t chunk_bytes; /* 0 = 1 MiB */
};

struct pipeline_stats {
	uint64_t pages;       /* data pages read */
	uint64_t zero_pages;  /* of those, found all-zero by the codec */
	uint64_t unreadable;  /* pages that could not be read (zeroed) */
	uint64_t bytes_out;   /* encoded payload bytes handed to the sink */
	uint64_t ns;
};

/* Called from the waiting thread about every 100 ms. */
typedef void (*pipeline_progress_fn)(void *ud, uint64_t pages_done, uint64_t pages_total,
				     uint64_t bytes_out);

struct pipeline;
struct capture; /* pages copied out of a frozen target */

struct capture_arena {
	uint8_t *buf;
	size_t len;
};

int pipeline_new(const struct pipeline_opts *opts, struct pipeline **ret);
void pipeline_free(struct pipeline *pl);

/* Read, encode and sink every data page of p as pass seq (zero set too). */
int pipeline_run(struct pipeline *pl, struct tracker *t, const struct pass *p, uint64_t seq,
		 struct sink *s, pipeline_progress_fn progress, void *ud,
		 struct pipeline_stats *st);

/*
 * Copy out every data page of p (target frozen), on the calling thread so
 * it never waits for the pool; nothing is encoded yet.  Copying into fresh
 * memory runs at a fifth of the speed (every destination page faults), so
 * the caller may hand in an arena it populated before the freeze; when the
 * pages do not fit, populated memory is mapped here.
 */
int pipeline_capture(struct pipeline *pl, struct tracker *t, const struct pass *p,
		     const struct capture_arena *arena, struct capture **ret,
		     struct pipeline_stats *st);
/* Populated memory for a capture (MAP_POPULATE); len 0: an empty arena. */
int capture_arena_new(size_t len, struct capture_arena *a);
void capture_arena_free(struct capture_arena *a);
/* Encode and sink a capture as pass seq; frees it. */
int pipeline_flush(struct pipeline *pl, struct capture *c, uint64_t seq, struct sink *s,
		   pipeline_progress_fn progress, void *ud, struct pipeline_stats *st);
void capture_free(struct capture *c);
