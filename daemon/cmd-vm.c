// SPDX-License-Identifier: GPL-2.0-only
/*
 * checkpoint --qmp SOCK [--set NAME] [--peer ADDR] [--leave-stopped]: a
 * generation of the QEMU guest behind SOCK (qemu/checkpoint.c does the
 * work), into the local store or streamed to a peer daemon.  A probe job
 * asks QEMU for its PID and RAM backends (QMP blocks: never on the loop);
 * the session tracking that PID is attached with only those mappings (or
 * must already be), and a checkpoint job takes the generation.  The
 * session keeps tracking between calls, so the next generation of the same
 * set (in the same place) is incremental.
 *
 * restore --qmp SOCK SET/GEN: a VM generation into the QEMU behind SOCK,
 * started with -incoming defer (qemu/restore.c); no session: QEMU is not
 * tracked.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"
#include "basic/util.h"
#include "peer/link.h"
#include "peer/sink.h"
#include "pipeline/pipeline.h"
#include "qemu/backend.h"
#include "qemu/checkpoint.h"
#include "qemu/qmp.h"
#include "qemu/restore.h"
#include "store/store.h"
#include "verbs.h"

#define QMP_TIMEOUT_MS 10000

struct vm_job {
	struct daemon *d;
	struct session *s;
	struct request *req;
	struct job *job;
	char *qmp, *set;
	char *peer;             /* NULL: the local store */
	uint64_t max_bandwidth; /* peer: bytes per second, 0: unlimited */
	struct peer_link *link;
	pid_t pid;
	struct qemu_ram ram;
	struct range_set only; /* the backends' mappings */
	bool full, leave_stopped;
	uint64_t parent;
	uint64_t t0;
	struct qemu_ckpt_result res;
	char why[512];
};

static void vm_free(struct vm_job *v)
{
	range_set_free(&v->only);
	free(v->qmp);
	free(v->set);
	free(v->peer);
	free(v);
}

/* The attach failed after it started: start() never runs. */
static void vm_drop(void *ud)
{
	vm_free(ud);
}

/* QEMU's PID and RAM backends, refusing what cannot be tracked. */
static int probe(struct vm_job *v, struct qmp **ret)
{
	struct qmp_error err = { "", "" };
	struct qmp *q;
	int r = qmp_open(v->qmp, QMP_TIMEOUT_MS, &q);

	if (r < 0) {
		snprintf(v->why, sizeof(v->why), "cannot connect to QMP socket %s: %s", v->qmp,
			 strerror(-r));
		return r;
	}
	v->pid = qmp_pid(q);
	r = qemu_ram_discover(q, QMP_TIMEOUT_MS, &v->ram, &err);
	if (r < 0)
		snprintf(v->why, sizeof(v->why), "QEMU %d: %s", (int)v->pid,
			 err.class[0] ? err.desc : strerror(-r));
	if (r == 0)
		r = qemu_ram_refusal(q, QMP_TIMEOUT_MS, &v->ram, true, v->why, sizeof(v->why));
	range_set_clear(&v->only);
	for (size_t i = 0; r == 0 && i < v->ram.n; i++)
		r = range_set_add(&v->only, v->ram.b[i].start, v->ram.b[i].end);
	if (r < 0 || !ret)
		qmp_close(q);
	else
		*ret = q;
	return r;
}

static bool same_ranges(const struct range_set *a, const struct range_set *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (a->r[i].start != b->r[i].start || a->r[i].end != b->r[i].end)
			return false;
	return true;
}

/* ---- the checkpoint job ---- */

static void on_progress(void *ud, const char *phase, uint64_t done, uint64_t total,
			uint64_t bytes_out)
{
	struct vm_job *v = ud;
	struct job_progress p = { .done = done, .total = total, .bytes = bytes_out };
	double s = ns_to_ms(now_ns() - v->t0) / 1000.0;

	snprintf(p.phase, sizeof(p.phase), "%s", phase);
	p.rate = s > 0 ? (double)done * PAGE_SIZE_4K / s : 0;
	job_post_progress(v->job, &p);
}

static int begin_sink(struct vm_job *v, struct sink **sink)
{
	uint64_t gen;
	int r;

	pthread_mutex_lock(&v->d->store_lock);
	r = store_begin(v->d->store, v->set, v->pid, v->full, v->parent, sink, &gen);
	if ((r == -ESTALE || r == -ENOENT) && !v->full) {
		v->full = true;
		r = tracker_invalidate(v->s->tracker);
		if (r == 0)
			r = store_begin(v->d->store, v->set, v->pid, true, 0, sink, &gen);
	}
	pthread_mutex_unlock(&v->d->store_lock);
	if (r < 0)
		snprintf(v->why, sizeof(v->why), "cannot start generation of set %s: %s", v->set,
			 r == -EBUSY ? "another checkpoint or rm holds the set" : strerror(-r));
	return r;
}

/* The generation on the peer instead: full when the peer's newest is not
 * our parent.  One attempt: a failed VM checkpoint is taken again by the
 * user (the guest ran on, the tracker kept the pages). */
static int begin_peer_sink(struct vm_job *v, struct sink **sink)
{
	uint64_t gen;
	int level = v->d->cfg.peer_zstd_level;
	int r;

	peer_link_set_bandwidth(v->link, v->max_bandwidth);
	r = peer_sink_begin(v->link, v->set, v->pid, v->full, level, sink, &gen, v->why,
			    sizeof(v->why));
	if (r == -ESTALE && !v->full) {
		v->full = true;
		r = tracker_invalidate(v->s->tracker);
		if (r == 0)
			r = peer_sink_begin(v->link, v->set, v->pid, true, level, sink, &gen, v->why,
					    sizeof(v->why));
	}
	if (r < 0 && !v->why[0])
		peer_link_why(v->link, v->why, sizeof(v->why));
	return r;
}

static int vm_ckpt_run(struct job *j, void *userdata)
{
	struct vm_job *v = userdata;
	struct qemu_ckpt_opts o = { .progress = on_progress, .ud = v,
				    .leave_stopped = v->leave_stopped };
	_cleanup_(range_set_free) struct range_set before = { 0 };
	_cleanup_(qmp_closep) struct qmp *q = NULL;
	struct tracker_info info;
	struct pipeline *pl;
	struct sink *sink;
	int r;

	v->job = j;
	v->t0 = now_ns();
	r = daemon_job_delay(v->d, j);
	if (r == 0)
		r = daemon_pipeline(v->d, &pl);
	if (r < 0)
		return r;
	/* The guest as it is now: the same QEMU, the same backends. */
	range_set_swap(&before, &v->only);
	r = probe(v, &q);
	if (r < 0)
		return r;
	if (v->pid != v->s->pid || !same_ranges(&before, &v->only)) {
		snprintf(v->why, sizeof(v->why), "QEMU %d's RAM backends changed since it was "
			 "tracked: untrack %d and checkpoint again (a full generation)",
			 (int)v->s->pid, (int)v->s->pid);
		return -ESTALE;
	}
	tracker_get_info(v->s->tracker, &info);
	if (v->full && info.passes > 0 && (r = tracker_invalidate(v->s->tracker)) < 0)
		return r;
	r = v->link ? begin_peer_sink(v, &sink) : begin_sink(v, &sink);
	if (r < 0)
		return r;
	r = qemu_checkpoint_run(v->s->tracker, pl, sink, q, &v->ram, &o, &v->res, v->why,
				sizeof(v->why));
	if (r < 0 && v->link && !strcmp(v->res.step, "store"))
		peer_link_why(v->link, v->why, sizeof(v->why));
	return r;
}

static void vm_ckpt_progress(struct job *j, const struct job_progress *p, void *userdata)
{
	daemon_forward_progress(((struct vm_job *)userdata)->req, p);
}

static void reply(struct vm_job *v)
{
	Wpmig__Response resp = WPMIG__RESPONSE__INIT;
	Wpmig__CheckpointResult cr = WPMIG__CHECKPOINT_RESULT__INIT;
	const struct qemu_ckpt_result *res = &v->res;

	cr.set = v->set;
	cr.generation = res->gen.generation;
	cr.parent = res->gen.parent;
	cr.pages = res->data_pages + res->zero_pages;
	cr.bytes = res->gen.bytes_stored;
	cr.pause_ms = res->pause_ms;
	cr.duration_ms = ns_to_ms(res->duration_ns);
	cr.passes = res->passes;
	cr.data_pages = res->data_pages;
	cr.zero_pages = res->zero_pages;
	cr.raw_bytes = res->data_pages * PAGE_SIZE_4K;
	cr.regions = res->regions;
	cr.final_pages = res->final_pages;
	cr.peer = v->peer ? v->peer : (char *)"";
	cr.qmp = v->qmp;
	cr.qemu_pid = v->pid;
	cr.device_state_bytes = res->device_state_bytes;
	cr.device_state_ms = res->device_state_ms;
	cr.guest_stopped = res->left_stopped;
	resp.result_case = WPMIG__RESPONSE__RESULT_CHECKPOINT;
	resp.checkpoint = &cr;
	request_reply(v->req, &resp);
}

static void vm_ckpt_done(struct job *j, int r, void *userdata)
{
	struct vm_job *v = userdata;
	struct session *s = v->s;
	struct daemon *d = v->d;

	s->job = NULL;
	if (r == 0) {
		free(s->set);
		s->set = strdup(v->set);
		s->generation = v->res.gen.generation;
		free(s->dest);
		s->dest = v->peer ? strdup(v->peer) : NULL;
		session_account_pass(s, v->res.data_pages + v->res.zero_pages, now_ns());
		log_info("QEMU %d: generation %llu of %s: %llu pages, %llu bytes, device state "
			 "%llu bytes, pause %.2f ms", (int)s->pid,
			 (unsigned long long)s->generation, v->set,
			 (unsigned long long)(v->res.data_pages + v->res.zero_pages),
			 (unsigned long long)v->res.gen.bytes_stored,
			 (unsigned long long)v->res.device_state_bytes, v->res.pause_ms);
		reply(v);
	} else {
		if (!v->why[0])
			snprintf(v->why, sizeof(v->why), "%s", r == -ECANCELED ?
				 "cancelled: wpmigd is shutting down" : strerror(-r));
		log_warning("QEMU %d: checkpoint failed%s%s: %s", (int)s->pid,
			    v->res.step[0] ? " at " : "", v->res.step, v->why);
		request_fail(v->req, r, "checkpoint of QEMU %d failed%s%s: %s (%s, nothing was "
			     "stored)", (int)s->pid, v->res.step[0] ? " at " : "", v->res.step, v->why,
			     r == -ECONNRESET || s->exited ? "QEMU is gone" : "the guest runs on");
	}
	session_enter_state(s, s->exited ? SESSION_FAILED : SESSION_TRACKING);
	session_refresh_info(s);
	vm_free(v);
	daemon_session_settle(d, s);
}

static const struct job_ops vm_ckpt_ops = { "checkpoint-vm", vm_ckpt_run, vm_ckpt_done,
					    vm_ckpt_progress };

/* Loop: s tracks the guest's backends; take the generation. */
static void start(struct daemon *d, struct session *s, struct request *req, void *userdata)
{
	struct vm_job *v = userdata;
	int r;

	v->s = s;
	v->req = req;
	v->full = !daemon_session_continues(s, v->set, v->peer);
	v->parent = v->full ? 0 : s->generation;
	if (v->peer) {
		r = daemon_peer_link(d, s, v->peer);
		if (r < 0) {
			request_fail(req, r, "cannot set up the link to %s: %s", v->peer, strerror(-r));
			vm_free(v);
			return;
		}
		v->link = s->peer_link;
	}
	session_enter_state(s, SESSION_CHECKPOINTING);
	r = job_submit(d->jobs, &vm_ckpt_ops, v, &s->job);
	if (r < 0) {
		request_fail(req, r, "cannot start the checkpoint: %s", strerror(-r));
		session_enter_state(s, SESSION_TRACKING);
		vm_free(v);
		return;
	}
	daemon_notify_status(d);
}

/* ---- the probe job: which QEMU, which backends ---- */

static int vm_probe_run(struct job *j, void *userdata)
{
	return probe(userdata, NULL);
}

static void vm_probe_done(struct job *j, int r, void *userdata)
{
	struct vm_job *v = userdata;
	struct daemon *d = v->d;
	struct session *s;

	if (r < 0) {
		request_fail(v->req, r, "checkpoint of the QEMU guest at %s refused: %s", v->qmp,
			     v->why[0] ? v->why : strerror(-r));
		vm_free(v);
		return;
	}
	if (!v->set && asprintf(&v->set, "vm-%d", (int)v->pid) < 0) {
		v->set = NULL;
		request_fail(v->req, -ENOMEM, "out of memory");
		vm_free(v);
		return;
	}
	s = session_find(&d->sessions, v->pid);
	if (!s) {
		if (daemon_session_attach_only(d, v->req, v->pid, &v->only, start, vm_drop, v) < 0)
			vm_free(v);
		return;
	}
	if (!s->qemu_ram.n)
		r = request_fail(v->req, -EEXIST, "QEMU %d is tracked as a process (all its "
				 "memory): untrack %d first", (int)v->pid, (int)v->pid);
	else if (!same_ranges(&s->qemu_ram, &v->only))
		r = request_fail(v->req, -ESTALE, "QEMU %d's RAM backends changed since it was "
				 "tracked: untrack %d and checkpoint again", (int)v->pid, (int)v->pid);
	else if (s->state != SESSION_TRACKING || s->job)
		r = request_fail(v->req, -EBUSY, "QEMU %d is %s; a checkpoint needs it TRACKING",
				 (int)v->pid, session_state_name(s->state));
	if (r < 0) {
		vm_free(v);
		return;
	}
	start(d, s, v->req, v);
}

static const struct job_ops vm_probe_ops = { "probe-vm", vm_probe_run, vm_probe_done, NULL };

void cmd_checkpoint_vm(struct daemon *d, struct request *req, const Wpmig__Request *msg)
{
	const Wpmig__CheckpointRequest *m = msg->checkpoint;
	struct vm_job *v = calloc(1, sizeof(*v));
	struct job *j;
	int r;

	if (!v || !(v->qmp = strdup(m->qmp)) || (m->set[0] && !(v->set = strdup(m->set)))) {
		if (v)
			vm_free(v);
		request_fail(req, -ENOMEM, "out of memory");
		return;
	}
	v->d = d;
	v->req = req;
	v->leave_stopped = m->leave_stopped;
	v->max_bandwidth = m->max_bandwidth ? m->max_bandwidth : d->cfg.max_bandwidth;
	if (m->pid) {
		request_fail(req, -EINVAL, "checkpoint --qmp takes no PID");
		vm_free(v);
		return;
	}
	if (m->peer[0] && !d->peer_key.bytes) {
		request_fail(req, -ENOKEY, "checkpoint --peer needs peer_key_file in the daemon's "
			     "configuration (the peer port authenticates with it)");
		vm_free(v);
		return;
	}
	if (m->peer[0] && !(v->peer = strdup(m->peer))) {
		request_fail(req, -ENOMEM, "out of memory");
		vm_free(v);
		return;
	}
	if (v->set && !store_set_name_valid(v->set)) {
		request_fail(req, -EINVAL, "invalid set name \"%s\": use 1-%d of [A-Za-z0-9._+@:-], "
			     "not starting with '.'", v->set, STORE_SET_NAME_MAX);
		vm_free(v);
		return;
	}
	r = job_submit(d->jobs, &vm_probe_ops, v, &j);
	if (r < 0) {
		request_fail(req, r, "cannot start the checkpoint: %s", strerror(-r));
		vm_free(v);
	}
}

/* ---- restore --qmp SOCK SET/GEN: a generation into a new QEMU ---- */

struct vm_restore {
	struct daemon *d;
	struct request *req;
	char *qmp, *set;
	uint64_t generation;
	bool leave_stopped;
	struct qemu_restore_result res;
	char why[512];
};

static void vm_restore_free(struct vm_restore *v)
{
	free(v->qmp);
	free(v->set);
	free(v);
}

static int vm_restore_run(struct job *j, void *userdata)
{
	struct vm_restore *v = userdata;
	struct store_image *img;
	int r = daemon_job_delay(v->d, j);

	if (r < 0)
		return r;
	pthread_mutex_lock(&v->d->store_lock);
	r = store_image_open(v->d->store, v->set, v->generation, &img);
	pthread_mutex_unlock(&v->d->store_lock);
	if (r < 0) {
		snprintf(v->why, sizeof(v->why), "%s/%llu: %s", v->set,
			 (unsigned long long)v->generation, r == -ENOENT ? "no such image" :
			 r == -EBADMSG ? "damaged" : strerror(-r));
		return r;
	}
	v->generation = store_image_info(img)->generation;
	r = qemu_restore_run(img, v->qmp, v->leave_stopped, &v->res, v->why, sizeof(v->why));
	store_image_close(img);
	return r;
}

static void vm_restore_done(struct job *j, int r, void *userdata)
{
	struct vm_restore *v = userdata;
	Wpmig__Response resp = WPMIG__RESPONSE__INIT;
	Wpmig__RestoreResult rr = WPMIG__RESTORE_RESULT__INIT;

	if (r < 0) {
		if (!v->why[0])
			snprintf(v->why, sizeof(v->why), "%s", strerror(-r));
		log_warning("restore of %s/%llu into the QEMU at %s failed%s%s: %s", v->set,
			    (unsigned long long)v->generation, v->qmp, v->res.step[0] ? " at " : "",
			    v->res.step, v->why);
		request_fail(v->req, r, "restore of %s/%llu into the QEMU at %s failed%s%s: %s%s",
			     v->set, (unsigned long long)v->generation, v->qmp,
			     v->res.step[0] ? " at " : "", v->res.step, v->why,
			     v->res.pages ? " (that QEMU was not resumed)" : "");
		vm_restore_free(v);
		return;
	}
	log_info("QEMU %d: restored %s/%llu: %llu pages written, device state %llu bytes",
		 v->res.pid, v->set, (unsigned long long)v->generation,
		 (unsigned long long)v->res.pages, (unsigned long long)v->res.device_state_bytes);
	rr.set = v->set;
	rr.generation = v->generation;
	rr.pages = v->res.pages;
	rr.bytes = v->res.bytes;
	rr.duration_ms = v->res.duration_ms;
	rr.write_ms = v->res.write_ms;
	rr.qmp = v->qmp;
	rr.qemu_pid = v->res.pid;
	rr.device_state_bytes = v->res.device_state_bytes;
	rr.pages_zero = v->res.zero_pages;
	rr.guest_stopped = v->leave_stopped;
	rr.warning = (char *)"";
	resp.result_case = WPMIG__RESPONSE__RESULT_RESTORE;
	resp.restore = &rr;
	request_reply(v->req, &resp);
	vm_restore_free(v);
}

static const struct job_ops vm_restore_ops = { "restore-vm", vm_restore_run, vm_restore_done,
					       NULL };

void cmd_restore_vm(struct daemon *d, struct request *req, const Wpmig__Request *msg)
{
	const Wpmig__RestoreRequest *m = msg->restore;
	struct vm_restore *v = calloc(1, sizeof(*v));
	struct job *j;
	int r;

	if (!v || !(v->qmp = strdup(m->qmp)) || !(v->set = strdup(m->set))) {
		if (v)
			vm_restore_free(v);
		request_fail(req, -ENOMEM, "out of memory");
		return;
	}
	v->d = d;
	v->req = req;
	v->generation = m->generation;
	v->leave_stopped = m->leave_stopped;
	if (m->pid || m->memory_only || !store_set_name_valid(v->set)) {
		request_fail(req, -EINVAL, "restore --qmp SOCK SET/GEN: no PID, no --memory-only, "
			     "a valid set name");
		vm_restore_free(v);
		return;
	}
	r = job_submit(d->jobs, &vm_restore_ops, v, &j);
	if (r < 0) {
		request_fail(req, r, "cannot start the restore: %s", strerror(-r));
		vm_restore_free(v);
	}
}
