// SPDX-License-Identifier: GPL-2.0-only
/*
 * A session's life on the daemon: attached by a track job, settled when a
 * job ends or the target exits, detached by a detach job, ended; and what
 * sessions and their jobs report (STATUS=, progress).  The daemon's
 * shutdown completes here, when its last session ends.
 */
#include "daemon.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "basic/log.h"
#include "basic/util.h"
#include "pipeline/pipeline.h"
#include "track/target.h"

void daemon_notify_status(struct daemon *d)
{
	unsigned running = 0, queued = 0, tracking = 0;
	struct session *s;

	if (!getenv("NOTIFY_SOCKET") || !d->jobs)
		return;
	TAILQ_FOREACH(s, &d->sessions.head, link)
		tracking += s->state != SESSION_ATTACHING && s->state != SESSION_FAILED;
	job_pool_counts(d->jobs, &running, &queued);
	sd_notifyf(0, "STATUS=%s%u sessions (%u attached), %u jobs, %u connections",
		   d->stopping ? "Stopping: " : "", d->sessions.n, tracking, running + queued,
		   d->control ? control_n_connections(d->control) : 0);
}

void daemon_forward_progress(struct request *req, const struct job_progress *p)
{
	Wpmig__Progress msg = WPMIG__PROGRESS__INIT;

	msg.phase = (char *)p->phase;
	msg.done = p->done;
	msg.total = p->total;
	msg.bytes = p->bytes;
	msg.rate = p->rate;
	msg.dirty_rate = p->dirty_rate;
	msg.expect_ms = p->expect_ms;
	request_progress(req, &msg);
}

int daemon_job_delay(const struct daemon *d, struct job *j)
{
	int r = d->debug_job_delay_ms ? job_wait_cancel(j, d->debug_job_delay_ms) : 0;

	if (r == 0 && d->debug_job_stuck_ms && !strcmp(job_name(j), d->debug_job_stuck)) {
		struct timespec ts = { d->debug_job_stuck_ms / 1000,
				       (long)(d->debug_job_stuck_ms % 1000) * 1000000L };

		log_warning("%s job: stuck for %u ms (WPMIGD_DEBUG_JOB_STUCK)", job_name(j),
			    d->debug_job_stuck_ms);
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	return r;
}

void daemon_maybe_finish(struct daemon *d)
{
	unsigned running, queued;
	struct timeval flush = { 0, 50000 }; /* let the last replies go out */

	if (!d->stopping || d->sessions.n)
		return;
	job_pool_counts(d->jobs, &running, &queued);
	if (running + queued == 0)
		event_base_loopexit(d->base, &flush);
}

/*
 * With nothing tracked nothing can checkpoint: give back the pipeline's
 * buffers and zstd contexts, and the heap the workers freed, so an idle
 * daemon is as small after use as before it.
 */
static void release_idle_memory(struct daemon *d)
{
	pthread_mutex_lock(&d->pipeline_lock);
	pipeline_free(d->pipeline);
	d->pipeline = NULL;
	pthread_mutex_unlock(&d->pipeline_lock);
	malloc_trim(0);
}

bool daemon_session_continues(const struct session *s, const char *set, const char *peer)
{
	return s->set && !strcmp(s->set, set) && s->generation &&
	       (s->dest == NULL) == (peer == NULL) && (!peer || !strcmp(s->dest, peer));
}

void daemon_session_end(struct daemon *d, struct session *s)
{
	session_free(s);
	if (!d->sessions.n)
		release_idle_memory(d);
	daemon_notify_status(d);
	daemon_maybe_finish(d);
}

/* ---- answers carrying one session ---- */

static void reply_session(struct request *req, struct session *s, bool untrack)
{
	Wpmig__Response resp = WPMIG__RESPONSE__INIT;
	Wpmig__SessionInfo info;
	Wpmig__LinkInfo link;

	session_to_info(s, &info, &link);
	if (untrack) {
		resp.result_case = WPMIG__RESPONSE__RESULT_UNTRACK;
		resp.untrack = &info;
	} else {
		resp.result_case = WPMIG__RESPONSE__RESULT_TRACK;
		resp.track = &info;
	}
	request_reply(req, &resp);
}

/* ---- track ---- */

struct track_job {
	struct daemon *d;
	struct session *s;
	struct request *req;
	session_attached_fn then; /* NULL: answer the track request */
	void (*drop)(void *then_ud); /* then_ud when then() does not run */
	void *then_ud;
	pid_t pid;
	struct tracker_opts opts;
	struct range_set only; /* opts.only: a QEMU guest's RAM backends */
	struct tracker *t;
	char why[256];
};

static int track_run(struct job *j, void *userdata)
{
	struct track_job *tj = userdata;
	struct job_progress p = { .phase = "attaching" };
	int r;

	job_post_progress(j, &p);
	r = daemon_job_delay(tj->d, j);
	if (r < 0)
		return r;
	return tracker_attach(tj->pid, &tj->opts, &tj->t, tj->why, sizeof(tj->why));
}

static void track_progress(struct job *j, const struct job_progress *p, void *userdata)
{
	struct track_job *tj = userdata;

	daemon_forward_progress(tj->req, p);
}

static void track_done(struct job *j, int r, void *userdata)
{
	struct track_job *tj = userdata;
	struct session *s = tj->s;
	struct daemon *d = tj->d;

	s->job = NULL;
	if (tj->then && (r < 0 || s->exited || d->stopping) && tj->drop)
		tj->drop(tj->then_ud);
	if (r < 0) {
		if (!tj->why[0])
			snprintf(tj->why, sizeof(tj->why), "%s", r == -ECANCELED ?
				 "cancelled: wpmigd is shutting down" : strerror(-r));
		log_warning("pid %d: cannot track: %s", (int)s->pid, tj->why);
		request_fail(tj->req, r, "cannot track pid %d: %s", (int)s->pid, tj->why);
		session_enter_state(s, SESSION_FAILED);
	} else {
		struct tracker_info info;

		tracker_get_info(tj->t, &info);
		if (info.attach_threads_exited)
			log_debug("pid %d: attached; %u threads chosen to stop exited first",
				  (int)s->pid, info.attach_threads_exited);
		s->tracker = tj->t;
		session_enter_state(s, SESSION_TRACKING);
		session_refresh_info(s);
		if (tj->then && !s->exited && !d->stopping) {
			struct track_job copy = *tj;
			range_set_free(&tj->only);
			free(tj);
			copy.then(d, s, copy.req, copy.then_ud);
			return;
		}
		if (tj->then)
			request_fail(tj->req, -ESRCH, "pid %d: %s", (int)s->pid,
				     s->exited ? "the process exited" : "wpmigd is shutting down");
		else
			reply_session(tj->req, s, false);
	}
	range_set_free(&tj->only);
	free(tj);
	daemon_session_settle(d, s);
}

static const struct job_ops track_ops = { "track", track_run, track_done, track_progress };

/* Quick refusals on the loop, before a session exists. */
static int track_precheck(struct daemon *d, struct request *req, pid_t pid)
{
	struct session *s;
	char why[256] = "";

	if (pid <= 0)
		return request_fail(req, -EINVAL, "invalid pid %d", (int)pid);
	s = session_find(&d->sessions, pid);
	if (s && daemon_session_execd(d, s))
		s = NULL; /* ran exec(): that session ended, this one tracks the new program */
	if (s)
		return request_fail(req, -EEXIST, "pid %d is already tracked (session %s)",
				    (int)pid, session_state_name(s->state));
	if (d->sessions.n >= d->cfg.max_sessions)
		return request_fail(req, -ENOSPC, "session limit reached (max_sessions=%u)",
				    d->cfg.max_sessions);
	int r = target_check(pid, why, sizeof(why));
	if (r < 0)
		return request_fail(req, r, "cannot track pid %d: %s", (int)pid,
				    why[0] ? why : strerror(-r));
	return 0;
}

int daemon_session_attach(struct daemon *d, struct request *req, pid_t pid,
			  session_attached_fn then, void (*drop)(void *then_ud), void *then_ud)
{
	return daemon_session_attach_only(d, req, pid, NULL, then, drop, then_ud);
}

int daemon_session_attach_only(struct daemon *d, struct request *req, pid_t pid,
			       const struct range_set *only, session_attached_fn then,
			       void (*drop)(void *then_ud), void *then_ud)
{
	struct track_job *tj;
	struct session *s;
	int r;

	r = track_precheck(d, req, pid);
	if (r < 0)
		return r;
	tj = calloc(1, sizeof(*tj));
	r = tj ? session_new(&d->sessions, pid, &s) : -ENOMEM;
	if (r < 0) {
		free(tj);
		return request_fail(req, r, "cannot track pid %d: %s", (int)pid, strerror(-r));
	}
	*tj = (struct track_job){ .d = d, .s = s, .req = req, .pid = pid, .then = then,
				  .drop = drop, .then_ud = then_ud,
				  .opts = { .allow_pinned = d->cfg.allow_pinned } };
	for (size_t i = 0; r == 0 && only && i < only->n; i++)
		r = range_set_add(&tj->only, only->r[i].start, only->r[i].end);
	for (size_t i = 0; r == 0 && only && i < only->n; i++)
		r = range_set_add(&s->qemu_ram, only->r[i].start, only->r[i].end);
	if (r == 0 && only)
		tj->opts.only = &tj->only;
	if (r == 0)
		r = job_submit(d->jobs, &track_ops, tj, &s->job);
	if (r < 0) {
		range_set_free(&tj->only);
		free(tj);
		request_fail(req, r, "cannot start the attach: %s", strerror(-r));
		session_enter_state(s, SESSION_FAILED);
		daemon_session_end(d, s);
		return r;
	}
	daemon_notify_status(d);
	return 0;
}

/* ---- detach (untrack, target exit, shutdown) ---- */

struct detach_job {
	struct daemon *d;
	struct session *s;
	struct request *req; /* may be NULL */
	struct tracker *t;
};

static int detach_run(struct job *j, void *userdata)
{
	struct detach_job *dj = userdata;

	/* Not cancellable: a half-detached target is worse than a late exit. */
	tracker_detach(dj->t);
	return 0;
}

static void detach_done(struct job *j, int r, void *userdata)
{
	struct detach_job *dj = userdata;
	struct session *s = dj->s;

	s->job = NULL;
	if (r < 0) /* cancelled before it ran: do it here, it is short */
		tracker_detach(dj->t);
	session_enter_state(s, SESSION_DETACHED);
	if (dj->req)
		reply_session(dj->req, s, true);
	daemon_session_end(dj->d, s);
	free(dj);
}

static const struct job_ops detach_ops = { "detach", detach_run, detach_done, NULL };

static void session_detach(struct daemon *d, struct session *s, struct request *req, bool now)
{
	struct detach_job *dj = calloc(1, sizeof(*dj));
	int r;

	session_refresh_info(s);
	if (session_enter_state(s, SESSION_DETACHING) < 0 || !dj) {
		free(dj);
		if (req)
			request_fail(req, -EINVAL, "pid %d cannot be detached now", (int)s->pid);
		return;
	}
	*dj = (struct detach_job){ .d = d, .s = s, .req = req, .t = s->tracker };
	s->tracker = NULL;
	if (now) {
		/* Not behind jobs that may never end: a detach is short. */
		detach_done(NULL, -ECANCELED, dj);
		return;
	}
	r = job_submit(d->jobs, &detach_ops, dj, &s->job);
	if (r < 0) {
		log_warning_errno(r, "pid %d: detaching on the loop: %m", (int)s->pid);
		detach_done(NULL, r, dj);
	}
	daemon_notify_status(d);
}

void daemon_session_detach(struct daemon *d, struct session *s, struct request *req)
{
	session_detach(d, s, req, d->stopping);
}

bool daemon_session_execd(struct daemon *d, struct session *s)
{
	char comm[32] = "?";

	if (s->job || !s->tracker || s->exited || s->state != SESSION_TRACKING ||
	    !tracker_mm_gone(s->tracker))
		return false;
	proc_status_field(s->pid, "Name", comm, sizeof(comm));
	log_notice("pid %d: ran exec() (now %s): the memory that was tracked is gone; the "
		   "session ends (a checkpoint tracks the new program afresh)", (int)s->pid, comm);
	/* Nothing of the old mm is left to unregister: at once, on the loop. */
	session_detach(d, s, NULL, true);
	return true;
}

void daemon_session_settle(struct daemon *d, struct session *s)
{
	if (s->job)
		return;
	if (daemon_session_execd(d, s))
		return;
	if (!s->tracker) {
		if (s->exited || d->stopping || s->state == SESSION_FAILED)
			daemon_session_end(d, s);
		return;
	}
	session_refresh_info(s);
	if (s->exited || d->stopping || s->state == SESSION_FAILED)
		daemon_session_detach(d, s, NULL);
	daemon_notify_status(d);
}
