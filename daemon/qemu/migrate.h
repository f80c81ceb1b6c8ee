/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The source of a QEMU migration (wpmig-ctl migrate), run on a job thread:
 * guest RAM moves as generations over a peer link into the destination
 * QEMU's backends (qemu/target.c on the peer), device state moves by
 * QEMU's own migration with x-ignore-shared.
 *
 *   1. QMP: find the source QEMU (SO_PEERCRED) and its RAM backends; refuse
 *      what cannot be tracked (qemu_ram_refusal).
 *   2. Track only the backends' mappings; pre-copy passes, one generation
 *      each (the first sends every non-zero page), until the pages dirtied
 *      during a pass can be sent within --downtime-ms at the measured link
 *      rate, or --max-iterations (then fail, or switch over when forced).
 *   3. Switchover: source migrate to the destination URI with
 *      pause-before-switchover (QEMU sets up its stream and stops the guest
 *      itself, then waits), final pass, the destination confirms it wrote
 *      every page, migrate-continue: the device state moves and the
 *      destination resumes the guest.
 *
 * Any failure before the destination resumed: the source guest runs again
 * (cont, if we stopped it) and the capabilities we set are put back; the
 * result names the step.  The tracker is detached in every case.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "peer/link.h"
#include "pipeline/pipeline.h"

#define MIGRATE_MAX_PASSES 128
#define MIGRATE_MAX_STEPS 16

/* One step of the switchover (docs/qemu.md lists them). */
struct migrate_step {
	char name[16];
	double at_ms; /* when it ended, after the source's STOP event (< 0: before) */
	double ms;    /* how long it took */
};

struct migrate_pass {
	uint32_t pass;
	bool final;
	uint64_t pages;      /* pages the pass found (data and zero) */
	uint64_t bytes;      /* bytes it took on the wire */
	uint64_t ns;         /* scan to commit confirmed */
	double dirty_rate;   /* pages per second the guest wrote before it */
	double link_rate;    /* guest bytes per second moved (best pass so far) */
	double expect_ms;    /* downtime expected if switching over after it */
};

struct migrate_opts {
	const char *qmp, *dest_qmp, *dest_uri;
	uint32_t downtime_ms;    /* 0: 300 */
	uint32_t max_iterations; /* 0: 30 */
	bool force_switchover;
	int zstd_level;
	uint64_t max_bandwidth;  /* bytes per second, 0: unlimited */
	/* After each pass (job thread). */
	void (*progress)(void *ud, const struct migrate_pass *p);
	bool (*cancelled)(void *ud);
	void *ud;
};

struct migrate_result {
	pid_t pid;                /* the source QEMU */
	double downtime_ms;       /* source STOP event to destination RESUME event */
	double downtime_local_ms; /* stop sent to the destination's answer (an upper bound) */
	double total_ms;
	uint64_t bytes_sent, pages_sent, ram_bytes;
	uint32_t iterations;      /* passes, the final one included */
	bool converged;           /* false: forced */
	struct migrate_pass passes[MIGRATE_MAX_PASSES];
	uint32_t n_passes;
	struct migrate_step steps[MIGRATE_MAX_STEPS]; /* where the pause went, in order */
	uint32_t n_steps;
	char step[32];            /* where it failed */
};

int migrate_run(struct peer_link *l, struct pipeline *pl, const struct migrate_opts *o,
		struct migrate_result *res, char *why, size_t why_len);
