// SPDX-License-Identifier: GPL-2.0-only
/* migrate */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "basic/util.h"
#include "ctl.h"

enum { MG_QMP, MG_PEER, MG_DEST_QMP, MG_DEST_URI, MG_DOWNTIME, MG_BANDWIDTH, MG_MAX_ITER,
       MG_FORCE };

static const struct option migrate_opts[] = {
	{ "qmp", required_argument, NULL, MG_QMP },
	{ "peer", required_argument, NULL, MG_PEER },
	{ "dest-qmp", required_argument, NULL, MG_DEST_QMP },
	{ "dest-uri", required_argument, NULL, MG_DEST_URI },
	{ "downtime-ms", required_argument, NULL, MG_DOWNTIME },
	{ "max-bandwidth", required_argument, NULL, MG_BANDWIDTH },
	{ "max-iterations", required_argument, NULL, MG_MAX_ITER },
	{ "force-switchover", no_argument, NULL, MG_FORCE },
	{ 0 },
};

static int show_migrate(struct ctl *c, const Wpmig__Response *resp)
{
	const Wpmig__MigrateResult *r = resp->migrate;
	char b[32];

	if (c->json) {
		json_print(pb_to_json(&r->base));
		return EXIT_OK;
	}
	printf("migrated QEMU %d: downtime %.1f ms, total %.1f ms, %s sent (%" PRIu64 " pages) in "
	       "%u iterations%s\n", r->pid, r->downtime_ms, r->total_ms,
	       fmt_bytes(r->bytes_sent, b, sizeof(b)), r->pages_sent, r->iterations,
	       r->converged ? "" : " (forced switchover)");
	/* The steps inside the pause (those before the stop end at <= 0). */
	for (size_t i = 0, n = 0; i < r->n_switchover; i++) {
		const Wpmig__MigrateStep *st = r->switchover[i];

		if (st->at_ms > 0)
			printf("%s%s %.1f ms", n++ ? ", " : "  pause: ", st->step, st->ms);
		if (n && i + 1 == r->n_switchover)
			printf("\n");
	}
	return EXIT_OK;
}

/* A QMP endpoint: a unix socket path (absolute), optionally "unix:PATH". */
static const char *qmp_path(const char *s)
{
	if (!strncmp(s, "unix:", 5))
		s += 5;
	return s[0] == '/' ? s : NULL;
}

/* QEMU's -incoming URI forms wpmig can hand over. */
static int check_uri(const char *s)
{
	if (!strncmp(s, "tcp:", 4) && check_addr(s + 4) == 0)
		return 0;
	if (!strncmp(s, "unix:", 5) && s[5] == '/')
		return 0;
	return -EINVAL;
}

static int parse_migrate(const struct verb_opts *o, Wpmig__MigrateRequest *m)
{
	const struct verb_def *v = &verb_migrate;
	static const char *const need[] = { "--qmp", "--peer", "--dest-qmp", "--dest-uri" };
	uint64_t n;

	for (int i = MG_QMP; i <= MG_DEST_URI; i++)
		if (!o->set[i])
			return usage_error(v, "%s is required", need[i]);
	if (!(m->qmp = (char *)qmp_path(o->val[MG_QMP])))
		return usage_error(v, "invalid --qmp '%s' (a QMP socket path)", o->val[MG_QMP]);
	if (!(m->dest_qmp = (char *)qmp_path(o->val[MG_DEST_QMP])))
		return usage_error(v, "invalid --dest-qmp '%s'", o->val[MG_DEST_QMP]);
	if (check_addr(o->val[MG_PEER]) < 0)
		return usage_error(v, "invalid --peer '%s' (HOST:PORT or unix:PATH)", o->val[MG_PEER]);
	if (check_uri(o->val[MG_DEST_URI]) < 0)
		return usage_error(v, "invalid --dest-uri '%s' (tcp:HOST:PORT or unix:PATH)",
				   o->val[MG_DEST_URI]);
	m->peer = (char *)o->val[MG_PEER];
	m->dest_uri = (char *)o->val[MG_DEST_URI];
	if (o->set[MG_DOWNTIME]) {
		if (parse_number(o->val[MG_DOWNTIME], 3600000, &n) < 0 || n == 0)
			return usage_error(v, "invalid --downtime-ms '%s'", o->val[MG_DOWNTIME]);
		m->downtime_ms = (uint32_t)n;
	}
	if (o->set[MG_MAX_ITER]) {
		/* the daemon keeps a row per pass, the final one included */
		if (parse_number(o->val[MG_MAX_ITER], 127, &n) < 0 || n == 0)
			return usage_error(v, "invalid --max-iterations '%s' (1-127)",
					   o->val[MG_MAX_ITER]);
		m->max_iterations = (uint32_t)n;
	}
	m->force_switchover = o->set[MG_FORCE];
	if (o->set[MG_BANDWIDTH] && parse_rate(o->val[MG_BANDWIDTH], &m->max_bandwidth) < 0)
		return usage_error(v, "invalid --max-bandwidth '%s' (bytes/s, K/M/G suffix)",
				   o->val[MG_BANDWIDTH]);
	return 0;
}

static int run_migrate(struct ctl *c, char **args, int n, const struct verb_opts *o)
{
	Wpmig__Request req = WPMIG__REQUEST__INIT;
	Wpmig__MigrateRequest m = WPMIG__MIGRATE_REQUEST__INIT;
	int r = parse_migrate(o, &m);

	if (r)
		return r;
	req.verb_case = WPMIG__REQUEST__VERB_MIGRATE;
	req.migrate = &m;
	return ctl_run_request(c, &req, show_migrate);
}

const struct verb_def verb_migrate = {
	"migrate", 0, 0, migrate_opts,
	"migrate --qmp SRC_QMP --peer ADDR --dest-qmp DST_QMP --dest-uri URI "
	"[--downtime-ms N] [--max-bandwidth RATE] [--max-iterations N] [--force-switchover]",
	run_migrate,
};
