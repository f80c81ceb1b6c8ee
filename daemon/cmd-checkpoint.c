// SPDX-License-Identifier: GPL-2.0-only
/*
 * checkpoint PID [--set NAME] [--peer ADDR] [--leave-stopped]: the next
 * generation of a set from the session tracking PID (attached first if
 * need be), into the local store or streamed to a peer daemon.  The first
 * generation of a session, or one into another set or to another place,
 * is full; later ones hold what changed since the previous one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verbs.h"
#include "basic/log.h"
#include "basic/util.h"
#include "peer/link.h"
#include "peer/sink.h"
#include "pipeline/checkpoint.h"
#include "pipeline/pipeline.h"
#include "store/store.h"

#define PEER_ATTEMPTS 4u
#define PEER_RETRY_FIRST_MS 200 /* then 800, 3200 */

struct ckpt_job {
	struct daemon *d;
	struct session *s;
	struct request *req;
	struct job *job;
	char *set;
	char *peer;              /* NULL: the local store */
	uint64_t max_bandwidth;  /* peer: bytes per second, 0: unlimited */
	int peer_level;          /* peer: zstd level of the pages sent */
	struct peer_link *link;
	bool leave_stopped, full;
	uint64_t parent;
	uint64_t t0;
	struct checkpoint_result res;
	char why[256];
};

static void ckpt_free(struct ckpt_job *c)
{
	free(c->set);
	free(c->peer);
	free(c);
}

/* An attach that failed before start() could run. */
static void ckpt_drop(void *ud)
{
	ckpt_free(ud);
}

static void on_progress(void *ud, const char *phase, uint64_t done, uint64_t total,
			uint64_t bytes_out)
{
	struct ckpt_job *c = ud;
	struct job_progress p = { .done = done, .total = total, .bytes = bytes_out };
	double s = ns_to_ms(now_ns() - c->t0) / 1000.0;

	snprintf(p.phase, sizeof(p.phase), "%s", phase);
	p.rate = s > 0 ? (double)done * PAGE_SIZE_4K / s : 0;
	job_post_progress(c->job, &p);
}

static int begin_sink(struct ckpt_job *c, struct sink **sink, uint64_t *gen)
{
	int r;

	pthread_mutex_lock(&c->d->store_lock);
	r = store_begin(c->d->store, c->set, c->s->pid, c->full, c->parent, sink, gen);
	/* The set moved on without us (rm, another writer): start afresh. */
	if ((r == -ESTALE || r == -ENOENT) && !c->full) {
		c->full = true;
		r = tracker_invalidate(c->s->tracker);
		if (r == 0)
			r = store_begin(c->d->store, c->set, c->s->pid, true, 0, sink, gen);
	}
	pthread_mutex_unlock(&c->d->store_lock);
	if (r < 0)
		snprintf(c->why, sizeof(c->why), "cannot start generation of set %s: %s", c->set,
			 r == -EBUSY ? "another checkpoint or rm holds the set" : strerror(-r));
	return r;
}

/* One generation to the peer; a peer whose newest generation is not our
 * parent gets a full one. */
static int peer_attempt(struct ckpt_job *c, struct pipeline *pl, const struct checkpoint_opts *o)
{
	struct sink *sink;
	uint64_t gen;
	int r;

	c->why[0] = 0;
	r = peer_sink_begin(c->link, c->set, c->s->pid, c->full, c->peer_level, &sink, &gen,
			    c->why, sizeof(c->why));
	if (r == -ESTALE && !c->full) {
		c->full = true;
		r = tracker_invalidate(c->s->tracker);
		if (r == 0)
			r = peer_sink_begin(c->link, c->set, c->s->pid, true, c->peer_level, &sink,
					    &gen, c->why, sizeof(c->why));
	}
	if (r < 0)
		return r;
	r = checkpoint_run(c->s->tracker, pl, sink, o, &c->res, c->why, sizeof(c->why));
	if (r < 0)
		peer_link_why(c->link, c->why, sizeof(c->why));
	return r;
}

/* Errors of the connection, not of the target or the store: worth a retry. */
static bool transient(int r)
{
	switch (-r) {
	case ECONNRESET: case ECONNREFUSED: case ECONNABORTED: case EPIPE: case ETIMEDOUT:
	case ENOTCONN: case EBADMSG: case EPROTO: case EHOSTUNREACH: case ENETUNREACH:
	case ESHUTDOWN:
	case EBUSY: /* the receiver still holds our dropped connection's generation */
	case EUSERS: /* the receiver is full: another source may finish meanwhile */
		return true;
	default:
		return false;
	}
}

/* A dropped connection loses only the generation in flight (the tracker
 * got its pages back): connect again and redo it, a few times. */
static int ckpt_peer_run(struct ckpt_job *c, struct job *j, struct pipeline *pl,
			 const struct checkpoint_opts *o)
{
	unsigned delay_ms = PEER_RETRY_FIRST_MS;
	int r;

	peer_link_set_bandwidth(c->link, c->max_bandwidth);
	for (unsigned attempt = 1;; attempt++) {
		r = peer_attempt(c, pl, o);
		if (r == 0 || !transient(r) || attempt == PEER_ATTEMPTS)
			break;
		log_notice("pid %d: checkpoint to %s failed (%s): attempt %u of %u in %u ms",
			   (int)c->s->pid, c->peer, c->why[0] ? c->why : strerror(-r), attempt + 1,
			   PEER_ATTEMPTS, delay_ms);
		peer_link_reset(c->link);
		if (job_wait_cancel(j, delay_ms) < 0)
			return -ECANCELED;
		delay_ms *= 4;
		if (c->full)
			tracker_invalidate(c->s->tracker); /* a full one again covers everything */
	}
	if (r < 0 && transient(r)) {
		char why[sizeof(c->why)];

		snprintf(why, sizeof(why), "%s", c->why[0] ? c->why : strerror(-r));
		snprintf(c->why, sizeof(c->why), "gave up after %u attempts: %.200s", PEER_ATTEMPTS, why);
	}
	return r;
}

static int ckpt_run(struct job *j, void *userdata)
{
	struct ckpt_job *c = userdata;
	struct checkpoint_opts o = { .leave_stopped = c->leave_stopped, .progress = on_progress,
				     .ud = c, .settle_max_ms = c->d->cfg.freeze_settle_ms };
	struct pipeline *pl;
	struct sink *sink;
	uint64_t gen;
	int r;

	c->job = j;
	c->t0 = now_ns();
	r = daemon_job_delay(c->d, j);
	if (r == 0)
		r = daemon_pipeline(c->d, &pl);
	if (r < 0)
		return r;
	struct tracker_info info;
	tracker_get_info(c->s->tracker, &info);
	if (c->full && info.passes > 0)
		r = tracker_invalidate(c->s->tracker); /* a new set: cover everything */
	if (r == 0 && c->link)
		return ckpt_peer_run(c, j, pl, &o);
	if (r == 0)
		r = begin_sink(c, &sink, &gen);
	if (r < 0)
		return r;
	return checkpoint_run(c->s->tracker, pl, sink, &o, &c->res, c->why, sizeof(c->why));
}

static void ckpt_progress(struct job *j, const struct job_progress *p, void *userdata)
{
	daemon_forward_progress(((struct ckpt_job *)userdata)->req, p);
}

void pass_info_fill(Wpmig__PassInfo *o, const struct pass_row *r)
{
	wpmig__pass_info__init(o);
	o->seq = r->seq;
	o->final = r->flags & PASS_ROW_FINAL;
	o->held = r->flags & PASS_ROW_HELD;
	o->found = r->found;
	o->data_pages = r->data_pages;
	o->zero_pages = r->zero_pages;
	o->bytes = r->bytes;
	o->scan_ms = ns_to_ms(r->scan_ns);
	o->copy_ms = ns_to_ms(r->copy_ns);
	o->store_ms = ns_to_ms(r->store_ns);
	o->pause_ms = ns_to_ms(r->pause_ns);
}

static void reply(struct ckpt_job *c)
{
	Wpmig__Response resp = WPMIG__RESPONSE__INIT;
	Wpmig__CheckpointResult cr = WPMIG__CHECKPOINT_RESULT__INIT;
	const struct checkpoint_result *res = &c->res;
	Wpmig__PassInfo rows[PASSES_MAX], *rowp[PASSES_MAX];

	cr.set = c->set;
	cr.generation = res->gen.generation;
	cr.parent = res->gen.parent;
	cr.bytes = res->bytes;
	cr.pause_ms = ns_to_ms(res->pause_ns);
	cr.duration_ms = ns_to_ms(res->duration_ns);
	cr.passes = res->passes;
	/* What the generation holds, as images list shows it; copied_pages
	 * counts every pass's copies. */
	cr.data_pages = res->gen.held_data_pages;
	cr.zero_pages = res->gen.held_zero_pages;
	cr.pages = cr.data_pages + cr.zero_pages;
	cr.copied_pages = res->pages;
	cr.raw_bytes = cr.data_pages * PAGE_SIZE_4K;
	cr.regions = res->regions;
	cr.final_pages = res->final_pages;
	cr.final_scan_ms = ns_to_ms(res->final_scan_ns);
	cr.final_copy_ms = ns_to_ms(res->final_copy_ns);
	cr.freeze_ms = ns_to_ms(res->freeze_ns);
	cr.scan_ms = cr.final_scan_ms;
	cr.copy_ms = cr.final_copy_ms;
	cr.thaw_ms = ns_to_ms(res->thaw_ns);
	cr.release_wait_ms = ns_to_ms(res->release_wait_ns);
	cr.settle_ms = ns_to_ms(res->settle_ns);
	cr.settle_threads = res->settle_threads;
	cr.threads = res->threads;
	cr.peer = c->peer ? c->peer : (char *)"";
	for (uint32_t i = 0; i < res->n_pass_rows; i++) {
		pass_info_fill(&rows[i], &res->pass_rows[i]);
		rowp[i] = &rows[i];
	}
	cr.pass_rows = rowp;
	cr.n_pass_rows = res->n_pass_rows;
	resp.result_case = WPMIG__RESPONSE__RESULT_CHECKPOINT;
	resp.checkpoint = &cr;
	request_reply(c->req, &resp);
}

/* For status: where the last pause went, and the longest one. */
static void note_pause(struct session *s, const struct checkpoint_result *res)
{
	Wpmig__PauseSteps *p = &s->last_pause;

	p->pause_ms = ns_to_ms(res->pause_ns);
	p->freeze_ms = ns_to_ms(res->freeze_ns);
	p->scan_ms = ns_to_ms(res->final_scan_ns);
	p->copy_ms = ns_to_ms(res->final_copy_ns);
	p->thaw_ms = ns_to_ms(res->thaw_ns);
	p->settle_ms = ns_to_ms(res->settle_ns);
	s->max_pause_ms = MAX(s->max_pause_ms, p->pause_ms);
}

static void ckpt_done(struct job *j, int r, void *userdata)
{
	struct ckpt_job *c = userdata;
	struct session *s = c->s;
	struct daemon *d = c->d;

	s->job = NULL;
	if (r == 0) {
		free(s->set);
		s->set = strdup(c->set);
		s->generation = c->res.gen.generation;
		free(s->dest);
		s->dest = c->peer ? strdup(c->peer) : NULL;
		session_account_pass(s, c->res.data_pages + c->res.zero_pages, now_ns());
		note_pause(s, &c->res);
		log_info("pid %d: generation %llu of %s: %llu pages, %llu bytes, pause %.2f ms "
			 "(freeze %.2f, scan %.2f, copy %.2f, thaw %.2f)",
			 (int)s->pid, (unsigned long long)s->generation, c->set,
			 (unsigned long long)c->res.pages, (unsigned long long)c->res.bytes,
			 s->last_pause.pause_ms, s->last_pause.freeze_ms, s->last_pause.scan_ms,
			 s->last_pause.copy_ms, s->last_pause.thaw_ms);
		if (c->res.settle_threads)
			log_debug("pid %d: waited %.2f ms before the freeze for %u thread(s) that woke "
				  "since the last live pass to sleep again%s", (int)s->pid,
				  ns_to_ms(c->res.settle_ns), c->res.settle_threads,
				  c->res.settle_timed_out ? " (freeze_settle_ms reached)" : "");
		if (c->res.freeze_threads_exited)
			log_debug("pid %d: frozen in %u walks of its threads; %u threads exited "
				  "meanwhile", (int)s->pid, c->res.freeze_walks,
				  c->res.freeze_threads_exited);
		reply(c);
	} else {
		if (s->tracker && !s->exited && tracker_mm_gone(s->tracker))
			snprintf(c->why, sizeof(c->why), "the process ran exec() during the checkpoint: "
				 "the memory it was taking is gone (the session ends; checkpoint "
				 "again for the new program)");
		if (!c->why[0])
			snprintf(c->why, sizeof(c->why), "%s", r == -ECANCELED ?
				 "cancelled: wpmigd is shutting down" : strerror(-r));
		log_warning("pid %d: checkpoint failed: %s", (int)s->pid, c->why);
		request_fail(c->req, r, "checkpoint of pid %d failed: %s", (int)s->pid, c->why);
	}
	session_enter_state(s, s->exited ? SESSION_FAILED : SESSION_TRACKING);
	session_refresh_info(s);
	ckpt_free(c);
	daemon_session_settle(d, s);
}

static const struct job_ops ckpt_ops = { "checkpoint", ckpt_run, ckpt_done, ckpt_progress };

static void start(struct daemon *d, struct session *s, struct request *req, void *userdata)
{
	struct ckpt_job *c = userdata;
	int r;

	c->s = s;
	c->req = req;
	c->full = !daemon_session_continues(s, c->set, c->peer);
	c->parent = c->full ? 0 : s->generation;
	if (c->peer) {
		r = daemon_peer_link(d, s, c->peer);
		if (r < 0) {
			request_fail(req, r, "cannot set up the link to %s: %s", c->peer, strerror(-r));
			ckpt_free(c);
			return;
		}
		c->link = s->peer_link;
	}
	session_enter_state(s, SESSION_CHECKPOINTING);
	r = job_submit(d->jobs, &ckpt_ops, c, &s->job);
	if (r < 0) {
		request_fail(req, r, "cannot start the checkpoint: %s", strerror(-r));
		session_enter_state(s, SESSION_TRACKING);
		ckpt_free(c);
		return;
	}
	daemon_notify_status(d);
}

void cmd_checkpoint(struct daemon *d, struct request *req, const Wpmig__Request *msg)
{
	const Wpmig__CheckpointRequest *m = msg->checkpoint;
	struct session *s = session_find(&d->sessions, m->pid);
	struct ckpt_job *c;

	if (m->qmp && m->qmp[0]) {
		cmd_checkpoint_vm(d, req, msg);
		return;
	}
	/* A target that ran exec() since: its session ends, the new program
	 * is attached afresh below, as an untracked process would be. */
	if (s && daemon_session_execd(d, s))
		s = NULL;
	if (m->peer && m->peer[0] && !d->peer_key.bytes) {
		request_fail(req, -ENOKEY, "checkpoint --peer needs peer_key_file in the daemon's "
			     "configuration (the peer port authenticates with it)");
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c || (m->set && m->set[0] ? asprintf(&c->set, "%s", m->set)
				       : asprintf(&c->set, "pid-%d", (int)m->pid)) < 0) {
		free(c);
		request_fail(req, -ENOMEM, "out of memory");
		return;
	}
	c->d = d;
	c->leave_stopped = m->leave_stopped;
	c->max_bandwidth = m->max_bandwidth ? m->max_bandwidth : d->cfg.max_bandwidth;
	c->peer_level = d->cfg.peer_zstd_level;
	if (m->peer && m->peer[0] && !(c->peer = strdup(m->peer))) {
		request_fail(req, -ENOMEM, "out of memory");
		ckpt_free(c);
		return;
	}
	if (!store_set_name_valid(c->set)) {
		request_fail(req, -EINVAL, "invalid set name \"%s\": use 1-%d of [A-Za-z0-9._+@:-], "
			     "not starting with '.' or '-'", c->set, STORE_SET_NAME_MAX);
		ckpt_free(c);
		return;
	}
	if (!s) {
		/* Not tracked yet: attach, then this is its first (full) generation. */
		if (daemon_session_attach(d, req, m->pid, start, ckpt_drop, c) < 0)
			ckpt_free(c);
		return;
	}
	if (s->state != SESSION_TRACKING || s->job) {
		request_fail(req, -EBUSY, "pid %d is %s; a checkpoint needs it TRACKING", (int)s->pid,
			     session_state_name(s->state));
		ckpt_free(c);
		return;
	}
	start(d, s, req, c);
}
