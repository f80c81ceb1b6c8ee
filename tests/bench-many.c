// SPDX-License-Identifier: GPL-2.0-only
/*
 * Many targets on one host: --targets processes of --mib each (32 of
 * 64 MiB) tracked by one daemon at once, each checkpointed every --period
 * seconds for --seconds (1 % of its pages written before each), first into
 * the local store, then streamed to a peer daemon on the same host, both
 * daemons with their default configuration (a link per target: the
 * receiver's default peer_max_connections is 64):
 *
 *   - every checkpoint's pause and duration, and the checkpoints that did
 *     not start on time (the daemon runs `workers` jobs at once);
 *   - the daemon's CPU (share of one core) and RSS, sampled every second
 *     (and the receiver's RSS); streaming, the source's RSS may exceed what
 *     it took to the local store by the delta cache, peer_cache (64 MiB),
 *     shared by all its links, and half a MiB per link (measured: 0.3;
 *     docs/performance.md, Memory);
 *   - control-socket latency while it runs: a status request every 100 ms
 *     on a connection of its own;
 *   - every generation verifies (images verify of each set's newest reads
 *     every file of its chain), and a few targets' newest generation equals
 *     the process byte for byte (taken with it left stopped, then exported);
 *   - how the cost grows: RSS after each target is tracked, and daemon CPU
 *     with a quarter of the targets against all of them.
 *
 *   bench-many [--quick] [--targets N] [--mib N] [--seconds S] [--period S]
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench-daemon.h"
#include "bench-report.h"
#include "bench.h"
#include "peer-harness.h"
#include "basic/util.h"

#define SECTION "Many targets"
#define MAX_TARGETS 64
#define MAX_LAT 8192
#define PEER_CACHE_MIB 64 /* the default peer_cache */
#define LINK_MIB 0.5      /* a link's own memory, at most (docs/performance.md) */

struct opts {
	unsigned targets, mib, seconds, period;
	bool quick;
};

struct target {
	struct wl w;
	char set[48];
	pthread_t th;
	/* this phase's checkpoints */
	double *pause, *dur;
	unsigned n, late, failed;
	uint64_t last_gen;
};

struct phase {
	const struct opts *o;
	struct pd *src;
	const char *peer;  /* NULL: the local store */
	const char *name;  /* "local", "peer" */
	struct target *t;
	unsigned n_targets, seconds, cap;
	uint64_t t0_ns;
	atomic_bool stop;
	double lat[MAX_LAT];
	unsigned n_lat, lat_fail;
	double rss_max, rx_rss_max; /* MiB: the source's, the receiver's (a peer phase) */
	double rss_limit;           /* MiB, 0: none */
};

struct worker_arg {
	struct phase *ph;
	unsigned i;
};

static void sleep_until(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ULL), (long)(ns % 1000000000ULL) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* One target: write 1 %, checkpoint, at its slots of the period. */
static void *target_loop(void *arg)
{
	struct worker_arg *a = arg;
	struct phase *ph = a->ph;
	struct target *t = &ph->t[a->i];
	uint64_t period = (uint64_t)ph->o->period * 1000000000ULL;
	uint64_t end = ph->t0_ns + (uint64_t)ph->seconds * 1000000000ULL;
	uint64_t slot = ph->t0_ns + period * a->i / ph->n_targets, seed = a->i * 1000003ULL;
	unsigned pages = ph->o->mib * 256 / 100;

	while (slot < end && t->n < ph->cap) {
		sleep_until(slot);
		struct bench_ck c;
		if (wl_cmd(&t->w, NULL, 0, "write anon %u %llu", pages,
			   (unsigned long long)++seed) < 0 ||
		    bench_checkpoint(&ph->src->d, t->w.pid, t->set, ph->peer, &c) < 0) {
			t->failed++;
		} else {
			t->pause[t->n] = c.pause_ms;
			t->dur[t->n++] = c.duration_ms;
			t->last_gen = c.generation;
		}
		uint64_t now = now_ns();
		slot += period;
		while (slot < now) { /* a slot missed: the daemon fell behind */
			t->late++;
			slot += period;
		}
	}
	return NULL;
}

/* A status request every 100 ms on a connection of its own. */
static void *latency_loop(void *arg)
{
	struct phase *ph = arg;
	int fd = raw_connect(ph->src->d.sock);

	while (!atomic_load(&ph->stop) && ph->n_lat < MAX_LAT) {
		uint64_t t0 = now_ns();
		if (fd < 0 || raw_status(fd, 5000) != 0) {
			ph->lat_fail++;
			if (fd >= 0)
				close(fd);
			fd = raw_connect(ph->src->d.sock);
		} else {
			ph->lat[ph->n_lat++] = ns_to_ms(now_ns() - t0);
		}
		sleep_until(t0 + 100000000ULL);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static double pct_of(double *v, unsigned n, double p)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), bench_cmp_double);
	return v[MIN((unsigned)(p * n), n - 1)];
}

static void phase_rows(struct phase *ph, double cpu, unsigned verified, unsigned gens,
		       long bad_pages)
{
	double rss_max = ph->rss_max;
	char limit[32] = "";
	unsigned total = 0, late = 0, failed = 0;
	char id[64], what[160];

	for (unsigned i = 0; i < ph->n_targets; i++) {
		total += ph->t[i].n;
		late += ph->t[i].late;
		failed += ph->t[i].failed;
	}
	double *pause = calloc(total + 1, sizeof(double)), *dur = calloc(total + 1, sizeof(double));
	unsigned k = 0;
	for (unsigned i = 0; i < ph->n_targets; i++)
		for (unsigned j = 0; j < ph->t[i].n; j++, k++) {
			pause[k] = ph->t[i].pause[j];
			dur[k] = ph->t[i].dur[j];
		}
	const char *where = ph->peer ? "streamed to a peer" : "to the local store";
	printf("%s, %u targets of %u MiB every %u s for %u s: %u checkpoints (%u late, %u failed)\n",
	       where, ph->n_targets, ph->o->mib, ph->o->period, ph->seconds, total, late, failed);
	printf("  pause median %.2f ms, p99 %.2f, max %.2f; duration median %.1f ms, p99 %.1f\n",
	       pct_of(pause, total, 0.5), pct_of(pause, total, 0.99), pct_of(pause, total, 1),
	       pct_of(dur, total, 0.5), pct_of(dur, total, 0.99));
	double lat[MAX_LAT];
	memcpy(lat, ph->lat, ph->n_lat * sizeof(double));
	printf("  status latency median %.2f ms, p99 %.2f, max %.2f (%u requests, %u failed)\n",
	       pct_of(lat, ph->n_lat, 0.5), pct_of(lat, ph->n_lat, 0.99), pct_of(lat, ph->n_lat, 1),
	       ph->n_lat, ph->lat_fail);
	printf("  daemon CPU %.1f %% of one core, RSS max %.1f MiB; %u of %u sets verify (%u "
	       "generations), %ld pages differ from the live processes\n", cpu, rss_max, verified,
	       ph->n_targets, gens, bad_pages);
	if (ph->peer)
		printf("  receiver RSS max %.1f MiB\n", ph->rx_rss_max);
	if (ph->n_targets != ph->o->targets) { /* the smaller phase: only its cost */
		free(pause);
		free(dur);
		return;
	}
	snprintf(id, sizeof(id), "many.%s.pause", ph->name);
	snprintf(what, sizeof(what), "%u targets, each checkpointed every %u s %s: pause",
		 ph->n_targets, ph->o->period, where);
	brep_row(&(struct brep_row){ .id = id, .section = SECTION, .what = what, .unit = "ms",
				     .v = pause, .n = total, .target = "<= 2",
				     .note = "every checkpoint of every target is a run" });
	snprintf(id, sizeof(id), "many.%s.duration", ph->name);
	snprintf(what, sizeof(what), "%u targets %s: checkpoint duration", ph->n_targets, where);
	brep_row(&(struct brep_row){ .id = id, .section = SECTION, .what = what, .unit = "ms",
				     .v = dur, .n = total });
	snprintf(id, sizeof(id), "many.%s.status", ph->name);
	snprintf(what, sizeof(what), "%u targets %s: control-socket latency (status)",
		 ph->n_targets, where);
	brep_row(&(struct brep_row){ .id = id, .section = SECTION, .what = what, .unit = "ms",
				     .v = ph->lat, .n = ph->n_lat, .target = "<= 50",
				     .note = "a status request every 100 ms while the checkpoints run" });
	snprintf(id, sizeof(id), "many.%s.cpu", ph->name);
	snprintf(what, sizeof(what), "%u targets %s: daemon CPU", ph->n_targets, where);
	brep_row(&(struct brep_row){ .id = id, .section = SECTION, .what = what,
				     .unit = "% of a core", .v = &cpu, .n = 1 });
	snprintf(id, sizeof(id), "many.%s.rss", ph->name);
	snprintf(what, sizeof(what), "%u targets %s: daemon RSS, highest", ph->n_targets, where);
	if (ph->rss_limit > 0)
		snprintf(limit, sizeof(limit), "<= %.0f", ph->rss_limit);
	brep_row(&(struct brep_row){ .id = id, .section = SECTION, .what = what, .unit = "MiB",
				     .v = &rss_max, .n = 1, .target = limit[0] ? limit : NULL,
				     .note = limit[0] ? "the same daemon's highest to the local store, "
					 "plus peer_cache (64 MiB: every link's delta cache together) "
					 "and 0.5 MiB a link" : NULL });
	if (ph->peer) {
		snprintf(id, sizeof(id), "many.%s.rx_rss", ph->name);
		snprintf(what, sizeof(what), "%u targets %s: the receiver's RSS, highest",
			 ph->n_targets, where);
		brep_row(&(struct brep_row){ .id = id, .section = SECTION, .what = what,
					     .unit = "MiB", .v = &ph->rx_rss_max, .n = 1 });
	}
	double bad = (double)(ph->n_targets - verified) + (double)failed + (double)(bad_pages != 0);
	snprintf(id, sizeof(id), "many.%s.failures", ph->name);
	snprintf(what, sizeof(what), "%u targets %s: sets that failed to verify, checkpoints "
		 "that failed, exports that differ (%u generations)", ph->n_targets, where, gens);
	brep_row(&(struct brep_row){ .id = id, .section = SECTION, .what = what, .unit = "",
				     .v = &bad, .n = 1, .target = "<= 0" });
	double lateness = 100.0 * late / MAX(total + late, 1u);
	snprintf(id, sizeof(id), "many.%s.late", ph->name);
	snprintf(what, sizeof(what), "%u targets %s: checkpoints not started on time",
		 ph->n_targets, where);
	brep_row(&(struct brep_row){ .id = id, .section = SECTION, .what = what, .unit = "%",
				     .v = &lateness, .n = 1, .target = "<= 1" });
	free(pause);
	free(dur);
}

/* The receiving side holds the generations of a peer phase. */
static int check_sets(struct phase *ph, struct pd *holder, unsigned *verified, unsigned *gens,
		      long *bad_pages)
{
	uint64_t list[512];

	*verified = *gens = 0;
	*bad_pages = 0;
	for (unsigned i = 0; i < ph->n_targets; i++) {
		struct target *t = &ph->t[i];
		int n = pd_generations(holder, t->set, list, 512);
		if (n > 0)
			*gens += (unsigned)n;
		if (n > 0 && bench_verify(&holder->d, t->set, 0) == 0)
			(*verified)++;
		if (i % 8 != 0) /* a few targets: the newest equals the process */
			continue;
		struct ckres r;
		if (pd_checkpoint(ph->src, t->w.pid, ph->peer, t->set, true, NULL, &r) != 0) {
			(*bad_pages)++;
			continue;
		}
		long bad = pd_compare(holder, t->set, r.generation, t->w.pid);
		kill(t->w.pid, SIGCONT);
		*bad_pages += bad < 0 ? 1 : bad;
		if (n >= 0)
			(*gens)++;
	}
	return 0;
}

static int run_phase(struct phase *ph, struct pd *holder)
{
	struct worker_arg args[MAX_TARGETS];
	pthread_t lat;
	ph->cap = ph->seconds / ph->o->period + 2;
	for (unsigned i = 0; i < ph->n_targets; i++) {
		struct target *t = &ph->t[i];
		snprintf(t->set, sizeof(t->set), "many-%s-%u-%u", ph->name, ph->n_targets, i);
		t->pause = calloc(ph->cap, sizeof(double));
		t->dur = calloc(ph->cap, sizeof(double));
		t->n = t->late = t->failed = 0;
	}
	ph->t0_ns = now_ns() + 200000000ULL;
	atomic_store(&ph->stop, false);
	double cpu0 = proc_cpu_s(ph->src->d.pid);
	pthread_create(&lat, NULL, latency_loop, ph);
	for (unsigned i = 0; i < ph->n_targets; i++) {
		args[i] = (struct worker_arg){ ph, i };
		pthread_create(&ph->t[i].th, NULL, target_loop, &args[i]);
	}
	for (unsigned s = 0; s < ph->seconds; s++) {
		sleep_until(ph->t0_ns + (s + 1) * 1000000000ULL);
		ph->rss_max = MAX(ph->rss_max, (double)pd_rss(ph->src) / 1024);
		if (ph->peer)
			ph->rx_rss_max = MAX(ph->rx_rss_max, (double)pd_rss(holder) / 1024);
	}
	for (unsigned i = 0; i < ph->n_targets; i++)
		pthread_join(ph->t[i].th, NULL);
	double wall = (double)(now_ns() - ph->t0_ns) / 1e9;
	double cpu = 100 * (proc_cpu_s(ph->src->d.pid) - cpu0) / wall;
	atomic_store(&ph->stop, true);
	pthread_join(lat, NULL);
	unsigned verified, gens;
	long bad;
	check_sets(ph, holder, &verified, &gens, &bad);
	phase_rows(ph, cpu, verified, gens, bad);
	double x = ph->n_targets;
	brep_point("many_cpu", ph->peer ? "streamed to a peer" : "local store", x, &cpu, 1);
	for (unsigned i = 0; i < ph->n_targets; i++) {
		bench_rm(&holder->d, ph->t[i].set);
		free(ph->t[i].pause);
		free(ph->t[i].dur);
	}
	return 0;
}

static int parse(int argc, char **argv, struct opts *o)
{
	*o = (struct opts){ .targets = 32, .mib = 64, .seconds = 75, .period = 4 };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int v = i + 1 < argc ? atoi(argv[i + 1]) : 0;
		if (!strcmp(a, "--quick")) {
			*o = (struct opts){ .targets = 4, .mib = 16, .seconds = 6, .period = 2,
					    .quick = true };
			continue;
		}
		if (v <= 0)
			return -1;
		i++;
		if (!strcmp(a, "--targets"))
			o->targets = (unsigned)MIN(v, MAX_TARGETS);
		else if (!strcmp(a, "--mib"))
			o->mib = (unsigned)v;
		else if (!strcmp(a, "--seconds"))
			o->seconds = (unsigned)v;
		else if (!strcmp(a, "--period"))
			o->period = (unsigned)v;
		else
			return -1;
	}
	return o->targets >= 4 ? 0 : -1;
}

static int start_targets(const struct opts *o, struct pd *src, struct target *t)
{
	char size[32], p[16];
	const char *args[] = { "--anon", size, "--populate", "100", NULL };

	snprintf(size, sizeof(size), "%uM", o->mib);
	for (unsigned i = 0; i < o->targets; i++) {
		if (wl_start(&t[i].w, args) < 0)
			return -1;
		snprintf(p, sizeof(p), "%d", (int)t[i].w.pid);
		if (CTL(&src->d, NULL, NULL, "track", p) != 0)
			return fprintf(stderr, "cannot track %s\n", p), -1;
		double rss = (double)pd_rss(src) / 1024;
		brep_point("many_rss", "daemon RSS, targets tracked (before any checkpoint)", i + 1,
			   &rss, 1);
	}
	printf("%u targets of %u MiB tracked: daemon RSS %.1f MiB\n", o->targets, o->mib,
	       (double)pd_rss(src) / 1024);
	return 0;
}

int main(int argc, char **argv)
{
	static struct target t[MAX_TARGETS];
	static struct phase ph;
	struct pd src = { 0 }, rx = { 0 };
	char key[192], addr[64];
	struct opts o;
	int r = -1;

	if (parse(argc, argv, &o) < 0) {
		fprintf(stderr, "usage: bench-many [--quick] [--targets N>=4] [--mib N] [--seconds S] "
				"[--period S]\n");
		return 2;
	}
	require_tracking();
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_bin("WPMIG_CTL", "../client/wpmig-ctl"); /* resolved once, before the threads */
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
	/* The source keeps a link per target between generations: the
	 * receiver's default peer_max_connections (64) takes every one. */
	if (pk_make(key, sizeof(key)) < 0 || pd_start(&rx, key, addr, "", NULL) < 0 ||
	    pd_start(&src, key, NULL, "", NULL) < 0)
		goto out;
	printf("bench-many: idle daemon RSS %.1f MiB\n", (double)pd_rss(&src) / 1024);
	if (start_targets(&o, &src, t) < 0)
		goto out;
	ph = (struct phase){ .o = &o, .src = &src, .name = "local", .t = t,
			     .n_targets = o.targets / 4, .seconds = MAX(o.seconds / 3, o.period * 3) };
	if (run_phase(&ph, &src) < 0)
		goto out;
	ph = (struct phase){ .o = &o, .src = &src, .name = "local", .t = t, .n_targets = o.targets,
			     .seconds = o.seconds };
	if (run_phase(&ph, &src) < 0)
		goto out;
	double local_rss = ph.rss_max;
	ph = (struct phase){ .o = &o, .src = &src, .peer = addr, .name = "peer", .t = t,
			     .n_targets = o.targets, .seconds = o.seconds,
			     .rss_limit = local_rss + PEER_CACHE_MIB + LINK_MIB * o.targets };
	r = run_phase(&ph, &rx);
out:
	for (unsigned i = 0; i < o.targets; i++)
		if (t[i].w.pid > 0)
			wl_stop(&t[i].w);
	pd_cleanup(&src);
	pd_cleanup(&rx);
	return r < 0 ? 1 : 0;
}
