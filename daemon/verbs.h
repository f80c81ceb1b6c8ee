/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The control verbs.  A handler runs on the loop thread with the decoded
 * request; msg is freed when it returns.  It answers req exactly once,
 * at once or later (usually from the done() of a job it submitted), with
 * request_reply() or request_fail(), and may send request_progress().
 *
 * Adding a verb's daemon side: write `void cmd_NAME(struct daemon *,
 * struct request *, const Wpmig__Request *)` in daemon/cmd-NAME.c,
 * declare it here, put it in the table in verbs.c, add the file to
 * daemon/meson.build.
 */
#pragma once

#include "daemon.h"

typedef void (*verb_handler)(struct daemon *d, struct request *req, const Wpmig__Request *msg);

struct verb {
	Wpmig__Request__VerbCase verb;
	const char *name;
	verb_handler handler;
};

const struct verb *verb_find(Wpmig__Request__VerbCase v);

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
/* verbs.c: the answer of a verb whose daemon side is not in this build */
void cmd_not_available(struct daemon *d, struct request *req, const Wpmig__Request *msg);
