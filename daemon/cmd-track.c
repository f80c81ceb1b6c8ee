// SPDX-License-Identifier: GPL-2.0-only
/* check, track, untrack, and the detach every session ends with. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verbs.h"
#include "basic/log.h"
#include "basic/util.h"
#include "track/inject.h"
#include "track/probe.h"

/* ---- check ---- */

struct check_job {
	struct daemon *d;
	struct request *req;
	struct probe_result res[PROBE_MAX];
	int n;
};

static int check_run(struct job *j, void *userdata)
{
	struct check_job *c = userdata;
	int r = daemon_job_delay(c->d, j);

	if (r == 0)
		c->n = probe_run(c->res);
	return r;
}

static void check_done(struct job *j, int r, void *userdata)
{
	struct check_job *c = userdata;
	Wpmig__Response resp = WPMIG__RESPONSE__INIT;
	Wpmig__CheckResult cr = WPMIG__CHECK_RESULT__INIT;
	Wpmig__Feature f[PROBE_MAX], *fp[PROBE_MAX];

	if (r < 0) {
		request_fail(c->req, r, "check: %s", strerror(-r));
		free(c);
		return;
	}
	for (int i = 0; i < c->n; i++) {
		wpmig__feature__init(&f[i]);
		f[i].name = (char *)c->res[i].name;
		f[i].ok = c->res[i].ok;
		f[i].detail = c->res[i].detail;
		fp[i] = &f[i];
	}
	cr.n_features = (size_t)c->n;
	cr.features = fp;
	cr.all_ok = probe_all_ok(c->res, c->n);
	resp.result_case = WPMIG__RESPONSE__RESULT_CHECK;
	resp.check = &cr;
	request_reply(c->req, &resp);
	free(c);
}

static const struct job_ops check_ops = { "check", check_run, check_done, NULL };

void cmd_check(struct daemon *d, struct request *req, const Wpmig__Request *msg)
{
	struct check_job *c = calloc(1, sizeof(*c));
	int r;

	if (!c) {
		request_fail(req, -ENOMEM, "out of memory");
		return;
	}
	*c = (struct check_job){ .d = d, .req = req };
	r = job_submit(d->jobs, &check_ops, c, NULL);
	if (r < 0) {
		request_fail(req, r, "cannot start the check: %s", strerror(-r));
		free(c);
	}
}

void cmd_track(struct daemon *d, struct request *req, const Wpmig__Request *msg)
{
	daemon_session_attach(d, req, msg->track->pid, NULL, NULL, NULL);
}

void cmd_untrack(struct daemon *d, struct request *req, const Wpmig__Request *msg)
{
	pid_t pid = msg->untrack->pid;
	struct session *s = session_find(&d->sessions, pid);

	if (!s) {
		request_fail(req, -ENOENT, "pid %d is not tracked", (int)pid);
		return;
	}
	if (s->state != SESSION_TRACKING) {
		request_fail(req, -EBUSY, "pid %d is %s; try again when it is TRACKING", (int)pid,
			     session_state_name(s->state));
		return;
	}
	daemon_session_detach(d, s, req);
}
