// SPDX-License-Identifier: GPL-2.0-only
/*
 * Checkpoint figures over sizes, contents and written fractions, through
 * the real daemon and client (for the performance report; medians of
 * --reps, each beside a reference from the same run):
 *
 *   full     full checkpoint of the workload at each size (--sizes, MiB;
 *            default 256, 1024, 4096), mixed pages (a third each zero,
 *            text-like, random) and all random: GB/s against one thread of
 *            zstd at the level in use on the same kind of pages
 *            (bench-machine), the pause, bytes stored
 *   written  increments of the 1 GiB process after 0.1, 1, 10 and 50 % of
 *            its pages were written (random content): pause and bytes
 *            stored; and with a thread writing all the time, the pause
 *            against the pages the frozen pass found
 *   restore  restore pause against the pages that differ (0 .. 10 %)
 *   memory   daemon RSS while tracking each size: checkpoints into the
 *            local store; streamed to a peer with the delta cache
 *            (peer_cache = 64M, both ends) and without (peer_cache = 0);
 *            after 20 more increments, and after 20 more again: memory may
 *            warm up to a plateau, it must not grow with traffic
 *   snapshot gcore (gdb) and, with a criu >= 4.0 on PATH, CRIU's dump of
 *            the same process, up to 1 GiB: how long each stopped it (the
 *            process's own ticker) and the image size, beside a wpmig full
 *            checkpoint measured the same way (bench-snapshot.c)
 *
 *   bench-scale [--quick] [--reps N] [--sizes MIB,...] [PART...]
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench-daemon.h"
#include "bench-report.h"
#include "bench-snapshot.h"
#include "bench.h"
#include "peer-harness.h"
#include "basic/util.h"

#define MAX_REPS 9
#define PG 4096.0
#define MB (1024.0 * 1024.0)
#define MORE_INCREMENTS 20

enum part { P_FULL, P_WRITTEN, P_RESTORE, P_MEMORY, P_SNAPSHOT, N_PARTS };
static const char *const part_names[N_PARTS] = { "full", "written", "restore", "memory",
						 "snapshot" };

struct opts {
	bool quick, part[N_PARTS];
	unsigned reps, n_sizes, sizes[4];
	char key[192];
	char tmp[64]; /* scratch for cores and CRIU images */
};

/* The process at one size, and the daemon checkpointing it. */
struct subject {
	const struct opts *o;
	struct wpmigd *d;
	struct wl w;
	unsigned mib;
	bool random;
	uint64_t seed;
};

static const char *content(const struct subject *s)
{
	return s->random ? "random" : "mixed";
}

static int subject_start(struct subject *s)
{
	char size[32];
	const char *args[] = { "--anon", size, "--populate", "100", s->random ? "--random" : NULL,
			       NULL };
	uint64_t t0 = now_ns();
	int r;

	snprintf(size, sizeof(size), "%uM", s->mib);
	r = wl_start(&s->w, args);
	if (r < 0)
		fprintf(stderr, "workload of %u MiB: %s\n", s->mib, strerror(-r));
	else
		printf("\n%u MiB of %s pages (workload %d, filled in %.1f s)\n", s->mib, content(s),
		       (int)s->w.pid, ns_to_ms(now_ns() - t0) / 1e3);
	return r;
}

static int untrack(struct wpmigd *d, pid_t pid)
{
	char p[16];

	snprintf(p, sizeof(p), "%d", (int)pid);
	return CTL(d, NULL, NULL, "untrack", p) == 0 ? 0 : -EIO;
}

static int write_pages(struct subject *s, uint64_t n)
{
	return n ? wl_cmd(&s->w, NULL, 0, "write anon %llu %llu", (unsigned long long)n,
			  (unsigned long long)++s->seed) : 0;
}

static void print_runs(const char *what, const double *v, unsigned n, const char *unit)
{
	double c[MAX_REPS] = { 0 };

	memcpy(c, v, n * sizeof(*v));
	double m = median(c, (int)n);
	printf("  %-58s %9.3f %-4s (min %.3f, max %.3f)\n", what, m, unit, c[0], c[n - 1]);
}

/* ---- full ---- */

static int part_full(struct subject *s, double *stored_mib)
{
	unsigned n = s->o->reps;
	double gbs[MAX_REPS] = { 0 }, pause[MAX_REPS] = { 0 }, pct[MAX_REPS] = { 0 }, mib[MAX_REPS] = { 0 };
	char set[64], id[64], what[128], ref[32];
	struct bench_ck c;

	for (unsigned i = 0; i < n; i++) {
		snprintf(set, sizeof(set), "full-%u-%s-%u", s->mib, content(s), i);
		if (bench_checkpoint(s->d, s->w.pid, set, NULL, &c) < 0)
			return -1;
		gbs[i] = (double)s->mib * MB / (c.duration_ms * 1e6);
		pause[i] = c.pause_ms;
		pct[i] = 100.0 * (double)c.bytes / ((double)s->mib * MB);
		mib[i] = (double)c.bytes / MB;
		bench_rm(s->d, set);
	}
	snprintf(what, sizeof(what), "full checkpoint, %u MiB %s", s->mib, content(s));
	print_runs(what, gbs, n, "GB/s");
	print_runs("  its pause", pause, n, "ms");
	print_runs("  bytes stored, % of the process", pct, n, "%");
	snprintf(id, sizeof(id), "ckpt.full.%u.%s", s->mib, content(s));
	snprintf(ref, sizeof(ref), "ref.zstd.%s", content(s));
	brep_row(&(struct brep_row){
		.id = id, .section = "Checkpoint to the local store", .what = what, .unit = "GB/s",
		.v = gbs, .n = n, .ref = "zstd at the level in use, one thread, same kind of pages",
		.ref_id = ref, .target = s->random ? NULL : "ratio >= 1.8",
		.note = "both cores; the limit is 2x the one-thread reference" });
	brep_point("throughput", content(s), s->mib / 1024.0, gbs, n);
	snprintf(id, sizeof(id), "ckpt.full_pause.%u.%s", s->mib, content(s));
	snprintf(what, sizeof(what), "full checkpoint, %u MiB %s: pause", s->mib, content(s));
	brep_row(&(struct brep_row){ .id = id, .section = "Checkpoint to the local store",
				     .what = what, .unit = "ms", .v = pause, .n = n });
	snprintf(id, sizeof(id), "ckpt.full_bytes.%u.%s", s->mib, content(s));
	snprintf(what, sizeof(what), "full checkpoint, %u MiB %s: bytes stored", s->mib,
		 content(s));
	brep_row(&(struct brep_row){ .id = id, .section = "Checkpoint to the local store",
				     .what = what, .unit = "% of raw", .v = pct, .n = n });
	*stored_mib = median(mib, (int)n);
	return 0;
}

/* ---- written ---- */

static int increments(struct subject *s, const char *set, double pct)
{
	uint64_t pages = (uint64_t)s->mib * 256, want = (uint64_t)((double)pages * pct / 100);
	unsigned n = s->o->reps;
	double pause[MAX_REPS] = { 0 }, stored[MAX_REPS] = { 0 }, dur[MAX_REPS] = { 0 };
	char id[64], what[128];
	struct bench_ck c;

	for (unsigned i = 0; i < n; i++) {
		if (write_pages(s, want) < 0 || bench_checkpoint(s->d, s->w.pid, set, NULL, &c) < 0)
			return -1;
		if (!c.parent)
			fprintf(stderr, "increment of %s was full\n", set);
		pause[i] = c.pause_ms;
		stored[i] = (double)c.bytes / MB;
		dur[i] = c.duration_ms;
	}
	snprintf(what, sizeof(what), "increment, %g %% of %u MiB written (%llu pages): pause", pct,
		 s->mib, (unsigned long long)want);
	print_runs(what, pause, n, "ms");
	print_runs("  bytes stored", stored, n, "MiB");
	print_runs("  checkpoint duration", dur, n, "ms");
	snprintf(id, sizeof(id), "ckpt.inc.%g.%u", pct, s->mib);
	brep_row(&(struct brep_row){
		.id = id, .section = "Checkpoint to the local store", .what = what, .unit = "ms",
		.v = pause, .n = n, .target = pct == 1 && s->mib == 1024 ? "<= 2" : NULL,
		.note = "the target idle: written pages are copied by live passes before the freeze" });
	snprintf(id, sizeof(id), "ckpt.inc_bytes.%g.%u", pct, s->mib);
	snprintf(what, sizeof(what), "increment, %g %% of %u MiB written: bytes stored", pct,
		 s->mib);
	brep_row(&(struct brep_row){ .id = id, .section = "Checkpoint to the local store",
				     .what = what, .unit = "MiB", .v = stored, .n = n,
				     .note = "written pages hold random bytes (incompressible)" });
	brep_point("pause", "idle target, pages written before the checkpoint", (double)want,
		   pause, n);
	brep_point("bytes", "random pages written", pct, stored, n);
	return 0;
}

/* A thread of the target writes all the time: the pause against what the
 * frozen pass finds. */
static int writing_target(struct subject *s, const char *set)
{
	unsigned n = s->o->quick ? 2 : 8;
	struct bench_ck c;

	if (wl_cmd(&s->w, NULL, 0, "writer start") < 0)
		return -1;
	printf("  target writing all the time (pause / pages in the frozen pass):");
	for (unsigned i = 0; i < n; i++) {
		if (bench_checkpoint(s->d, s->w.pid, set, NULL, &c) < 0)
			break;
		printf(" %.2f/%llu", c.pause_ms, (unsigned long long)c.final_pages);
		brep_point("pause", "target writing all the time, pages in the frozen pass",
			   (double)c.final_pages, &c.pause_ms, 1);
	}
	printf("\n");
	return wl_cmd(&s->w, NULL, 0, "writer stop");
}

static int part_written(struct subject *s)
{
	static const double pcts[] = { 0.1, 1, 10, 50 };
	char set[64];
	struct bench_ck c;

	snprintf(set, sizeof(set), "inc-%u", s->mib);
	if (bench_checkpoint(s->d, s->w.pid, set, NULL, &c) < 0)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(pcts); i++)
		if (increments(s, set, pcts[i]) < 0)
			return -1;
	int r = writing_target(s, set);
	bench_rm(s->d, set);
	return r;
}

/* Just 1 % (the other sizes). */
static int part_one_percent(struct subject *s)
{
	char set[64];
	struct bench_ck c;

	snprintf(set, sizeof(set), "inc-%u", s->mib);
	int r = bench_checkpoint(s->d, s->w.pid, set, NULL, &c) < 0 ? -1 : increments(s, set, 1);
	bench_rm(s->d, set);
	return r;
}

/* ---- restore ---- */

static int part_restore(struct subject *s)
{
	static const double pcts[] = { 0, 0.1, 1, 10 };
	uint64_t pages = (uint64_t)s->mib * 256;
	unsigned n = s->o->reps;
	char set[64], id[64], what[128];
	struct bench_ck c;
	struct bench_rs rs;

	snprintf(set, sizeof(set), "rst-%u", s->mib);
	if (bench_checkpoint(s->d, s->w.pid, set, NULL, &c) < 0)
		return -1;
	for (size_t k = 0; k < ARRAY_SIZE(pcts); k++) {
		uint64_t want = (uint64_t)((double)pages * pcts[k] / 100);
		double pause[MAX_REPS] = { 0 }, written[MAX_REPS] = { 0 };

		for (unsigned i = 0; i < n; i++) {
			if (write_pages(s, want) < 0 ||
			    bench_restore(s->d, s->w.pid, set, c.generation, &rs) < 0)
				return -1;
			pause[i] = rs.pause_ms;
			written[i] = (double)rs.pages;
		}
		snprintf(what, sizeof(what), "restore of %u MiB, %g %% differing (%llu pages): pause",
			 s->mib, pcts[k], (unsigned long long)want);
		print_runs(what, pause, n, "ms");
		print_runs("  pages written back", written, n, "");
		snprintf(id, sizeof(id), "restore.%g.%u", pcts[k], s->mib);
		const char *target = s->mib != 1024 ? NULL : pcts[k] == 0 ? "<= 2"
							  : pcts[k] == 1 ? "<= 5" : NULL;
		brep_row(&(struct brep_row){ .id = id, .section = "Restore", .what = what,
					     .unit = "ms", .v = pause, .n = n, .target = target });
		brep_point("restore", "restore pause", (double)want, pause, n);
	}
	bench_rm(s->d, set);
	return 0;
}

/* ---- memory ---- */

struct variant {
	const char *name, *id, *conf; /* conf: NULL for the local store */
	double cache_mib;
};

static const struct variant variants[] = {
	{ "checkpoints to the local store", "local", NULL, 0 },
	{ "streamed to a peer, delta cache 64 MiB", "peer-cache", "peer_cache = 64M", 64 },
	{ "streamed to a peer, no delta cache", "peer-nocache", "peer_cache = 0", 0 },
};

/* A fresh daemon (and receiver) tracks the process: RSS after a full and
 * three increments of 1 %, after MORE_INCREMENTS more, and MORE_INCREMENTS
 * more again. */
static int memory_variant(struct subject *s, const struct variant *v)
{
	struct pd src = { 0 }, rx = { 0 };
	char addr[64], set[64], id[64], what[160], target[64], first[32];
	const char *peer = v->conf ? addr : NULL;
	uint64_t one = (uint64_t)s->mib * 256 / 100;
	unsigned more = s->o->quick ? 3 : MORE_INCREMENTS;
	struct bench_ck c;
	int r = 0;

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
	if ((v->conf && pd_start(&rx, s->o->key, addr, v->conf, NULL) < 0) ||
	    pd_start(&src, v->conf ? s->o->key : NULL, NULL, v->conf ? v->conf : "", NULL) < 0) {
		pd_cleanup(&src);
		pd_cleanup(&rx);
		return -1;
	}
	double idle = (double)pd_rss(&src) / 1024;
	snprintf(set, sizeof(set), "mem-%u", s->mib);
	for (unsigned i = 0; r == 0 && i < 4; i++)
		r = write_pages(s, i ? one : 0) < 0 ? -1
			: bench_checkpoint(&src.d, s->w.pid, set, peer, &c);
	double rss = (double)pd_rss(&src) / 1024, after[2];
	for (unsigned k = 0; k < 2; k++) {
		for (unsigned i = 0; r == 0 && i < more; i++)
			r = write_pages(s, one) < 0 ? -1
				: bench_checkpoint(&src.d, s->w.pid, set, peer, &c);
		after[k] = (double)pd_rss(&src) / 1024;
	}
	double rx_rss = v->conf ? (double)pd_rss(&rx) / 1024 : 0;
	if (r == 0)
		r = untrack(&src.d, s->w.pid);
	pd_cleanup(&src);
	pd_cleanup(&rx);
	if (r < 0)
		return r;
	double gib = s->mib / 1024.0;
	printf("  daemon RSS tracking %u MiB, %s: %.1f MiB (idle %.1f), after %u and %u more "
	       "increments %.1f and %.1f MiB%s", s->mib, v->name, rss, idle, more,
	       2 * more, after[0], after[1], v->conf ? "" : "\n");
	if (v->conf)
		printf("; receiver %.1f MiB\n", rx_rss);
	snprintf(id, sizeof(id), "mem.%s.%u", v->id, s->mib);
	snprintf(what, sizeof(what), "daemon RSS tracking %u MiB, %s", s->mib, v->name);
	snprintf(target, sizeof(target), "<= %.0f", 10 + 16 * gib + v->cache_mib);
	brep_row(&(struct brep_row){
		.id = id, .section = "Memory", .what = what, .unit = "MiB", .v = &rss, .n = 1,
		.ref = "the same daemon idle", .ref_unit = "MiB", .ref_v = &idle, .ref_n = 1,
		.target = target,
		.note = "goal: under 10 MiB idle, 16 MiB per tracked GiB, plus any delta cache" });
	brep_point("rss", v->name, gib, &rss, 1);
	snprintf(id, sizeof(id), "mem.growth.%s.%u", v->id, s->mib);
	snprintf(first, sizeof(first), "after the first %u", more);
	snprintf(what, sizeof(what), "daemon RSS tracking %u MiB, %s, after %u more increments",
		 s->mib, v->name, 2 * more);
	brep_row(&(struct brep_row){
		.id = id, .section = "Memory", .what = what, .unit = "MiB", .v = &after[1], .n = 1,
		.ref = first, .ref_unit = "MiB", .ref_v = &after[0], .ref_n = 1,
		.target = "ratio <= 1.02",
		.note = "memory must not grow with traffic: it may warm up (frame buffers, the delta "
			"cache up to peer_cache), then stays" });
	return 0;
}

static int part_memory(struct subject *s)
{
	for (size_t i = 0; i < ARRAY_SIZE(variants); i++)
		if (memory_variant(s, &variants[i]) < 0)
			return -1;
	return 0;
}

/* ---- snapshot ---- */

static void snap_rows(const struct subject *s, const char *tool, const struct snap *t,
		      double wp_stall, double wp_mib)
{
	char id[64], what[128], ref[96];
	double tool_mib = (double)t->bytes / MB;

	snprintf(id, sizeof(id), "snap.stop.%s.%u", tool, s->mib);
	snprintf(what, sizeof(what), "%u MiB mixed, full checkpoint: process stopped", s->mib);
	snprintf(ref, sizeof(ref), "%s of the same process", tool);
	brep_row(&(struct brep_row){
		.id = id, .section = "Against gcore and CRIU", .what = what, .unit = "ms",
		.v = &wp_stall, .n = 1, .ref = ref, .ref_unit = "ms", .ref_v = &t->stall_ms,
		.ref_n = 1, .note = "as the process saw it: the longest gap of a thread waking every ms" });
	snprintf(id, sizeof(id), "snap.size.%s.%u", tool, s->mib);
	snprintf(what, sizeof(what), "%u MiB mixed, full checkpoint: image size", s->mib);
	brep_row(&(struct brep_row){ .id = id, .section = "Against gcore and CRIU", .what = what,
				     .unit = "MiB", .v = &wp_mib, .n = 1, .ref = ref,
				     .ref_unit = "MiB", .ref_v = &tool_mib, .ref_n = 1 });
}

/* wpmig's full checkpoint of the untracked process, with its ticker. */
static int wpmig_stall(struct subject *s, double *stall, double *mib)
{
	char reply[64], set[64];
	struct bench_ck c;

	snprintf(set, sizeof(set), "snap-%u", s->mib);
	if (wl_cmd(&s->w, NULL, 0, "ticker start") < 0 ||
	    bench_checkpoint(s->d, s->w.pid, set, NULL, &c) < 0 ||
	    wl_cmd(&s->w, reply, sizeof(reply), "ticker stop") < 0)
		return -1;
	*stall = strtod(reply + 3, NULL) / 1e3;
	*mib = (double)c.bytes / MB;
	bench_rm(s->d, set);
	printf("  wpmig full checkpoint: process stopped %.1f ms (its pause %.2f ms), %.1f MiB "
	       "stored\n", *stall, c.pause_ms, *mib);
	return untrack(s->d, s->w.pid);
}

static void part_snapshot(struct subject *s)
{
	char why[256], id[64], gwhat[64], cwhat[96], iwhat[96];
	struct snap g = { 0 }, cr = { 0 };
	double stall, mib;

	snprintf(gwhat, sizeof(gwhat), "%u MiB mixed: gcore of the same process", s->mib);
	snprintf(cwhat, sizeof(cwhat), "%u MiB mixed: CRIU dump --leave-running", s->mib);
	snprintf(iwhat, sizeof(iwhat), "%u MiB mixed: CRIU incremental dump (pre-dump --track-mem)",
		 s->mib);
	if (wpmig_stall(s, &stall, &mib) < 0)
		return;
	snprintf(id, sizeof(id), "snap.gcore.%u", s->mib);
	if (snap_gcore(&s->w, s->o->tmp, &g) == 0) {
		printf("  gcore: process stopped %.1f ms (gcore ran %.1f ms), core %.1f MiB\n",
		       g.stall_ms, g.wall_ms, (double)g.bytes / MB);
		snap_rows(s, "gcore", &g, stall, mib);
	} else {
		printf("  gcore: %s\n", g.why);
		brep_skip(id, "Against gcore and CRIU", gwhat, g.why);
	}
	snprintf(id, sizeof(id), "snap.criu.%u", s->mib);
	if (snap_criu_usable(why, sizeof(why)) < 0) {
		printf("  CRIU: %s\n", why);
		brep_skip(id, "Against gcore and CRIU", cwhat, why);
		return;
	}
	if (snap_criu(&s->w, s->o->tmp, &cr) < 0) {
		printf("  CRIU: %s\n", cr.why);
		brep_skip(id, "Against gcore and CRIU", cwhat, cr.why);
		return;
	}
	printf("  %s dump --leave-running: process stopped %.1f ms (its stats-dump: frozen %.1f "
	       "ms), pages %.1f MiB\n", why, cr.stall_ms, cr.own_ms, (double)cr.bytes / MB);
	brep_fact("criu", "%s", why);
	snap_rows(s, "criu", &cr, stall, mib);
	snprintf(id, sizeof(id), "snap.criu_own.%u", s->mib);
	char what[96];
	snprintf(what, sizeof(what), "%u MiB mixed: CRIU's own frozen_time (stats-dump)", s->mib);
	brep_row(&(struct brep_row){ .id = id, .section = "Against gcore and CRIU", .what = what,
				     .unit = "ms", .v = &cr.own_ms, .n = 1 });
	int r = snap_criu_incremental(&s->w, s->o->tmp, why, sizeof(why));
	printf("  CRIU incremental: %s\n", why);
	snprintf(id, sizeof(id), "snap.criu_inc.%u", s->mib);
	if (r < 0)
		brep_skip(id, "Against gcore and CRIU", iwhat, why);
}

/* ---- driver ---- */

static int one_size(const struct opts *o, struct wpmigd *d, unsigned mib, bool random)
{
	struct subject s = { .o = o, .d = d, .mib = mib, .random = random };
	double stored;
	int r;

	if (subject_start(&s) < 0)
		return -1;
	if (!random && o->part[P_SNAPSHOT] && mib <= 1024)
		part_snapshot(&s);
	r = o->part[P_FULL] ? part_full(&s, &stored) : 0;
	if (r == 0 && !random && (mib == 1024 || o->quick) && o->part[P_WRITTEN])
		r = part_written(&s);
	else if (r == 0 && !random && o->part[P_WRITTEN])
		r = part_one_percent(&s);
	if (r == 0 && !random && (mib == 1024 || o->quick) && o->part[P_RESTORE])
		r = part_restore(&s);
	if (r == 0 && !random && o->part[P_MEMORY]) {
		untrack(d, s.w.pid); /* the memory variants track it in daemons of their own */
		r = part_memory(&s);
	}
	wl_stop(&s.w);
	return r;
}

static int parse(int argc, char **argv, struct opts *o)
{
	bool any = false;

	*o = (struct opts){ .reps = 3, .n_sizes = 3, .sizes = { 256, 1024, 4096 } };
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			o->quick = true;
			o->reps = 1;
			o->n_sizes = 1;
			o->sizes[0] = 64;
		} else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
			int n = atoi(argv[++i]); /* MIN, MAX: arguments evaluated twice */
			o->reps = (unsigned)MIN(MAX(n, 1), MAX_REPS);
		} else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
			o->n_sizes = 0;
			for (char *t = strtok(argv[++i], ","); t && o->n_sizes < 4; t = strtok(NULL, ","))
				o->sizes[o->n_sizes++] = (unsigned)MAX(atoi(t), 16);
		} else {
			size_t k = 0;
			while (k < N_PARTS && strcmp(argv[i], part_names[k]))
				k++;
			if (k == N_PARTS)
				return -1;
			o->part[k] = any = true;
		}
	}
	for (size_t k = 0; !any && k < N_PARTS; k++)
		o->part[k] = true;
	return 0;
}

int main(int argc, char **argv)
{
	struct wpmigd d = { 0 };
	struct opts o;
	int r = 0;

	if (parse(argc, argv, &o) < 0) {
		fprintf(stderr, "usage: bench-scale [--quick] [--reps N] [--sizes MIB,...] "
				"[full|written|restore|memory|snapshot]...\n");
		return 2;
	}
	require_tracking();
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(o.tmp, sizeof(o.tmp), "/var/tmp/wpmig-bench-scale.XXXXXX");
	if (!mkdtemp(o.tmp) || pk_make(o.key, sizeof(o.key)) < 0 || wpmigd_start(&d, "", NULL) < 0)
		return 1;
	printf("bench-scale: medians of %u; sizes", o.reps);
	for (unsigned i = 0; i < o.n_sizes; i++)
		printf(" %u", o.sizes[i]);
	printf(" MiB\n");
	for (int random = 0; r == 0 && random < 2; random++)
		for (unsigned i = 0; r == 0 && i < o.n_sizes; i++)
			if (!random || o.part[P_FULL])
				r = one_size(&o, &d, o.sizes[i], random);
	wpmigd_stop(&d, 10000);
	wpmigd_cleanup(&d);
	rmdir(o.tmp);
	return r < 0 ? 1 : 0;
}
