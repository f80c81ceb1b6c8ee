// SPDX-License-Identifier: GPL-2.0-only
/*
 * The peer protocol's figures, each beside a reference measured in the
 * same run (medians over reps; these machines are noisy):
 *
 *  1. streaming a full checkpoint of mixed memory (a third zero, text,
 *     random pages) to a loopback peer, against the same checkpoint into
 *     the local store; and the bytes on the wire against the raw size;
 *  2. an incremental generation after sparse small writes (one word in
 *     each of many pages) with delta encoding, against the same without
 *     (a receiver granting no cache);
 *  3. in-process: the encodings a delta could use, and the cost of the
 *     per-frame MAC against compression.
 *
 *   bench-peer [--quick] [--mib N] [--reps N] [--poke N]
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench-daemon.h"
#include "bench-report.h"
#include "peer-harness.h"
#include "basic/util.h"

struct opts {
	unsigned mib, reps, poke, delta_mib;
	bool quick;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void rm_set(struct pd *p, const char *set)
{
	if (CTL(&p->d, NULL, NULL, "images", "rm", set) != 0)
		fprintf(stderr, "cannot remove %s\n", set);
}

static int start_wl(struct wl *w, unsigned mib)
{
	char size[32];
	const char *args[] = { "--populate", "100", "--anon", size, NULL };

	snprintf(size, sizeof(size), "%uM", mib);
	return wl_start(w, args);
}

struct speed {
	double local_s[16], peer_s[16], wire[16];
	double cpu_local[16], cpu_src[16], cpu_rx[16]; /* seconds of CPU of the daemons */
	double raw;
};

static int timed(struct pd *tx, struct pd *rx, pid_t pid, const char *peer, const char *set,
		 struct ckres *res, double *cpu_tx, double *cpu_rx)
{
	double a = proc_cpu_s(tx->d.pid), b = proc_cpu_s(rx->d.pid);
	int r = pd_checkpoint(tx, pid, peer, set, false, NULL, res);

	*cpu_tx = proc_cpu_s(tx->d.pid) - a;
	*cpu_rx = proc_cpu_s(rx->d.pid) - b;
	if (r)
		fprintf(stderr, "%s: %s", peer ? "peer" : "local", res->err);
	return r;
}

/* One full checkpoint into the local store and one to the peer. */
static int full_pair(struct pd *tx, struct pd *rx, const char *peer, pid_t pid, unsigned rep,
		     struct speed *sp)
{
	char ls[32], ps[32];
	struct ckres l, p;

	snprintf(ls, sizeof(ls), "local-%u", rep);
	snprintf(ps, sizeof(ps), "peer-%u", rep);
	double none;

	/* alternate which goes first: drift of a noisy machine cancels out */
	if (rep % 2 == 0 && timed(tx, rx, pid, NULL, ls, &l, &sp->cpu_local[rep], &none))
		return -1;
	if (timed(tx, rx, pid, peer, ps, &p, &sp->cpu_src[rep], &sp->cpu_rx[rep]))
		return -1;
	if (rep % 2 == 1 && timed(tx, rx, pid, NULL, ls, &l, &sp->cpu_local[rep], &none))
		return -1;
	sp->raw = (double)p.pages * 4096;
	sp->local_s[rep] = l.duration_ms / 1e3;
	sp->peer_s[rep] = p.duration_ms / 1e3;
	sp->wire[rep] = (double)p.bytes / sp->raw;
	printf("  rep %u: local %.2f GB/s, peer %.2f GB/s, wire %.1f %% of raw (%llu bytes); "
	       "CPU s: local %.2f, peer source %.2f + receiver %.2f\n",
	       rep + 1, sp->raw / sp->local_s[rep] / 1e9, sp->raw / sp->peer_s[rep] / 1e9,
	       100 * sp->wire[rep], (unsigned long long)p.bytes, sp->cpu_local[rep],
	       sp->cpu_src[rep], sp->cpu_rx[rep]);
	rm_set(tx, ls);
	rm_set(rx, ps);
	return 0;
}

/* A source and two receivers, optionally pinned to CPUs. */
struct rig {
	struct pd tx, rx[2];
	char addr[2][64];
	const char *tx_cpus;
};

static int rig_up(struct rig *g, const char *key, const char *tx_cpus, const char *rx_cpus,
		  const char *rx_conf)
{
	g->tx_cpus = tx_cpus;
	for (int i = 0; i < 2; i++) {
		snprintf(g->addr[i], sizeof(g->addr[i]), "127.0.0.1:%d", free_port());
		if (pd_start_on(&g->rx[i], key, g->addr[i], rx_conf, rx_cpus) < 0)
			return -1;
	}
	return pd_start_on(&g->tx, key, NULL, "", tx_cpus);
}

static void rig_down(struct rig *g)
{
	printf("  peak RSS: source %ld KiB, receivers %ld and %ld KiB\n", pd_hwm(&g->tx),
	       pd_hwm(&g->rx[0]), pd_hwm(&g->rx[1]));
	pd_cleanup(&g->tx);
	pd_cleanup(&g->rx[0]);
	pd_cleanup(&g->rx[1]);
}

static void pin(pid_t pid, const char *cpus)
{
	char *cmd;

	if (!cpus)
		return;
	cmd = xstrdup_printf("taskset -a -p -c %s %d >/dev/null", cpus, (int)pid);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot pin %d\n", (int)pid);
	free(cmd);
}

/* For the report: the streaming figures of one configuration. */
static void report_stream(const char *id, const char *what, const struct speed *sp,
			  const struct opts *o, bool judged)
{
	double peer_gbs[16], local_gbs[16], wire_pct[16];
	char rid[64], w[192];

	for (unsigned i = 0; i < o->reps; i++) {
		peer_gbs[i] = sp->raw / sp->peer_s[i] / 1e9;
		local_gbs[i] = sp->raw / sp->local_s[i] / 1e9;
		wire_pct[i] = 100 * sp->wire[i];
	}
	snprintf(rid, sizeof(rid), "peer.stream.%s", id);
	snprintf(w, sizeof(w), "full checkpoint of %u MiB mixed streamed to a peer, %s", o->mib,
		 what);
	brep_row(&(struct brep_row){
		.id = rid, .section = "Peer streaming", .what = w, .unit = "GB/s", .v = peer_gbs,
		.n = o->reps, .ref = "the same checkpoint into the local store", .ref_unit = "GB/s",
		.ref_v = local_gbs, .ref_n = o->reps, .target = judged ? "ratio >= 0.8" : NULL,
		.note = "a target to hold on every machine: streaming at least 80 % of local" });
	snprintf(rid, sizeof(rid), "peer.wire.%s", id);
	snprintf(w, sizeof(w), "streamed to a peer, %s: bytes on the wire", what);
	brep_row(&(struct brep_row){ .id = rid, .section = "Peer streaming", .what = w,
				     .unit = "% of raw", .v = wire_pct, .n = o->reps,
				     .target = judged ? "<= 45" : NULL });
	snprintf(rid, sizeof(rid), "peer.cpu.%s", id);
	snprintf(w, sizeof(w), "streamed to a peer, %s: CPU seconds of source + receiver", what);
	double both[16];
	for (unsigned i = 0; i < o->reps; i++)
		both[i] = sp->cpu_src[i] + sp->cpu_rx[i];
	brep_row(&(struct brep_row){ .id = rid, .section = "Peer streaming", .what = w,
				     .unit = "CPU s", .v = both, .n = o->reps,
				     .ref = "the local checkpoint", .ref_unit = "CPU s",
				     .ref_v = sp->cpu_local, .ref_n = o->reps });
}

/* The two receivers in turn: each rep opens a new link, so its delta
 * cache starts empty as for any first generation (no help from the last). */
static int bench_stream(struct rig *g, const struct opts *o, double *ratio, double *wire,
			const char *id, const char *what, bool judged)
{
	struct speed sp = { 0 };
	struct wl w = { 0 };
	int r = start_wl(&w, o->mib);

	if (r < 0)
		return fprintf(stderr, "workload: %s\n", strerror(-r)), r;
	pin(w.pid, g->tx_cpus);
	for (unsigned i = 0; r == 0 && i < o->reps; i++)
		r = full_pair(&g->tx, &g->rx[i % 2], g->addr[i % 2], w.pid, i, &sp);
	wl_stop(&w);
	if (r < 0)
		return r;
	double ls = median(sp.local_s, o->reps), ps = median(sp.peer_s, o->reps);
	*ratio = ls / ps;
	*wire = median(sp.wire, o->reps);
	printf("  median: local store %.2f GB/s (reference), loopback peer %.2f GB/s = %.0f %% "
	       "of local (goal >= 80 %%)\n", sp.raw / ls / 1e9, sp.raw / ps / 1e9, 100 * *ratio);
	printf("  bytes on the wire: %.1f %% of raw (goal <= 45 %%)\n", 100 * *wire);
	report_stream(id, what, &sp, o, judged);
	printf("  median CPU seconds: local checkpoint %.2f; streamed: source %.2f, receiver %.2f\n",
	       median(sp.cpu_local, o->reps), median(sp.cpu_src, o->reps),
	       median(sp.cpu_rx, o->reps));
	return 0;
}

/* Full, poke, increment: the increment's bytes on the wire. */
static int poke_increment(struct pd *tx, const char *peer, struct wl *w, const char *set,
			  unsigned poke, uint64_t seed, double *bytes)
{
	struct ckres r;

	if (pd_checkpoint(tx, w->pid, peer, set, false, NULL, &r))
		return fprintf(stderr, "full: %s", r.err), -1;
	if (wl_cmd(w, NULL, 0, "poke anon %u %llu", poke, (unsigned long long)seed) < 0)
		return -1;
	if (pd_checkpoint(tx, w->pid, peer, set, false, NULL, &r) || !r.parent)
		return fprintf(stderr, "increment: %s", r.err), -1;
	*bytes = (double)r.bytes;
	return 0;
}

static int bench_delta(struct pd *tx, const char *with, const char *without, const struct opts *o,
		       double *ratio)
{
	double d[16], p[16];
	struct wl w = { 0 };
	int r = start_wl(&w, o->delta_mib);
	char set[32];

	if (r < 0)
		return r;
	printf("Increment after %u pages of %u MiB got one word each, %u reps:\n", o->poke,
	       o->delta_mib, o->reps);
	for (unsigned i = 0; r == 0 && i < o->reps; i++) {
		snprintf(set, sizeof(set), "delta-%u", i);
		r = poke_increment(tx, with, &w, set, o->poke, 100 + i, &d[i]);
		snprintf(set, sizeof(set), "plain-%u", i);
		if (r == 0)
			r = poke_increment(tx, without, &w, set, o->poke, 200 + i, &p[i]);
		if (r == 0)
			printf("  rep %u: with delta %.0f bytes (%.1f per page), without %.0f bytes "
			       "(%.1f per page)\n", i + 1, d[i], d[i] / o->poke, p[i], p[i] / o->poke);
	}
	wl_stop(&w);
	if (r < 0)
		return r;
	brep_row(&(struct brep_row){
		.id = "peer.delta", .section = "Peer streaming",
		.what = "increment after one word changed in each of many pages, with delta encoding",
		.unit = "bytes", .v = d, .n = o->reps, .ref = "the same without delta (no cache)",
		.ref_unit = "bytes", .ref_v = p, .ref_n = o->reps, .target = "ratio <= 0.2" });
	*ratio = median(p, o->reps) / median(d, o->reps);
	printf("  median: without delta %.0f bytes (reference), with delta %.0f bytes: %.1fx "
	       "fewer (goal >= 5x)\n", median(p, o->reps), median(d, o->reps), *ratio);
	return 0;
}

void bench_encodings(unsigned pages, bool quick); /* bench-peer-enc.c */

static int parse(int argc, char **argv, struct opts *o)
{
	*o = (struct opts){ .mib = 1024, .reps = 5, .poke = 4000, .delta_mib = 48 };
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			*o = (struct opts){ .mib = 64, .reps = 1, .poke = 1000, .delta_mib = 16,
					    .quick = true };
		else if (!strcmp(argv[i], "--mib") && i + 1 < argc)
			o->mib = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
			int n = atoi(argv[++i]);
			o->reps = (unsigned)MIN(MAX(n, 1), 15);
		}
		else if (!strcmp(argv[i], "--poke") && i + 1 < argc)
			o->poke = (unsigned)atoi(argv[++i]);
		else
			return fprintf(stderr, "usage: bench-peer [--quick] [--mib N] [--reps N] "
				       "[--poke N]\n"), -1;
	}
	return 0;
}

static int figures(const char *key, const struct opts *o, double *shared, double *hosts,
		   double *wire, double *delta)
{
	struct rig g = { 0 }, h = { 0 }, v = { 0 };
	struct pd plain = { 0 };
	char a2[64];
	double w2, pages;
	int r;

	printf("Full checkpoint of %u MiB of mixed memory, %u reps, both daemons on all %ld "
	       "cores (peer_verify = payload, the default):\n", o->mib, o->reps,
	       sysconf(_SC_NPROCESSORS_ONLN));
	snprintf(a2, sizeof(a2), "127.0.0.1:%d", free_port());
	r = rig_up(&g, key, NULL, NULL, "") < 0 ||
			    pd_start(&plain, key, a2, "peer_cache = 0", NULL) < 0
		    ? -1 : bench_stream(&g, o, shared, wire, "shared",
					 "both daemons on all cores", true);
	if (r == 0)
		r = bench_delta(&g.tx, g.addr[0], a2, o, delta);
	rig_down(&g);
	pd_cleanup(&plain);
	if (r < 0 || o->quick)
		return r;
	/* The same with receivers that decode every page on arrival. */
	printf("The same with peer_verify = pages (every page decoded and checked on arrival):\n");
	r = rig_up(&v, key, NULL, NULL, "peer_verify = pages") < 0 ? -1
		: bench_stream(&v, o, &pages, &w2, "verify-pages",
			       "peer_verify = pages", false);
	rig_down(&v);
	if (r < 0)
		return r;
	/* Two hosts of one core each, as far as one host can show it: the
	 * source (and the process) on CPU 0, the receivers on CPU 1; the
	 * local checkpoint gets CPU 0 only, like the source. */
	printf("The same as two one-core hosts (source and process on CPU 0, receiver on CPU 1):\n");
	r = rig_up(&h, key, "0", "1", "") < 0 ? -1 : bench_stream(&h, o, hosts, &w2, "two-hosts",
								   "as two one-core hosts", false);
	rig_down(&h);
	return r;
}

int main(int argc, char **argv)
{
	double shared = 0, hosts = 0, wire = 1, delta = 0;
	char key[192];
	struct opts o;
	int r;

	if (parse(argc, argv, &o) < 0)
		return 2;
	require_tracking();
	signal(SIGPIPE, SIG_IGN);
	if (pk_make(key, sizeof(key)) < 0)
		return 1;
	r = figures(key, &o, &shared, &hosts, &wire, &delta);
	if (r == 0)
		bench_encodings(o.poke, o.quick);
	if (r < 0)
		return 1;
	/* The smoke run checks that it works; the figures are for the full run. */
	if (o.quick)
		return wire < 1 && delta > 1 ? 0 : 1;
	return (shared >= 0.8 || hosts >= 0.8) && wire <= 0.45 && delta >= 5 ? 0 : 1;
}
