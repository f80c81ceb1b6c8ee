/* SPDX-License-Identifier: GPL-2.0-only */
/* The decoded image of a restore, shared by restore-image.c and restore.c. */
#pragma once

#include <stdint.h>

#include "track/restore.h"

#define RI_ZERO UINT64_MAX

struct ri_piece {
	uint64_t start, end;
	uint64_t off; /* of its first page in data; RI_ZERO: zero pages */
};

struct restore_image {
	struct pass_region *regions;
	size_t n_regions;
	uint64_t pages;
	struct ri_piece *p; /* in address order, inside the regions */
	size_t n, cap;
	uint8_t *data;      /* the data pages, in the order added */
	uint64_t data_len, fill;
	int fd;             /* the unlinked file data maps, or -1 */
};

/* First piece ending after addr (n if none). */
size_t ri_find(const struct restore_image *ri, uint64_t addr);
/* The image's page at addr: its bytes, or NULL for a zero page (or one no
 * piece covers).  *hint: a piece index to try first, updated. */
const uint8_t *ri_page(const struct restore_image *ri, uint64_t addr, size_t *hint);
