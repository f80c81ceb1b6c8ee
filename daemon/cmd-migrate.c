// SPDX-License-Identifier: GPL-2.0-only
/*
 * migrate --qmp SRC_QMP --peer ADDR --dest-qmp DST_QMP --dest-uri URI: a
 * QEMU guest to the QEMU behind DST_QMP on the peer daemon (qemu/migrate.c
 * does the work on a job thread; this file is its control-socket side and
 * the list status shows).  Also status's view of migrations either way.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"
#include "basic/util.h"
#include "peer/link.h"
#include "qemu/migrate.h"
#include "qemu/target.h"
#include "verbs.h"

#define PEER_WINDOW (16u << 20)

struct migration {
	struct daemon *d;
	struct request *req;
	struct job *job;
	struct peer_link *link;
	char *qmp, *peer, *dest_qmp, *dest_uri;
	struct migrate_opts o;
	struct migrate_result res;
	char why[768];
	uint64_t t0;
	/* for status, updated on the loop from progress */
	uint32_t pass;
	uint64_t pages, bytes;
	char state[32];
	struct migration *next;
};

static void mig_free(struct migration *m)
{
	struct migration **pp;

	for (pp = &m->d->migrations; *pp && *pp != m; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = m->next;
	peer_link_free(m->link);
	free(m->qmp);
	free(m->peer);
	free(m->dest_qmp);
	free(m->dest_uri);
	free(m);
}

/* Job thread: a pass is done. */
static void on_pass(void *ud, const struct migrate_pass *p)
{
	struct migration *m = ud;
	struct job_progress jp = { .done = p->pages, .total = 0, .bytes = m->res.bytes_sent,
				   .rate = p->link_rate, .dirty_rate = p->dirty_rate,
				   .expect_ms = p->expect_ms > 0 ? p->expect_ms : 0.001 };

	snprintf(jp.phase, sizeof(jp.phase), "%s %u", p->final ? "final pass" : "pass", p->pass);
	job_post_progress(m->job, &jp);
}

static bool on_cancelled(void *ud)
{
	return job_cancelled(((struct migration *)ud)->job);
}

static int mig_run(struct job *j, void *userdata)
{
	struct migration *m = userdata;
	struct pipeline *pl;
	int r;

	m->job = j;
	r = daemon_pipeline(m->d, &pl);
	if (r < 0)
		return r;
	return migrate_run(m->link, pl, &m->o, &m->res, m->why, sizeof(m->why));
}

static void mig_progress(struct job *j, const struct job_progress *p, void *userdata)
{
	struct migration *m = userdata;

	m->pass = (uint32_t)strtoul(strchr(p->phase, ' ') ? strrchr(p->phase, ' ') + 1 : "0",
				    NULL, 10);
	m->pages += p->done;
	m->bytes = p->bytes;
	snprintf(m->state, sizeof(m->state), "%s", p->phase);
	daemon_forward_progress(m->req, p);
}

static void reply(struct migration *m)
{
	Wpmig__Response resp = WPMIG__RESPONSE__INIT;
	Wpmig__MigrateResult mr = WPMIG__MIGRATE_RESULT__INIT;
	Wpmig__MigratePass rows[MIGRATE_MAX_PASSES], *ptrs[MIGRATE_MAX_PASSES];
	Wpmig__MigrateStep steps[MIGRATE_MAX_STEPS], *sptrs[MIGRATE_MAX_STEPS];
	const struct migrate_result *r = &m->res;

	for (uint32_t i = 0; i < r->n_passes; i++) {
		const struct migrate_pass *p = &r->passes[i];

		wpmig__migrate_pass__init(&rows[i]);
		rows[i].pass = p->pass;
		rows[i].final = p->final;
		rows[i].pages = p->pages;
		rows[i].bytes = p->bytes;
		rows[i].ms = ns_to_ms(p->ns);
		rows[i].dirty_rate = p->dirty_rate;
		rows[i].link_rate = p->link_rate;
		rows[i].expect_ms = p->expect_ms;
		ptrs[i] = &rows[i];
	}
	mr.downtime_ms = r->downtime_ms;
	mr.downtime_local_ms = r->downtime_local_ms;
	mr.total_ms = r->total_ms;
	mr.bytes_sent = r->bytes_sent;
	mr.pages_sent = r->pages_sent;
	mr.iterations = r->iterations;
	mr.ram_bytes = r->ram_bytes;
	mr.converged = r->converged;
	mr.pid = r->pid;
	mr.n_passes = r->n_passes;
	mr.passes = ptrs;
	for (uint32_t i = 0; i < r->n_steps; i++) {
		wpmig__migrate_step__init(&steps[i]);
		steps[i].step = (char *)r->steps[i].name;
		steps[i].at_ms = r->steps[i].at_ms;
		steps[i].ms = r->steps[i].ms;
		sptrs[i] = &steps[i];
	}
	mr.n_switchover = r->n_steps;
	mr.switchover = sptrs;
	resp.result_case = WPMIG__RESPONSE__RESULT_MIGRATE;
	resp.migrate = &mr;
	request_reply(m->req, &resp);
}

static void mig_done(struct job *j, int r, void *userdata)
{
	struct migration *m = userdata;
	struct daemon *d = m->d;

	if (r == 0) {
		log_info("migrated QEMU %d to %s: downtime %.1f ms, %u passes, %llu bytes",
			 (int)m->res.pid, m->peer, m->res.downtime_ms, m->res.iterations,
			 (unsigned long long)m->res.bytes_sent);
		reply(m);
	} else {
		if (!m->why[0])
			snprintf(m->why, sizeof(m->why), "%s", r == -ECANCELED ?
				 "cancelled: wpmigd is shutting down" : strerror(-r));
		log_warning("migration of %s failed at %s: %s", m->qmp,
			    m->res.step[0] ? m->res.step : "start", m->why);
		request_fail(m->req, r, "migration failed at step %s: %s",
			     m->res.step[0] ? m->res.step : "start", m->why);
	}
	mig_free(m);
	daemon_maybe_finish(d);
}

static const struct job_ops mig_ops = { "migrate", mig_run, mig_done, mig_progress };

static int dup_args(struct migration *m, const Wpmig__MigrateRequest *r)
{
	m->qmp = strdup(r->qmp ? r->qmp : "");
	m->peer = strdup(r->peer ? r->peer : "");
	m->dest_qmp = strdup(r->dest_qmp ? r->dest_qmp : "");
	m->dest_uri = strdup(r->dest_uri ? r->dest_uri : "");
	return m->qmp && m->peer && m->dest_qmp && m->dest_uri ? 0 : -ENOMEM;
}

void cmd_migrate(struct daemon *d, struct request *req, const Wpmig__Request *msg)
{
	const Wpmig__MigrateRequest *r = msg->migrate;
	struct migration *m;
	int e;

	if (!r->qmp || r->qmp[0] != '/' || !r->dest_qmp || r->dest_qmp[0] != '/' || !r->peer ||
	    !r->peer[0] || !r->dest_uri || !r->dest_uri[0]) {
		request_fail(req, -EINVAL, "migrate needs --qmp, --peer, --dest-qmp and --dest-uri");
		return;
	}
	if (check_addr_syntax(r->peer) < 0) {
		request_fail(req, -EINVAL, "invalid peer address '%s' (HOST:PORT or unix:PATH)",
			     r->peer);
		return;
	}
	/* the final pass needs a row of the result too */
	if (r->max_iterations >= MIGRATE_MAX_PASSES) {
		request_fail(req, -EINVAL, "max_iterations %u: at most %d pre-copy passes",
			     r->max_iterations, MIGRATE_MAX_PASSES - 1);
		return;
	}
	if (!d->peer_key.bytes) {
		request_fail(req, -ENOKEY, "migrate needs peer_key_file in the daemon's configuration "
			     "(the peer port authenticates with it)");
		return;
	}
	m = calloc(1, sizeof(*m));
	if (!m || dup_args(m, r) < 0) {
		if (m)
			m->d = d, mig_free(m);
		request_fail(req, -ENOMEM, "out of memory");
		return;
	}
	m->d = d;
	m->req = req;
	m->t0 = now_ns();
	snprintf(m->state, sizeof(m->state), "starting");
	m->o = (struct migrate_opts){
		.qmp = m->qmp, .dest_qmp = m->dest_qmp, .dest_uri = m->dest_uri,
		.downtime_ms = r->downtime_ms, .max_iterations = r->max_iterations,
		.force_switchover = r->force_switchover, .zstd_level = d->cfg.peer_zstd_level,
		.max_bandwidth = r->max_bandwidth ? r->max_bandwidth : d->cfg.max_bandwidth,
		.progress = on_pass, .cancelled = on_cancelled, .ud = m,
	};
	struct peer_link_opts lo = {
		.addr = m->peer, .key = &d->peer_key,
		.cache_slots = (uint32_t)MIN(d->cfg.peer_cache / PAGE_SIZE_4K, 1u << 20),
		.window = PEER_WINDOW, .timeout_ms = d->cfg.peer_timeout * 1000,
	};
	m->next = d->migrations;
	d->migrations = m;
	e = peer_link_new(d->base, &lo, &m->link);
	if (e == 0)
		e = job_submit(d->jobs, &mig_ops, m, &m->job);
	if (e < 0) {
		request_fail(req, e, "cannot start the migration: %s", strerror(-e));
		mig_free(m);
		return;
	}
	daemon_notify_status(d);
}

/* status: migrations sent from here and received here. */
size_t daemon_migrations_info(struct daemon *d, struct migrations_buf *b)
{
	Wpmig__MigrationInfo *info = b->info;
	struct qemu_target_info *t = b->targets;
	size_t max = ARRAY_SIZE(b->info), n = 0;
	size_t nt = d->targets ? qemu_targets_list(d->targets, t, ARRAY_SIZE(b->targets)) : 0;

	for (struct migration *m = d->migrations; m && n < max; m = m->next, n++) {
		wpmig__migration_info__init(&info[n]);
		info[n].role = (char *)"source";
		info[n].qmp = m->qmp;
		info[n].peer = m->peer;
		info[n].state = m->state;
		info[n].pass = m->pass;
		info[n].pages = m->pages;
		info[n].bytes = m->bytes;
		info[n].elapsed_ms = (now_ns() - m->t0) / 1000000;
	}
	for (size_t i = 0; i < nt && n < max; i++, n++) {
		wpmig__migration_info__init(&info[n]);
		info[n].role = (char *)"destination";
		info[n].qmp = t[i].qmp;
		info[n].peer = (char *)"";
		info[n].state = t[i].state;
		info[n].pass = (uint32_t)t[i].generation;
		info[n].pages = t[i].pages_written + t[i].pages_zeroed;
		info[n].elapsed_ms = t[i].age_ms;
	}
	for (size_t i = 0; i < n; i++)
		b->ptrs[i] = &info[i];
	return n;
}
