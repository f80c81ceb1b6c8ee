/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Where a generation goes: the local image store or a peer daemon.  A
 * generation is a log of passes; within it a higher pass number wins for a
 * page.  Chunks may be put from several worker threads at once.  Nothing is
 * visible to readers until commit succeeds; abort leaves no trace.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "basic/ranges.h"
#include "pipeline/codec.h"
#include "track/tracker.h"

struct sink;
struct codec;

/*
 * Sections: besides pages, a generation may hold a few named, typed blobs
 * of bytes, stored and checksummed like chunks (docs/image-format.md).
 * A type says what the bytes are; the numbers are kept here so that they
 * never collide.
 */
enum section_type {
	SECTION_THREADS = 1,      /* "threads": every thread's state at the frozen pass
				     (track/threads.h) */
	SECTION_QEMU_VMSTATE = 2, /* "vmstate": a QEMU guest's device state, as QEMU's
				     migration stream with x-ignore-shared (qemu/vmstate.h) */
	SECTION_QEMU_RAM = 3,     /* "qemu-ram": the guest's RAM backends, JSON
				     (qemu/checkpoint.h) */
	SECTION_PASSES = 4,       /* "passes": the checkpoint's per-pass table
				     (pipeline/passes.h) */
};
#define SECTION_NAME_MAX 31
/* Limits every sink keeps (a reader holds one section whole in memory). */
#define SECTION_MAX_COUNT 64             /* sections per generation */
#define SECTION_MAX_BYTES (256ULL << 20) /* bytes of one section */

/* 1..SECTION_NAME_MAX characters of [a-z0-9._-]. */
static inline bool section_name_valid(const char *name)
{
	size_t len = name ? strnlen(name, SECTION_NAME_MAX + 1) : 0;

	if (len == 0 || len > SECTION_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
		      name[i] == '.' || name[i] == '_' || name[i] == '-'))
			return false;
	return true;
}

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
	/*
	 * A section of the generation: len bytes (copied before it returns)
	 * named name, at most one per name.  -EINVAL for a bad name or type 0,
	 * -EEXIST for a name already put, -E2BIG beyond the store's limits
	 * (SECTION_MAX_BYTES, SECTION_MAX_COUNT).  Thread-safe; any
	 * time before commit.
	 */
	int (*put_section)(struct sink *s, const char *name, uint32_t type, const void *data,
			   size_t len);
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
