/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The destination of a QEMU migration, on the receiving daemon: the peer
 * server hands it every Open that carries a migration target
 * (peer_target_ops).  The first Open of a source session connects to the
 * destination QEMU's QMP socket — only under incoming_qmp_dir — checks it
 * waits for an incoming migration and has backends of the source's ids and
 * sizes (share=on), takes their fds from the QEMU process and sets
 * x-ignore-shared.  Each generation's pages are written straight into
 * those backends (zero pages only where the destination is not zero yet);
 * a commit makes them durable.  The finish Open waits for QEMU's own
 * migration of the device state to complete and resumes the guest.  A
 * connection that ends before that leaves the destination QEMU paused,
 * never resumed.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "peer/server.h"

struct qemu_targets;

/* incoming_qmp_dir may be NULL or "": then every migration is refused. */
int qemu_targets_new(const char *incoming_qmp_dir, struct qemu_targets **ret);
void qemu_targets_free(struct qemu_targets *ts);
/* The directory for migrations that start from now on (SIGHUP). */
int qemu_targets_set_dir(struct qemu_targets *ts, const char *incoming_qmp_dir);

/* The peer server's hooks; their ud is the struct qemu_targets. */
extern const struct peer_target_ops qemu_target_ops;

struct qemu_target_info {
	char qmp[256];
	char state[16];       /* "receiving", "finishing", "running", "failed" */
	uint64_t generation;  /* passes committed */
	uint64_t pages_written, pages_zeroed;
	uint64_t age_ms;
};

/* Migrations being received, for status; how many were filled (<= max). */
size_t qemu_targets_list(struct qemu_targets *ts, struct qemu_target_info *out, size_t max);
