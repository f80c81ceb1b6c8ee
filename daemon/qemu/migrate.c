// SPDX-License-Identifier: GPL-2.0-only
/* The source of a QEMU migration (migrate.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/log.h"
#include "basic/util.h"
#include "peer/cache.h"
#include "peer/sink.h"
#include "qemu/backend.h"
#include "qemu/migrate.h"
#include "qemu/qmp.h"
#include "track/tracker.h"

#define QMP_TIMEOUT_MS 10000
#define MIGRATE_TIMEOUT_MS 60000
/* Stop, QEMU's device state (~10 ms here), resume: added to a final pass. */
#define SWITCH_OVERHEAD_MS 15.0

/* A step of the switchover, on the source's realtime clock (QEMU's too). */
struct mstep {
	const char *name;
	int64_t start_us, end_us;
};

struct mig {
	const struct migrate_opts *o;
	struct migrate_result *res;
	struct peer_link *l;
	struct pipeline *pl;
	struct qmp *q;
	struct qemu_ram ram;
	struct tracker *t;
	Wpmig__Peer__MigrateTarget target;
	Wpmig__Peer__MigrateBackend backends[QEMU_MAX_BACKENDS], *bptr[QEMU_MAX_BACKENDS];
	char set[48];
	bool caps_set, stopped, migrate_sent, handed_over;
	bool old_caps[3];
	uint64_t last_scan_ns, tracked_pages;
	int64_t stop_us;           /* the source's STOP event (QEMU's clock) */
	uint64_t migrate_ns;       /* migrate sent (monotonic) */
	int64_t rt_off_us;         /* realtime minus monotonic */
	struct mstep steps[MIGRATE_MAX_STEPS];
	size_t n_steps;
	double best_rate, min_pass_ms;
	char *why;
	size_t why_len;
};

/* pause-before-switchover: QEMU stops the guest and sets its stream up,
 * then waits for migrate-continue while the final pass runs. */
static const char *const cap_names[3] = { "x-ignore-shared", "events", "pause-before-switchover" };

static int64_t rt_us(const struct mig *m, uint64_t mono_ns)
{
	return (int64_t)(mono_ns / 1000) + m->rt_off_us;
}

static void step(struct mig *m, const char *name, int64_t start_us, int64_t end_us)
{
	if (m->n_steps < MIGRATE_MAX_STEPS && start_us && end_us)
		m->steps[m->n_steps++] = (struct mstep){ name, start_us, end_us };
}

/* Step from and to monotonic times of this daemon. */
static void step_ns(struct mig *m, const char *name, uint64_t start_ns, uint64_t end_ns)
{
	step(m, name, rt_us(m, start_ns), rt_us(m, end_ns));
}

/* The steps into the result, relative to the STOP event. */
static void put_steps(struct mig *m)
{
	for (size_t i = 0; i < m->n_steps; i++) {
		struct migrate_step *o = &m->res->steps[i];

		snprintf(o->name, sizeof(o->name), "%s", m->steps[i].name);
		o->at_ms = (double)(m->steps[i].end_us - m->stop_us) / 1000.0;
		o->ms = (double)(m->steps[i].end_us - m->steps[i].start_us) / 1000.0;
	}
	m->res->n_steps = (uint32_t)m->n_steps;
}

static int fail(struct mig *m, const char *step, int r, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(struct mig *m, const char *step, int r, const char *fmt, ...)
{
	va_list ap;

	snprintf(m->res->step, sizeof(m->res->step), "%s", step);
	va_start(ap, fmt);
	vsnprintf(m->why, m->why_len, fmt, ap);
	va_end(ap);
	return r < 0 ? r : -EIO;
}

/* The step failed and why already says why. */
static int fail_step(struct mig *m, const char *step, int r)
{
	snprintf(m->res->step, sizeof(m->res->step), "%s", step);
	if (!m->why[0])
		snprintf(m->why, m->why_len, "%s", strerror(-r));
	return r < 0 ? r : -EIO;
}

static int set_caps(struct mig *m, const bool *on, struct qmp_error *err)
{
	json_object *caps = json_object_new_array();

	for (size_t i = 0; i < ARRAY_SIZE(cap_names); i++) {
		json_object *c = json_object_new_object();

		json_object_object_add(c, "capability", json_object_new_string(cap_names[i]));
		json_object_object_add(c, "state", json_object_new_boolean(on[i]));
		json_object_array_add(caps, c);
	}
	return qmp_executev(m->q, "migrate-set-capabilities", QMP_TIMEOUT_MS, NULL, err,
			    "capabilities", caps, NULL);
}

/* Remember the capabilities as they are, then switch ours on. */
static int prepare_caps(struct mig *m)
{
	static const bool on[3] = { true, true, true };
	struct qmp_error err = { "", "" };
	json_object *list = NULL;
	int r = qmp_execute(m->q, "query-migrate-capabilities", NULL, QMP_TIMEOUT_MS, &list, &err);

	for (size_t i = 0; r == 0 && i < qmp_array_length(list); i++) {
		json_object *c = json_object_array_get_idx(list, i), *st;
		const char *name = qmp_str(c, "capability");

		for (size_t k = 0; name && k < ARRAY_SIZE(cap_names); k++)
			if (!strcmp(name, cap_names[k]) && json_object_object_get_ex(c, "state", &st))
				m->old_caps[k] = json_object_get_boolean(st);
	}
	json_object_put(list);
	if (r == 0 && (r = set_caps(m, on, &err)) == 0)
		m->caps_set = true;
	if (r < 0)
		return fail(m, "source-qmp", r, "source QEMU refused migrate-set-capabilities: %s",
			    err.desc);
	return 0;
}

/* The source QEMU, its RAM, and the migration target for the peer. */
static int discover(struct mig *m)
{
	struct qmp_error err = { "", "" };
	int r = qmp_open(m->o->qmp, QMP_TIMEOUT_MS, &m->q);

	if (r < 0)
		return fail(m, "source-qmp", r, "cannot connect to the source QMP socket %s: %s",
			    m->o->qmp, strerror(-r));
	m->res->pid = qmp_pid(m->q);
	r = qemu_ram_discover(m->q, QMP_TIMEOUT_MS, &m->ram, &err);
	if (r < 0)
		return fail(m, "source-qmp", r, "source QEMU: %s", err.class[0] ? err.desc : strerror(-r));
	r = qemu_ram_refusal(m->q, QMP_TIMEOUT_MS, &m->ram, true, m->why, m->why_len);
	if (r < 0)
		return fail_step(m, "refused", r);
	wpmig__peer__migrate_target__init(&m->target);
	m->target.qmp = (char *)m->o->dest_qmp;
	m->target.uri = (char *)m->o->dest_uri;
	for (size_t i = 0; i < m->ram.n; i++) {
		const struct qemu_backend *b = &m->ram.b[i];

		wpmig__peer__migrate_backend__init(&m->backends[i]);
		m->backends[i].id = (char *)b->id;
		m->backends[i].start = b->start;
		m->backends[i].size = b->size;
		m->bptr[i] = &m->backends[i];
		m->res->ram_bytes += b->size;
	}
	m->target.backends = m->bptr;
	m->target.n_backends = m->ram.n;
	m->tracked_pages = m->res->ram_bytes / PAGE_SIZE_4K;
	snprintf(m->set, sizeof(m->set), "migrate-%d-%016" PRIx64, (int)m->res->pid,
		 peer_link_session(m->l));
	return prepare_caps(m);
}

static int attach(struct mig *m)
{
	struct range_set only = { 0 };
	struct tracker_opts to = { .only = &only };
	int r = 0;

	for (size_t i = 0; r == 0 && i < m->ram.n; i++)
		r = range_set_add(&only, m->ram.b[i].start, m->ram.b[i].end);
	if (r == 0)
		r = tracker_attach(m->res->pid, &to, &m->t, m->why, m->why_len);
	range_set_free(&only);
	if (r < 0) {
		char why[512];

		snprintf(why, sizeof(why), "%s", m->why);
		return fail(m, "track", r, "cannot track QEMU %d: %s", (int)m->res->pid, why);
	}
	return 0;
}

/* The source's MIGRATION events until one of the given states (0), or a
 * failure. */
static int wait_source_state(struct mig *m, const char *want, const char *want2,
			     int timeout_ms, struct qmp_event **ret)
{
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	for (;;) {
		_cleanup_(qmp_event_freep) struct qmp_event *e = NULL;
		uint64_t now = now_ns();
		int r = now < deadline ? qmp_wait_event(m->q, "MIGRATION",
							(int)((deadline - now) / 1000000) + 1, &e)
				       : -ETIMEDOUT;
		const char *status = r == 0 ? qmp_str(e->data, "status") : NULL;

		if (r < 0)
			return fail(m, "device-state", r, "source QEMU's migration to %s: %s",
				    m->o->dest_uri, r == -ETIMEDOUT ? "timed out" : strerror(-r));
		if (status && (!strcmp(status, want) || (want2 && !strcmp(status, want2)))) {
			*ret = e;
			e = NULL;
			return 0;
		}
		if (status && (!strcmp(status, "failed") || !strcmp(status, "cancelled")))
			return fail(m, "device-state", -EIO, "source QEMU's migration to %s %s",
				    m->o->dest_uri, status);
	}
}

/*
 * Hand over to QEMU's own migration: it connects to the destination, sends
 * what is not in a shared backend (ROMs), stops the guest (STOP) and waits
 * in pre-switchover for migrate-continue.  Everything but the wait happens
 * before the guest stops, so the pause does not hold it.
 */
static int stop_source(struct mig *m)
{
	_cleanup_(qmp_event_freep) struct qmp_event *e = NULL, *stop = NULL;
	struct qmp_error err = { "", "" };
	uint64_t t0 = now_ns();
	int r;

	qmp_drop_events(m->q);
	m->migrate_sent = true;
	m->migrate_ns = t0;
	r = qmp_executev(m->q, "migrate", QMP_TIMEOUT_MS, NULL, &err, "uri",
			 json_object_new_string(m->o->dest_uri), NULL);
	if (r < 0)
		return fail(m, "device-state", r, "source QEMU refused migrate to %s: %s",
			    m->o->dest_uri, err.class[0] ? err.desc : strerror(-r));
	step_ns(m, "migrate", t0, now_ns());
	m->stopped = true; /* by QEMU, from here on (a failure restarts it) */
	r = wait_source_state(m, "pre-switchover", NULL, MIGRATE_TIMEOUT_MS, &e);
	if (r < 0)
		return r;
	/* Already read with the state change; absent when the guest was
	 * paused before (then the pause starts here). */
	m->stop_us = qmp_wait_event(m->q, "STOP", 0, &stop) == 0 ? stop->qemu_us : e->qemu_us;
	step(m, "stop", rt_us(m, t0), m->stop_us);
	step(m, "stopped", m->stop_us, rt_us(m, e->recv_ns));
	return 0;
}

static void account_pass(struct mig *m, struct migrate_pass *row, uint64_t found,
			 uint64_t data_pages, uint64_t scan_ns, uint64_t t0, uint64_t b0)
{
	uint64_t ns = now_ns() - t0;
	double rate = ns ? (double)data_pages * PAGE_SIZE_4K * 1e9 / (double)ns : 0;

	row->pass = m->res->n_passes + 1;
	row->pages = found;
	row->bytes = peer_link_bytes_sent(m->l) - b0;
	row->ns = ns;
	if (m->last_scan_ns && scan_ns > m->last_scan_ns)
		row->dirty_rate = (double)found * 1e9 / (double)(scan_ns - m->last_scan_ns);
	m->last_scan_ns = scan_ns;
	if (rate > m->best_rate)
		m->best_rate = rate;
	row->link_rate = m->best_rate;
	/* The final pass holds what the guest writes while this one ran. */
	double next = MIN(row->dirty_rate * (double)ns / 1e9, (double)m->tracked_pages);
	row->expect_ms = SWITCH_OVERHEAD_MS +
			 (m->best_rate > 0 ? next * PAGE_SIZE_4K / m->best_rate * 1000.0 : 0);
	m->res->pages_sent += data_pages;
	m->res->bytes_sent += row->bytes;
	m->res->passes[m->res->n_passes++] = *row;
}

/* One generation: scan, read, send, and the destination's commit.  The
 * final one stops the guest first (after opening the generation, so the
 * pause does not hold that round trip). */
static int one_pass(struct mig *m, bool final)
{
	struct migrate_pass row = { .final = final };
	struct pipeline_stats st = { 0 };
	struct gen_summary sum;
	struct pass p = { 0 };
	struct sink *sink;
	uint64_t gen, t0 = now_ns(), b0 = peer_link_bytes_sent(m->l), scan_ns;
	int r;

	if (m->res->n_passes == MIGRATE_MAX_PASSES)
		return fail(m, "pre-copy", -E2BIG, "more than %d passes", MIGRATE_MAX_PASSES);
	r = peer_sink_begin_migrate(m->l, m->set, m->res->pid, m->res->n_passes == 0,
				    m->o->zstd_level, &m->target, &sink, &gen, m->why, m->why_len);
	if (r < 0)
		return fail_step(m, final ? "final-pass" : "pre-copy", r);
	if (final)
		step_ns(m, "open", t0, now_ns());
	/* Nothing follows the final pass: keeping copies of its pages for
	 * later deltas would only fault fresh cache memory on both ends. */
	if (final && peer_link_cache(m->l))
		pcache_bases_only(peer_link_cache(m->l), true);
	if (final && (r = stop_source(m)) < 0) {
		sink->ops->abort(sink);
		return r;
	}
	scan_ns = now_ns();
	r = tracker_pass(m->t, final ? PASS_FINAL : 0, &p);
	uint64_t t_scan = now_ns();
	if (r == 0)
		r = pipeline_run(m->pl, m->t, &p, 1, sink, NULL, NULL, &st);
	uint64_t t_run = now_ns();
	if (r == 0)
		r = sink->ops->commit(sink, p.regions, p.n_regions, &sum);
	if (final) {
		step_ns(m, "scan", scan_ns, t_scan);
		step_ns(m, "send", t_scan, t_run);
		step_ns(m, "commit", t_run, now_ns());
	}
	if (final && peer_link_cache(m->l))
		pcache_bases_only(peer_link_cache(m->l), false);
	log_debug("migration pass %u: open+stop %.1f ms, scan %.1f ms, send %.1f ms, commit %.1f ms",
		  m->res->n_passes + 1, ns_to_ms(scan_ns - t0), ns_to_ms(t_scan - scan_ns),
		  ns_to_ms(t_run - t_scan), ns_to_ms(now_ns() - t_run));
	if (r < 0) {
		char why[512];

		sink->ops->abort(sink);
		peer_link_why(m->l, why, sizeof(why));
		pass_free(&p);
		return fail(m, final ? "final-pass" : "pre-copy", r, "pass %u: %s",
			    m->res->n_passes + 1, why[0] ? why : strerror(-r));
	}
	sink->ops->close(sink);
	account_pass(m, &row, (range_set_bytes(&p.data) + range_set_bytes(&p.zero)) / PAGE_SIZE_4K,
		     sum.data_pages, scan_ns, t0, b0);
	pass_free(&p);
	if (m->o->progress)
		m->o->progress(m->o->ud, &row);
	return 0;
}

/* Pre-copy passes until the rest fits the downtime (1), or not (0). */
static int precopy(struct mig *m)
{
	uint32_t max = m->o->max_iterations ? m->o->max_iterations : 30;
	double limit = m->o->downtime_ms ? m->o->downtime_ms : 300;

	for (;;) {
		int r = one_pass(m, false);
		const struct migrate_pass *last = &m->res->passes[m->res->n_passes - 1];

		if (r < 0)
			return r;
		if (m->o->cancelled && m->o->cancelled(m->o->ud))
			return fail(m, "pre-copy", -ECANCELED, "cancelled");
		/* Within the limit: switch over, unless passes still shrink
		 * (another one costs little and makes the pause shorter). */
		if (m->res->n_passes >= 2 && last->expect_ms <= limit &&
		    (last->expect_ms <= SWITCH_OVERHEAD_MS + 5 ||
		     last->pages * 4 > (last - 1)->pages * 3))
			return 1;
		if (m->res->n_passes >= max)
			return 0;
	}
}

static int64_t realtime_us_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int switchover(struct mig *m)
{
	_cleanup_(qmp_event_freep) struct qmp_event *done = NULL;
	struct qmp_error err = { "", "" };
	int64_t resumed_us = 0, incoming_us = 0;
	uint64_t t0;
	int r;

	m->rt_off_us = realtime_us_now() - (int64_t)(now_ns() / 1000);
	r = one_pass(m, true);
	if (r < 0)
		return r;
	/* Every page is in the destination's backends: the device state may
	 * go, and the destination guest may run once it has arrived. */
	m->handed_over = true;
	t0 = now_ns();
	r = qmp_executev(m->q, "migrate-continue", QMP_TIMEOUT_MS, NULL, &err, "state",
			 json_object_new_string("pre-switchover"), NULL);
	if (r < 0) {
		if (r == -EREMOTEIO)
			m->handed_over = false; /* refused: nothing moved */
		return fail(m, "device-state", r, "source QEMU refused migrate-continue: %s",
			    err.class[0] ? err.desc : strerror(-r));
	}
	step_ns(m, "continue", t0, now_ns());
	/* The destination resumes only once its own incoming migration has
	 * completed, which needs every byte the source sends: no need to wait
	 * for the source's completion first. */
	r = peer_migrate_finish(m->l, m->set, &m->target, &resumed_us, &incoming_us, m->why,
				m->why_len);
	if (r < 0) {
		char why[512];

		snprintf(why, sizeof(why), "%s", m->why[0] ? m->why : strerror(-r));
		return fail(m, "destination-resume", r, "%s", why);
	}
	uint64_t answered = now_ns();

	m->res->downtime_local_ms = ns_to_ms(answered - m->migrate_ns);
	step(m, "device-state", rt_us(m, t0), incoming_us);
	step(m, "resume", incoming_us, resumed_us);
	step(m, "answer", resumed_us, rt_us(m, answered));
	r = wait_source_state(m, "completed", NULL, MIGRATE_TIMEOUT_MS, &done);
	if (r < 0)
		log_warning("migration: the destination runs, but the source says: %s", m->why);
	m->why[0] = '\0';
	m->res->step[0] = '\0';
	m->res->downtime_ms = m->res->downtime_local_ms;
	/* QEMU's own timestamps, source STOP to destination RESUME, when they
	 * are consistent with what we saw (clocks of two hosts may not be). */
	if (resumed_us > m->stop_us && m->stop_us > 0 &&
	    (double)(resumed_us - m->stop_us) / 1000.0 <= m->res->downtime_local_ms)
		m->res->downtime_ms = (double)(resumed_us - m->stop_us) / 1000.0;
	put_steps(m);
	return 0;
}

/* After a failure: the source guest runs on as before, unless its device
 * state may already run on the destination. */
static void recover(struct mig *m, int r)
{
	struct qmp_error err = { "", "" };

	if (m->stopped && !m->handed_over) {
		/* A migration still running would stop the guest again when it
		 * completes: cancel it first (an error when none runs). */
		if (m->migrate_sent &&
		    qmp_execute(m->q, "migrate_cancel", NULL, QMP_TIMEOUT_MS, NULL, NULL) == 0) {
			_cleanup_(qmp_event_freep) struct qmp_event *e = NULL;
			char why[512], st[32];

			/* Let it end (it may restart the guest itself) before cont. */
			snprintf(why, sizeof(why), "%s", m->why);
			snprintf(st, sizeof(st), "%s", m->res->step);
			wait_source_state(m, "cancelled", "completed", QMP_TIMEOUT_MS, &e);
			snprintf(m->why, m->why_len, "%s", why);
			snprintf(m->res->step, sizeof(m->res->step), "%s", st);
		}
		if (qmp_execute(m->q, "cont", NULL, QMP_TIMEOUT_MS, NULL, &err) < 0)
			log_error("migration: cannot resume the source guest: %s", err.desc);
		else
			m->stopped = false;
	}
	if (m->stopped) {
		size_t n = strlen(m->why);

		snprintf(m->why + n, m->why_len - n, "; the destination may have resumed the "
			 "guest, so the source is left paused: check the destination");
	}
	if (m->caps_set && !m->handed_over)
		set_caps(m, m->old_caps, &err);
}

int migrate_run(struct peer_link *l, struct pipeline *pl, const struct migrate_opts *o,
		struct migrate_result *res, char *why, size_t why_len)
{
	struct mig m = { .o = o, .res = res, .l = l, .pl = pl, .why = why, .why_len = why_len };
	uint64_t t0 = now_ns();
	int r;

	*res = (struct migrate_result){ 0 };
	why[0] = '\0';
	peer_link_set_bandwidth(l, o->max_bandwidth);
	r = discover(&m);
	if (r == 0)
		r = attach(&m);
	if (r == 0)
		r = precopy(&m);
	if (r == 0 && !o->force_switchover)
		r = fail(&m, "pre-copy", -ETIMEDOUT, "did not converge in %u passes: the guest "
			 "wrote %.0f pages/s, the link moved %.1f MB/s, the last pass left %.0f ms "
			 "for the pause (limit %u ms); raise --downtime-ms, --max-bandwidth or "
			 "--max-iterations, or use --force-switchover", res->n_passes,
			 res->passes[res->n_passes - 1].dirty_rate,
			 res->passes[res->n_passes - 1].link_rate / 1e6,
			 res->passes[res->n_passes - 1].expect_ms, o->downtime_ms ? o->downtime_ms : 300);
	res->converged = r == 1;
	if (r >= 0)
		r = switchover(&m);
	if (r < 0 && m.q)
		recover(&m, r);
	if (m.t)
		tracker_detach(m.t);
	qmp_close(m.q);
	res->iterations = res->n_passes;
	res->total_ms = ns_to_ms(now_ns() - t0);
	return r;
}
