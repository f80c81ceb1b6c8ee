/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * One generation of a QEMU guest (wpmig-ctl checkpoint --qmp), on a job
 * thread, with a tracker attached to the QEMU process and limited to its
 * RAM backends (tracker_opts.only):
 *
 *   1. live passes while the guest runs, each encoded into the sink;
 *   2. QMP stop (QEMU keeps answering; no ptrace), the final pass copied
 *      out, QEMU's device state saved through a pipe (vmstate.h), cont:
 *      the pause, measured from QEMU's STOP event to its RESUME event
 *      (leave_stopped: no cont; QEMU stays "postmigrate" until the user's
 *      QMP cont, and the pause is measured up to the device state saved);
 *   3. the final pass encoded, the sections "vmstate" (the device state)
 *      and "qemu-ram" (the backends, JSON) put, commit.
 *
 * Any failure: the guest runs again (cont, a migration of ours cancelled
 * first), QEMU's migration capabilities are put back, the sink is aborted
 * (nothing published) and the pages taken are owed to the next generation
 * (tracker_resync).  The first generation of a tracker is full, later ones
 * hold what the guest wrote since.
 */
#pragma once

#include <stdint.h>

#include "pipeline/pipeline.h"
#include "pipeline/sink.h"
#include "qemu/backend.h"
#include "qemu/qmp.h"
#include "track/tracker.h"

#define QEMU_VMSTATE_SECTION "vmstate"
#define QEMU_RAM_SECTION "qemu-ram"

struct qemu_ckpt_opts {
	unsigned max_live_passes; /* 0 = 4 */
	uint64_t converge_pages;  /* stop live passes below this; 0 = 2048 */
	bool leave_stopped;       /* no cont after a generation that succeeds */
	void (*progress)(void *ud, const char *phase, uint64_t done, uint64_t total,
			 uint64_t bytes_out);
	void *ud;
};

struct qemu_ckpt_result {
	struct gen_summary gen;
	uint32_t passes, regions;
	uint64_t data_pages, zero_pages, final_pages;
	double pause_ms;           /* QEMU's STOP event to its RESUME event (leave_stopped:
				    * to the device state saved) */
	double device_state_ms;    /* the device state save, inside the pause */
	uint64_t device_state_bytes;
	uint64_t duration_ns;
	bool left_stopped;         /* the guest is stopped: the user continues it */
	char step[32];             /* where it failed */
};

int qemu_checkpoint_run(struct tracker *t, struct pipeline *pl, struct sink *s, struct qmp *q,
			const struct qemu_ram *ram, const struct qemu_ckpt_opts *o,
			struct qemu_ckpt_result *res, char *why, size_t why_len);

/* The "qemu-ram" section: ram as JSON text (malloc'ed) and back. */
int qemu_ram_encode(const struct qemu_ram *ram, unsigned qemu_version, char **ret, size_t *len);
int qemu_ram_decode(const void *buf, size_t len, struct qemu_ram *ram);
