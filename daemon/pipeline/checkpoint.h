/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * One generation of a tracked process into a sink: live passes while it
 * runs, then a final pass with it frozen (scan and copy-out only, and every
 * thread's registers), thaw, encode and store, commit.  Runs on a job thread; never on the loop.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "pipeline/pipeline.h"
#include "pipeline/sink.h"
#include "track/tracker.h"

struct checkpoint_opts {
	bool leave_stopped;
	unsigned max_live_passes;  /* 0 = 4 */
	uint64_t converge_pages;   /* stop live passes below this; 0 = 8192 */
	/* Before the freeze, wait at most this long for threads that woke
	 * since the last live pass to sleep again (track/settle.h); 0: no wait. */
	unsigned settle_max_ms;
	/* Progress: phase ("live-pass N", "frozen", "store"), pages. */
	void (*progress)(void *ud, const char *phase, uint64_t done, uint64_t total,
			 uint64_t bytes_out);
	void *ud;
};

/*
 * The daemon's default settle_max_ms (config freeze_settle_ms): the host
 * stalls measured here lasted 1-27 ms (issue 16).
 */
#define FREEZE_SETTLE_MS_DEFAULT 30

/* At most this many rows in a result's pass table: live passes are bounded far below it. */
#define PASSES_MAX 32

enum {
	PASS_ROW_FINAL = 1 << 0, /* taken with the target frozen */
	PASS_ROW_HELD = 1 << 1,  /* copied out live, encoded and stored after the thaw */
};

/* What one pass of a generation found, stored and cost. */
struct pass_row {
	uint32_t seq;         /* pass number in the generation, from 1 */
	uint32_t flags;       /* PASS_ROW_* */
	uint64_t found;       /* pages the tracker reported: written, new, or zero now */
	uint64_t data_pages;  /* stored as data (not all-zero) */
	uint64_t zero_pages;  /* stored as zero: reported zero, or found all-zero */
	uint64_t bytes;       /* encoded bytes handed to the sink */
	uint64_t scan_ns;     /* the tracker's pass: maps, layout, PAGEMAP_SCAN */
	uint64_t copy_ns;     /* live: read, encode, sink; held and final: the copy-out */
	uint64_t store_ns;    /* held and final: encode and sink after the thaw */
	uint64_t pause_ns;    /* final: the target frozen (freeze to thaw) */
};

struct checkpoint_result {
	struct gen_summary gen;
	uint32_t passes;
	uint64_t pages;          /* data + zero pages recorded */
	uint64_t data_pages, zero_pages, unreadable;
	uint64_t bytes;          /* bytes stored or sent */
	uint64_t pause_ns, duration_ns;
	/* The pause step by step: stop request until every thread is stopped,
	 * the final pass, its copy-out, release of every thread. */
	uint64_t freeze_ns, final_scan_ns, final_copy_ns, thaw_ns;
	/* Not in the pause: from the last thread's release until the thread
	 * that thawed ran again (a released thread may take its CPU). */
	uint64_t release_wait_ns;
	/* Not in the pause either: before the freeze, waiting for threads that
	 * woke since the last live pass to sleep again (settle_threads of
	 * them; settle_timed_out: one still ran at settle_max_ms). */
	uint64_t settle_ns;
	uint32_t settle_threads;
	bool settle_timed_out;
	uint64_t final_pages;
	uint32_t regions;
	/* The freeze: walks of the thread list, threads that exited under it. */
	uint32_t freeze_walks, freeze_threads_exited;
	uint32_t threads;        /* whose state the generation holds */
	/* Each pass in order: found, stored, its time. */
	struct pass_row pass_rows[PASSES_MAX];
	uint32_t n_pass_rows;
};

/*
 * On failure the sink is aborted and the pages the generation had taken are
 * handed back to the tracker (tracker_resync), so the next generation still
 * holds every change.  The target is never left frozen.
 */
int checkpoint_run(struct tracker *t, struct pipeline *pl, struct sink *s,
		   const struct checkpoint_opts *opts, struct checkpoint_result *res,
		   char *why, size_t why_len);
