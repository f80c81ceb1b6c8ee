/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A QEMU guest's device state, saved and loaded by QEMU's own migration
 * through a pipe the daemon holds the other end of (getfd + "fd:NAME"), with
 * x-ignore-shared: RAM in shared backends stays out of the stream, the rest
 * (device registers, ROMs, video RAM) is a few hundred KB.  Used by VM
 * checkpoints (save, with the guest stopped) and VM restore (load, into a
 * QEMU waiting with -incoming defer).  QEMU 7.2 checked: a source that
 * completed such a migration is "postmigrate" and runs again with cont;
 * the next migration (ours or a real one) is accepted.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "qemu/qmp.h"

#define QEMU_CAPS_N 2

/* The migration capabilities wpmig needs on: x-ignore-shared and events. */
struct qemu_caps {
	bool old[QEMU_CAPS_N]; /* as they were before qemu_caps_on() */
	bool set;              /* qemu_caps_on() changed them */
};

/* Remember the capabilities, then switch ours on.  -EREMOTEIO fills err. */
int qemu_caps_on(struct qmp *q, int timeout_ms, struct qemu_caps *c, struct qmp_error *err);
/* Put them back as they were (if qemu_caps_on() had set them). */
int qemu_caps_restore(struct qmp *q, int timeout_ms, struct qemu_caps *c);

/*
 * With the guest stopped and the capabilities on: QEMU's device state into
 * *buf (malloc'ed) and *len, at most max bytes (-E2BIG beyond: QEMU's
 * migration then fails on its closed pipe).  Waits for the MIGRATION event
 * "completed" (QEMU is then "postmigrate"; cont runs it again).  On
 * failure why says which step; a migration still running is cancelled.
 */
int qemu_vmstate_save(struct qmp *q, int timeout_ms, size_t max, void **buf, size_t *len,
		      char *why, size_t why_len);

/*
 * Into a QEMU waiting with -incoming defer, the capabilities on: feed it
 * len bytes of device state with migrate-incoming and wait for "completed"
 * (QEMU is then "paused").
 */
int qemu_vmstate_load(struct qmp *q, int timeout_ms, const void *buf, size_t len, char *why,
		      size_t why_len);
