/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Copy the pages a pass found out of the target: in chunks (each within one
 * region, at most chunk_bytes), with process_vm_readv in batches of up to
 * 1024 iovecs, or pread from the backing file of a shared mapping.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "basic/ranges.h"
#include "track/tracker.h"

struct chunk {
	size_t region;        /* index into pass.regions */
	size_t first_seg;     /* into read_plan.segs */
	size_t n_segs;
	uint64_t bytes;
};

struct read_plan {
	struct range *segs; /* page-aligned address spans, in order */
	size_t n_segs;
	struct chunk *chunks;
	size_t n_chunks;
	uint64_t bytes;
};

int read_plan_build(const struct pass *p, uint64_t chunk_bytes, struct read_plan *out);
void read_plan_free(struct read_plan *plan);

/*
 * Read chunk c into buf (c->bytes long).  Pages that cannot be read (unmapped
 * meanwhile, device memory) are zero-filled and counted in *unreadable.
 */
int read_chunk(struct tracker *t, const struct pass *p, const struct read_plan *plan,
	       const struct chunk *c, void *buf, uint64_t *unreadable);
