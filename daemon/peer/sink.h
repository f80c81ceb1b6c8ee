/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The peer sink: a generation streamed over a peer link instead of written
 * to the local store (sink.h).  Chunks are delta-encoded against the link's
 * cache; the receiver decodes and verifies every page before it stores it
 * and commits only when everything arrived.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "peer.pb-c.h"
#include "peer/link.h"
#include "pipeline/sink.h"

/*
 * Bring the link up and open the next generation of set on the peer: full,
 * or an increment over what the link committed last.  -ESTALE when the
 * peer's newest generation of the set is not that one (make it full and
 * begin again).  Pages are compressed at zstd_level (peer_zstd_level:
 * the wire may favour speed over the local store's level).  Job thread;
 * why gets the reason of a failure.
 */
int peer_sink_begin(struct peer_link *l, const char *set, pid_t pid, bool full, int zstd_level,
		    struct sink **ret, uint64_t *generation, char *why, size_t why_len);

/* The same for a QEMU migration's generation: its pages go into the
 * destination QEMU's backends named by mig (docs/qemu.md). */
int peer_sink_begin_migrate(struct peer_link *l, const char *set, pid_t pid, bool full,
			    int zstd_level, const Wpmig__Peer__MigrateTarget *mig,
			    struct sink **ret, uint64_t *generation, char *why, size_t why_len);
/*
 * After the source QEMU was told to migrate its device state: ask the
 * receiver to wait for the destination QEMU to complete it and resume the
 * guest.  *resumed_us is the destination's RESUME event, *incoming_us its
 * MIGRATION completed event (QEMU's realtime timestamps).  Job thread.
 */
int peer_migrate_finish(struct peer_link *l, const char *set,
			const Wpmig__Peer__MigrateTarget *mig, int64_t *resumed_us,
			int64_t *incoming_us, char *why, size_t why_len);
