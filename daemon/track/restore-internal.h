/* SPDX-License-Identifier: GPL-2.0-only */
/* The decoded image of a restore and restore.c's state, shared by restore.c,
 * restore-image.c and restore-write.c. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "basic/ranges.h"

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

/* ---- restore.c's state, shared with restore-write.c ---- */

#define IOV_BATCH 1024
#define STEP (4ULL << 20) /* bytes read per call while comparing */

struct tracker;

struct rst {
	struct tracker *t;
	pid_t pid;
	const struct restore_image *ri;
	const struct restore_opts *o;
	struct restore_stats *st;
	struct range_set taken;      /* what our passes took from the tracker */
	struct range_set diff;       /* pages found different while it ran */
	struct range_set unreadable; /* pages the comparison could not read */
	uint8_t *buf;                /* STEP bytes */
	struct iovec rv[IOV_BATCH];  /* remote side of a read */
	size_t hint;                 /* ri_page's */
	uint64_t done;               /* pages compared or skipped: progress */
	bool touched;                /* the first write was issued */
	int *wfd;                    /* per image region: its backing file for writing, or -1 */
	struct writer *w;            /* the second writer thread, once started */
	char *why;
	size_t why_len;
};

/* Before the freeze: the kernel reads the image's pages of set once
 * (restore-write.c says why).  Best effort, changes nothing of the process. */
void restore_warm(struct rst *x, const struct range_set *set);
/* From this many pages to write back on, a second thread shares them
 * (restore_write): fewer, and it costs more to start than it saves. */
#define RESTORE_SPLIT_PAGES 512
/* Before the freeze: start the second writer thread (best effort: without
 * it restore_write writes everything itself). */
void restore_writer_start(struct rst *x);
/* Tell a started writer there is nothing (more) for it, join it, and add
 * its write calls to x->st; after restore_write too. */
void restore_writer_stop(struct rst *x);
/* Frozen: every page of c from the image into the process; 0 or -errno
 * (x->touched: something was written). */
int restore_write(struct rst *x, const struct range_set *c);
