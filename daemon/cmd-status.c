// SPDX-License-Identifier: GPL-2.0-only
/* status and sessions: answered on the loop from cached counters, never
 * waiting for a job. */
#include <errno.h>
#include <stdlib.h>

#include "build-config.h"
#include "verbs.h"
#include "basic/util.h"
#include "peer/server.h"

struct status_buf {
	Wpmig__StatusResult res;
	Wpmig__SessionInfo *info;
	Wpmig__LinkInfo *link;
	Wpmig__SessionInfo **ptrs;
	struct migrations_buf *mig;
};

static int status_fill(struct daemon *d, pid_t only, struct status_buf *b)
{
	unsigned n, i = 0;
	struct session *s, *next;

	/* An exec() in a target is seen when we look (a uffd does not tell). */
	for (s = TAILQ_FIRST(&d->sessions.head); s; s = next) {
		next = TAILQ_NEXT(s, link);
		daemon_session_execd(d, s);
	}
	n = d->sessions.n ? d->sessions.n : 1;
	wpmig__status_result__init(&b->res);
	b->info = calloc(n, sizeof(*b->info));
	b->link = calloc(n, sizeof(*b->link));
	b->ptrs = calloc(n, sizeof(*b->ptrs));
	if (!b->info || !b->link || !b->ptrs)
		return -ENOMEM;
	TAILQ_FOREACH(s, &d->sessions.head, link) {
		if (only && s->pid != only)
			continue;
		session_refresh_info(s);
		session_to_info(s, &b->info[i], &b->link[i]);
		b->ptrs[i] = &b->info[i];
		i++;
	}
	b->res.version = (char *)WPMIG_VERSION;
	b->res.uptime_ms = (now_ns() - d->started_ns) / 1000000;
	b->res.connections = control_n_connections(d->control);
	job_pool_counts(d->jobs, &b->res.jobs_running, &b->res.jobs_queued);
	b->res.max_sessions = d->cfg.max_sessions;
	b->res.n_sessions = i;
	b->res.sessions = b->ptrs;
	b->res.listen = d->peer && d->cfg.listen ? d->cfg.listen : (char *)"";
	if (d->peer)
		b->res.n_links = peer_server_links(d->peer, &b->res.links);
	b->mig = calloc(1, sizeof(*b->mig));
	if (!b->mig)
		return -ENOMEM;
	b->res.n_migrations = daemon_migrations_info(d, b->mig);
	b->res.migrations = b->mig->ptrs;
	return 0;
}

static void status_buf_free(struct status_buf *b)
{
	free(b->info);
	free(b->link);
	free(b->ptrs);
	free(b->mig);
}

static void reply_status(struct daemon *d, struct request *req, pid_t only, bool sessions)
{
	Wpmig__Response resp = WPMIG__RESPONSE__INIT;
	struct status_buf b = { 0 };

	if (status_fill(d, only, &b) < 0) {
		status_buf_free(&b);
		request_fail(req, -ENOMEM, "out of memory");
		return;
	}
	if (only && !b.res.n_sessions) {
		status_buf_free(&b);
		request_fail(req, -ENOENT, "pid %d is not tracked", (int)only);
		return;
	}
	if (sessions) {
		resp.result_case = WPMIG__RESPONSE__RESULT_SESSIONS;
		resp.sessions = &b.res;
	} else {
		resp.result_case = WPMIG__RESPONSE__RESULT_STATUS;
		resp.status = &b.res;
	}
	request_reply(req, &resp);
	status_buf_free(&b);
}

void cmd_status(struct daemon *d, struct request *req, const Wpmig__Request *msg)
{
	reply_status(d, req, msg->status->pid, false);
}

void cmd_sessions(struct daemon *d, struct request *req, const Wpmig__Request *msg)
{
	reply_status(d, req, 0, true);
}
