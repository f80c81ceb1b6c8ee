/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Region tables: a pass's writable mappings as the tracker found them, the
 * table a generation stores and a peer rebuilds.  One owner frees each
 * table's paths; copies never share a backing file.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "track/tracker.h"

/* XXH3-64 over every field the store keeps, region by region (docs). */
uint64_t regions_table_sum(const struct pass_region *r, size_t n);
/* A copy of r with its own paths and no backing file. */
int regions_copy(const struct pass_region *r, size_t n, struct pass_region **ret);
/* Free r (NULL is fine) and the paths of its first n regions. */
void regions_free(struct pass_region *r, size_t n);
