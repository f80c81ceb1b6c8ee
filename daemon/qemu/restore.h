/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A VM generation into a new QEMU (wpmig-ctl restore --qmp), on a job
 * thread.  The QEMU was started with the checkpointed guest's command line
 * plus -incoming defer: backends of the same ids and sizes, share=on.
 *
 *   1. check it: waiting for an incoming migration ("inmigrate"), every
 *      backend of the generation's "qemu-ram" section there, same size,
 *      shared, not hugetlb; else refuse with nothing changed;
 *   2. write the generation's RAM into the backends through QEMU's own fds
 *      (qemu_backend_open): each backend is emptied first (a hole punched
 *      over it), then only non-zero pages are written, so zero pages stay
 *      holes; fdatasync;
 *   3. the device state ("vmstate" section) fed to migrate-incoming through
 *      a pipe (x-ignore-shared), then cont: the guest runs from the
 *      checkpoint.  leave_stopped: no cont; QEMU is "paused" with the
 *      generation's RAM and devices (its backends can be compared with a
 *      dump taken at the checkpoint) until the user's QMP cont.
 *
 * A failure in 2 or 3 leaves that QEMU not resumed (it is the user's to
 * stop); the error names the step.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

struct qemu_restore_result {
	int pid;                     /* the QEMU restored into */
	uint64_t pages, zero_pages;  /* pages written, pages left as holes */
	uint64_t bytes;              /* bytes written */
	uint64_t device_state_bytes;
	double write_ms, device_state_ms, duration_ms;
	char step[32];
};

int qemu_restore_run(struct store_image *img, const char *qmp_path, bool leave_stopped,
		     struct qemu_restore_result *res, char *why, size_t why_len);
