// SPDX-License-Identifier: GPL-2.0-only
/* check, track, untrack, status, sessions */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "track/probe.h"

/* ---- check ---- */

static int show_features(struct ctl *c, const Wpmig__CheckResult *cr, const char *source)
{
	if (c->json) {
		struct json_object *o = pb_to_json(&cr->base);
		json_object_object_add(o, "source", json_object_new_string(source));
		json_print(o);
	} else {
		for (size_t i = 0; i < cr->n_features; i++)
			printf("%-4s %-20s %s\n", cr->features[i]->ok ? "ok" : "MISS",
			       cr->features[i]->name, cr->features[i]->detail);
		printf(cr->all_ok ? "All features present.\n" : "Some features are missing.\n");
	}
	return cr->all_ok ? EXIT_OK : EXIT_FAIL;
}

static int show_check(struct ctl *c, const Wpmig__Response *resp)
{
	return show_features(c, resp->check, "daemon");
}

/* No daemon: probe this kernel from here (as this user). */
static int check_locally(struct ctl *c, int err)
{
	struct probe_result res[PROBE_MAX];
	Wpmig__Feature f[PROBE_MAX], *fp[PROBE_MAX];
	Wpmig__CheckResult cr = WPMIG__CHECK_RESULT__INIT;
	int n;

	fprintf(stderr, "wpmig-ctl: wpmigd is not reachable at %s (%s); probing locally\n",
		c->socket, strerror(-err));
	n = probe_run(res);
	for (int i = 0; i < n; i++) {
		wpmig__feature__init(&f[i]);
		f[i].name = (char *)res[i].name;
		f[i].ok = res[i].ok;
		f[i].detail = res[i].detail;
		fp[i] = &f[i];
	}
	cr.features = fp;
	cr.n_features = (size_t)n;
	cr.all_ok = probe_all_ok(res, n);
	return show_features(c, &cr, "local");
}

static int run_check(struct ctl *c, char **args, int n, const struct verb_opts *o)
{
	Wpmig__Request req = WPMIG__REQUEST__INIT;
	Wpmig__CheckRequest cr = WPMIG__CHECK_REQUEST__INIT;
	int r = ctl_connect(c);

	if (r < 0)
		return check_locally(c, r);
	req.verb_case = WPMIG__REQUEST__VERB_CHECK;
	req.check = &cr;
	return ctl_run_request(c, &req, show_check);
}

const struct verb_def verb_check = {
	"check", 0, 0, NULL, "check", run_check,
};

/* ---- track / untrack ---- */

static void print_session(const Wpmig__SessionInfo *s)
{
	char tb[32], ub[32];

	printf("pid %d (%s): %s for %.1fs\n", s->pid, s->comm, s->state, s->state_ms / 1e3);
	printf("  tracked %s, untracked %s, attach %.1f ms\n",
	       fmt_bytes(s->tracked_bytes, tb, sizeof(tb)),
	       fmt_bytes(s->untracked_bytes, ub, sizeof(ub)), s->attach_ms);
	printf("  passes %" PRIu64 ", last scan %.2f ms, last written %" PRIu64
	       " pages, dirty rate %.0f pages/s\n", s->passes, s->last_scan_ms,
	       s->last_written_pages, s->dirty_rate);
	printf("  events: remove %" PRIu64 ", unmap %" PRIu64 ", remap %" PRIu64
	       ", fork %" PRIu64 "\n", s->events_remove, s->events_unmap, s->events_remap,
	       s->events_fork);
	if (s->set[0])
		printf("  image set %s, generation %" PRIu64 "\n", s->set, s->generation);
	if (s->last_pause && s->last_pause->pause_ms > 0)
		printf("  last pause %.2f ms (freeze %.2f, scan %.2f, copy %.2f, thaw %.2f; "
		       "settle before it %.2f), longest %.2f ms\n", s->last_pause->pause_ms,
		       s->last_pause->freeze_ms, s->last_pause->scan_ms, s->last_pause->copy_ms,
		       s->last_pause->thaw_ms, s->last_pause->settle_ms, s->max_pause_ms);
	if (s->link && s->link->peer[0])
		printf("  peer %s: %s, sent %" PRIu64 ", acked %" PRIu64 ", %.1f MB/s, ratio %.2f\n",
		       s->link->peer, s->link->state, s->link->bytes_sent, s->link->bytes_acked,
		       s->link->rate / 1e6, s->link->ratio);
}

static int show_one(struct ctl *c, const Wpmig__SessionInfo *s, const char *what)
{
	if (c->json) {
		json_print(pb_to_json(&s->base));
		return EXIT_OK;
	}
	char tb[32];
	printf("%s pid %d (%s): %s, %s registered\n", what, s->pid, s->comm, s->state,
	       fmt_bytes(s->tracked_bytes, tb, sizeof(tb)));
	return EXIT_OK;
}

static int show_track(struct ctl *c, const Wpmig__Response *resp)
{
	return show_one(c, resp->track, "Tracking");
}

static int show_untrack(struct ctl *c, const Wpmig__Response *resp)
{
	return show_one(c, resp->untrack, "Stopped tracking");
}

static int run_track_verb(struct ctl *c, const char *arg, bool untrack)
{
	Wpmig__Request req = WPMIG__REQUEST__INIT;
	Wpmig__TrackRequest tr = WPMIG__TRACK_REQUEST__INIT;
	Wpmig__UntrackRequest ur = WPMIG__UNTRACK_REQUEST__INIT;
	int64_t pid;

	if (parse_pid_arg(arg, &pid) < 0)
		return usage_error(untrack ? &verb_untrack : &verb_track, "invalid PID '%s'", arg);
	if (untrack) {
		ur.pid = pid;
		req.verb_case = WPMIG__REQUEST__VERB_UNTRACK;
		req.untrack = &ur;
		return ctl_run_request(c, &req, show_untrack);
	}
	tr.pid = pid;
	req.verb_case = WPMIG__REQUEST__VERB_TRACK;
	req.track = &tr;
	return ctl_run_request(c, &req, show_track);
}

static int run_track(struct ctl *c, char **args, int n, const struct verb_opts *o)
{
	return run_track_verb(c, args[0], false);
}

static int run_untrack(struct ctl *c, char **args, int n, const struct verb_opts *o)
{
	return run_track_verb(c, args[0], true);
}

const struct verb_def verb_track = { "track", 1, 1, NULL, "track PID", run_track };
const struct verb_def verb_untrack = { "untrack", 1, 1, NULL, "untrack PID", run_untrack };

/* ---- status / sessions ---- */

static int show_status(struct ctl *c, const Wpmig__Response *resp)
{
	const Wpmig__StatusResult *st = resp->status;

	if (c->json) {
		json_print(pb_to_json(&st->base));
		return EXIT_OK;
	}
	printf("wpmigd %s, up %.0fs: %zu/%u sessions, %u connections, %u jobs running, "
	       "%u queued\n", st->version, st->uptime_ms / 1e3, st->n_sessions,
	       st->max_sessions, st->connections, st->jobs_running, st->jobs_queued);
	for (size_t i = 0; i < st->n_sessions; i++)
		print_session(st->sessions[i]);
	if (st->listen[0])
		printf("peer port %s: %zu connection%s\n", st->listen, st->n_links,
		       st->n_links == 1 ? "" : "s");
	for (size_t i = 0; i < st->n_links; i++) {
		const Wpmig__LinkInfo *l = st->links[i];
		printf("  from %s: %s, set %s generation %" PRIu64 ", received %" PRIu64
		       ", acked %" PRIu64 ", %.1f MB/s, ratio %.2f\n", l->peer, l->state,
		       l->set[0] ? l->set : "-", l->generation, l->bytes_received, l->bytes_acked,
		       l->rate / 1e6, l->ratio);
	}
	for (size_t i = 0; i < st->n_migrations; i++) {
		const Wpmig__MigrationInfo *m = st->migrations[i];
		printf("migration (%s) %s%s%s: %s, pass %u, %" PRIu64 " pages, %" PRIu64 " bytes, "
		       "%.1fs\n", m->role, m->qmp, m->peer[0] ? " -> " : "", m->peer, m->state,
		       m->pass, m->pages, m->bytes, m->elapsed_ms / 1e3);
	}
	return EXIT_OK;
}

static int show_sessions(struct ctl *c, const Wpmig__Response *resp)
{
	const Wpmig__StatusResult *st = resp->sessions;
	char tb[32];

	if (c->json) {
		json_print(pb_to_json(&st->base));
		return EXIT_OK;
	}
	printf("%-8s %-16s %-14s %12s %8s %s\n", "PID", "COMM", "STATE", "TRACKED", "PASSES",
	       "SET");
	for (size_t i = 0; i < st->n_sessions; i++) {
		const Wpmig__SessionInfo *s = st->sessions[i];
		printf("%-8d %-16s %-14s %12s %8" PRIu64 " %s\n", s->pid, s->comm, s->state,
		       fmt_bytes(s->tracked_bytes, tb, sizeof(tb)), s->passes,
		       s->set[0] ? s->set : "-");
	}
	return EXIT_OK;
}

static int run_status(struct ctl *c, char **args, int n, const struct verb_opts *o)
{
	Wpmig__Request req = WPMIG__REQUEST__INIT;
	Wpmig__StatusRequest sr = WPMIG__STATUS_REQUEST__INIT;

	if (n == 1 && parse_pid_arg(args[0], &sr.pid) < 0)
		return usage_error(&verb_status, "invalid PID '%s'", args[0]);
	req.verb_case = WPMIG__REQUEST__VERB_STATUS;
	req.status = &sr;
	return ctl_run_request(c, &req, show_status);
}

static int run_sessions(struct ctl *c, char **args, int n, const struct verb_opts *o)
{
	Wpmig__Request req = WPMIG__REQUEST__INIT;
	Wpmig__SessionsRequest sr = WPMIG__SESSIONS_REQUEST__INIT;

	req.verb_case = WPMIG__REQUEST__VERB_SESSIONS;
	req.sessions = &sr;
	return ctl_run_request(c, &req, show_sessions);
}

const struct verb_def verb_status = { "status", 0, 1, NULL, "status [PID]", run_status };
const struct verb_def verb_sessions = { "sessions", 0, 0, NULL, "sessions", run_sessions };
