/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Where a generation goes: the local image store or a peer daemon.  A
 * generation is a log of passes; within it a higher pass number wins for a
 * page.  Chunks may be put from several worker threads at once.  Nothing is
 * visible to readers until commit succeeds; abort leaves no trace.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "basic/ranges.h"
#include "pipeline/codec.h"
#include "track/tracker.h"

struct sink;
struct codec;

struct gen_summary {
	uint64_t generation;
	uint64_t parent;        /* 0 for a full generation */
	uint64_t data_pages, zero_pages; /* as put, a later pass's copy of a page too */
	/* what the generation holds: each page once, its last pass winning (as
	 * `images list` shows it) */
	uint64_t held_data_pages, held_zero_pages;
	uint64_t bytes_stored;  /* bytes written (or sent) for this generation */
	uint64_t raw_bytes;     /* data pages * 4096 */
};

struct sink_ops {
	/* An encoded chunk of pass seq. Thread-safe. */
	int (*put_chunk)(struct sink *s, const struct enc_chunk *c);
	/*
	 * Optional, instead of put_chunk: the raw pages of a chunk (n pages at
	 * addrs, page i at buf + i * 4096) for a sink that encodes them itself
	 * (the peer sink deltas them against pages it sent before), with the
	 * calling worker's codec; out receives the encoded chunk, for the
	 * pipeline's counters.  Thread-safe.
	 */
	int (*put_pages)(struct sink *s, struct codec *c, uint64_t seq, const uint64_t *addrs,
			 size_t n, const uint8_t *buf, struct enc_chunk *out);
	/*
	 * Optional, on a receiver: instead of put_chunk, the chunk's pages
	 * decoded (its data pages in extent order at pages), for a sink that
	 * writes pages where they belong rather than storing chunks (a QEMU
	 * migration's destination).  Thread-safe.
	 */
	int (*put_decoded)(struct sink *s, const struct enc_chunk *c, const uint8_t *pages);
	/* Pages of pass seq that are zero now (from the tracker). */
	int (*put_zero)(struct sink *s, uint64_t seq, const struct range_set *zero);
	/* The regions at the final pass: the generation's region table. */
	int (*commit)(struct sink *s, const struct pass_region *regions, size_t n,
		      struct gen_summary *out);
	/* Drop everything of this generation; frees the sink. */
	void (*abort)(struct sink *s);
	/* After commit: release. */
	void (*close)(struct sink *s);
};

struct sink {
	const struct sink_ops *ops;
};
