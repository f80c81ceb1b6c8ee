// SPDX-License-Identifier: GPL-2.0-only
#include "verbs.h"

#include <errno.h>
#include <stddef.h>

#include "basic/util.h"

/* Replace cmd_not_available with a verb's handler once it exists. */
const struct verb verbs[] = {
	{ WPMIG__REQUEST__VERB_CHECK, "check", cmd_check },
	{ WPMIG__REQUEST__VERB_TRACK, "track", cmd_track },
	{ WPMIG__REQUEST__VERB_UNTRACK, "untrack", cmd_untrack },
	{ WPMIG__REQUEST__VERB_STATUS, "status", cmd_status },
	{ WPMIG__REQUEST__VERB_SESSIONS, "sessions", cmd_sessions },
	{ WPMIG__REQUEST__VERB_CHECKPOINT, "checkpoint", cmd_checkpoint },
	{ WPMIG__REQUEST__VERB_IMAGES, "images", cmd_images },
	{ WPMIG__REQUEST__VERB_RESTORE, "restore", cmd_restore },
	{ WPMIG__REQUEST__VERB_MIGRATE, "migrate", cmd_migrate },
};

const size_t n_verbs = ARRAY_SIZE(verbs);

void cmd_not_available(struct daemon *d, struct request *req, const Wpmig__Request *msg)
{
	for (size_t i = 0; i < n_verbs; i++)
		if (verbs[i].verb == msg->verb_case)
			request_fail(req, -EOPNOTSUPP, "%s: not available in this build of wpmigd",
				     verbs[i].name);
}
