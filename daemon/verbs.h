/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The control verbs (struct verb in daemon.h says how a handler answers).
 *
 * Adding a verb's daemon side: write `void cmd_NAME(struct daemon *,
 * struct request *, const Wpmig__Request *)` in daemon/cmd-NAME.c,
 * declare it here, put it in the table in verbs.c, add the file to
 * daemon/meson.build.
 */
#pragma once

#include "daemon.h"

#include <stddef.h>

/* The table main.c hands to daemon_init(). */
extern const struct verb verbs[];
extern const size_t n_verbs;

/* cmd-track.c */
void cmd_check(struct daemon *d, struct request *req, const Wpmig__Request *msg);
void cmd_track(struct daemon *d, struct request *req, const Wpmig__Request *msg);
void cmd_untrack(struct daemon *d, struct request *req, const Wpmig__Request *msg);
/* cmd-status.c */
void cmd_status(struct daemon *d, struct request *req, const Wpmig__Request *msg);
void cmd_sessions(struct daemon *d, struct request *req, const Wpmig__Request *msg);
/* cmd-checkpoint.c, cmd-images.c, cmd-restore.c */
void cmd_checkpoint(struct daemon *d, struct request *req, const Wpmig__Request *msg);
void cmd_images(struct daemon *d, struct request *req, const Wpmig__Request *msg);
void cmd_restore(struct daemon *d, struct request *req, const Wpmig__Request *msg);
/* cmd-checkpoint.c: a row of the per-pass table as the protocol carries it
 * (a checkpoint's result, images show) */
struct pass_row;
void pass_info_fill(Wpmig__PassInfo *o, const struct pass_row *r);
/* cmd-vm.c: checkpoint --qmp, restore --qmp (a QEMU guest) */
void cmd_checkpoint_vm(struct daemon *d, struct request *req, const Wpmig__Request *msg);
void cmd_restore_vm(struct daemon *d, struct request *req, const Wpmig__Request *msg);
void cmd_migrate(struct daemon *d, struct request *req, const Wpmig__Request *msg);
/* verbs.c: the answer of a verb whose daemon side is not in this build */
void cmd_not_available(struct daemon *d, struct request *req, const Wpmig__Request *msg);
