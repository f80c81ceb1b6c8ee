// SPDX-License-Identifier: GPL-2.0-only
/*
 * Checkpoint figures through the real daemon and client, each printed
 * beside a reference measured in the same run (medians of several runs):
 *
 *  - full checkpoint of 1 GiB of mixed memory (a third each zero, text,
 *    random) to the local store, against single-thread zstd level 1 over
 *    the same kind of pages in this process (goal: >= 1 GB/s, and faster
 *    than the reference);
 *  - incremental checkpoint of that 1 GiB process with 1 % of its pages
 *    written since the last one: the pause (goal: <= 5 ms) and total;
 *  - the idle daemon: RSS (goal < 10 MiB) and CPU ticks over 2 s, before
 *    any work and again after untracking everything;
 *  - daemon RSS while tracking the 1 GiB process, after its checkpoints
 *    (goal: under 16 MiB per tracked GiB).
 *
 *   bench-checkpoint [--quick] [--reps N]  (--quick: 64 MiB, one run, smoke test)
 *   BENCH_CONFIG="zstd_level = -3" bench-checkpoint   (daemon config text)
 *
 * Every run is printed, then the medians: this VM's figures vary from run
 * to run (seen here: full checkpoints of 0.85-1.5 s for the same work).
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "bench-report.h"
#include "bench.h"
#include "pagegen.h"
#include "wpmigd-harness.h"
#include "basic/util.h"

/* The workload's mix (tests/pagegen.h): a third each zero, text, random. */
static void fill_mixed(uint8_t *buf, size_t len)
{
	uint64_t s = 42;

	for (size_t o = 0; o < len; o += 4096)
		pg_fill(buf + o, (int)(pg_rand(&s) % 3), &s);
}

/* Single-thread zstd level 1 in 1 MiB chunks: GB/s of input. */
static double zstd_reference(const uint8_t *buf, size_t len)
{
	size_t cap = ZSTD_compressBound(1 << 20);
	void *out = malloc(cap);
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	uint64_t t0 = now_ns(), total = 0;

	for (size_t o = 0; o < len; o += 1 << 20)
		total += ZSTD_compressCCtx(cc, out, cap, buf + o, 1 << 20, 1);
	double s = (double)(now_ns() - t0) / 1e9;
	ZSTD_freeCCtx(cc);
	free(out);
	return (double)len / s / 1e9 + 0 * (double)total;
}

static int checkpoint(struct wpmigd *d, pid_t pid, const char *set, double *pause_ms,
		      double *duration_ms, uint64_t *bytes)
{
	char p[16], *out = NULL;
	json_object *o, *v;

	snprintf(p, sizeof(p), "%d", (int)pid);
	int rc = CTL(d, &out, NULL, "--json", "checkpoint", p, "--set", set);
	o = rc == 0 ? json_tokener_parse(out) : NULL;
	free(out);
	if (!o)
		return -EIO;
	json_object_object_get_ex(o, "pause_ms", &v);
	*pause_ms = json_object_get_double(v);
	json_object_object_get_ex(o, "duration_ms", &v);
	*duration_ms = json_object_get_double(v);
	json_object_object_get_ex(o, "bytes", &v);
	*bytes = json_object_get_uint64(v);
	json_object_put(o);
	return 0;
}

static long cpu_ticks(pid_t pid)
{
	char path[64], *text = NULL;
	unsigned long ut = 0, st = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_full_file(path, &text, NULL) == 0) {
		char *p = strrchr(text, ')');
		if (p)
			sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
	}
	free(text);
	return (long)(ut + st);
}

static void report(size_t mib, const double *full, const double *ref, int runs,
		   const double *pause, int inc_runs, long rss, long ticks, long rss_after,
		   long ticks_after, long rss_tracking)
{
	const char *sec = "The daemon (bench-checkpoint)";
	double idle[2] = { rss / 1024.0, rss_after / 1024.0 }, cpu[2] = { (double)ticks,
									   (double)ticks_after };
	double tracking = rss_tracking / 1024.0;
	char what[128], target[32];

	snprintf(what, sizeof(what), "full checkpoint of %zu MiB mixed memory", mib);
	brep_row(&(struct brep_row){ .id = "daemon.full", .section = sec, .what = what,
				     .unit = "GB/s", .v = full, .n = (unsigned)runs,
				     .ref = "zstd level 1, one thread, in this process",
				     .ref_unit = "GB/s", .ref_v = ref, .ref_n = (unsigned)runs,
				     .target = ">= 1" });
	snprintf(what, sizeof(what), "increment of %zu MiB, 1 %% written: pause", mib);
	brep_row(&(struct brep_row){ .id = "daemon.inc", .section = sec, .what = what,
				     .unit = "ms", .v = pause, .n = (unsigned)inc_runs,
				     .target = "<= 2" });
	brep_row(&(struct brep_row){ .id = "daemon.idle_rss", .section = sec,
				     .what = "idle daemon RSS (at start, after untracking everything)",
				     .unit = "MiB", .v = idle, .n = 2, .target = "< 10" });
	brep_row(&(struct brep_row){ .id = "daemon.idle_cpu", .section = sec,
				     .what = "idle daemon CPU ticks in 2 s (at start, after untracking)",
				     .unit = "ticks", .v = cpu, .n = 2, .target = "<= 0" });
	snprintf(what, sizeof(what), "daemon RSS tracking %zu MiB after its checkpoints", mib);
	/* the goal: idle under 10 MiB, plus under 16 MiB per tracked GiB */
	snprintf(target, sizeof(target), "< %.0f", 10 + 16.0 * (double)mib / 1024);
	brep_row(&(struct brep_row){ .id = "daemon.tracking_rss", .section = sec, .what = what,
				     .unit = "MiB", .v = &tracking, .n = 1, .target = target });
}

int main(int argc, char **argv)
{
	bool quick = argc > 1 && !strcmp(argv[1], "--quick");
	size_t mib = quick ? 64 : 1024;
	int runs = quick ? 1 : 5, inc_runs = quick ? 1 : 5;

	if (argc > 2 && !strcmp(argv[1], "--reps"))
		runs = inc_runs = MIN(MAX(atoi(argv[2]), 1), 5);
	double full[5], ref[5], pause[5], total[5];
	char size[16], set[32];
	uint64_t bytes = 0;
	struct wpmigd d = { 0 };
	struct wl w = { 0 };

	require_tracking();
	if (wpmigd_start(&d, getenv("BENCH_CONFIG") ? getenv("BENCH_CONFIG") : "", NULL) < 0)
		return 1;
	usleep(200000);
	long rss = proc_rss_kib(d.pid), t0 = cpu_ticks(d.pid);
	sleep(2);
	long ticks = cpu_ticks(d.pid) - t0;

	uint8_t *buf = malloc(mib << 20);
	fill_mixed(buf, mib << 20);
	snprintf(size, sizeof(size), "%zuM", mib);
	const char *const args[] = { "--anon", size, "--populate", "100", NULL };
	if (wl_start(&w, args) < 0)
		return 1;
	for (int i = 0; i < runs; i++) {
		double p, dur;
		ref[i] = zstd_reference(buf, mib << 20);
		snprintf(set, sizeof(set), "full-%d", i);
		if (checkpoint(&d, w.pid, set, &p, &dur, &bytes) < 0)
			return 1;
		full[i] = (double)(mib << 20) / (dur / 1e3) / 1e9;
		printf("  run %d: reference %.2f GB/s, checkpoint %.0f ms = %.2f GB/s\n", i + 1,
		       ref[i], dur, full[i]);
	}
	free(buf);
	uint64_t pages = (mib << 20) / 4096;
	for (int i = 0; i < inc_runs; i++) {
		if (wl_cmd(&w, NULL, 0, "write anon %llu %d", (unsigned long long)(pages / 100), i + 1) < 0 ||
		    checkpoint(&d, w.pid, set, &pause[i], &total[i], &bytes) < 0)
			return 1;
	}
	long rss_tracking = proc_rss_kib(d.pid);
	char p[16];
	snprintf(p, sizeof(p), "%d", (int)w.pid);
	if (CTL(&d, NULL, NULL, "untrack", p) != 0)
		return 1;
	usleep(200000);
	long rss_after = proc_rss_kib(d.pid), t1 = cpu_ticks(d.pid);
	sleep(2);
	long ticks_after = cpu_ticks(d.pid) - t1;
	report(mib, full, ref, runs, pause, inc_runs, rss, ticks, rss_after, ticks_after,
	       rss_tracking);
	double f = median(full, runs), r = median(ref, runs);
	printf("full checkpoint of %zu MiB mixed memory: %.2f GB/s (goal >= 1 GB/s); "
	       "single-thread zstd -1 reference: %.2f GB/s (ratio %.2fx)\n", mib, f, r, f / r);
	double pause_med = median(pause, inc_runs); /* sorts pause[] */
	printf("incremental checkpoint, 1%% of %zu MiB written: pause %.2f ms (goal <= 5 ms), "
	       "max %.2f ms, total %.1f ms, median of %d (the distribution: bench-pause)\n", mib,
	       pause_med, pause[inc_runs - 1], median(total, inc_runs), inc_runs);
	printf("idle daemon: RSS %ld KiB (goal < 10240), %ld CPU ticks in 2 s; after "
	       "untracking everything: RSS %ld KiB, %ld ticks in 2 s\n", rss, ticks, rss_after,
	       ticks_after);
	printf("daemon tracking %zu MiB after its checkpoints: RSS %ld KiB (goal < %zu KiB)\n",
	       mib, rss_tracking, 16384 * mib / 1024);
	wl_stop(&w);
	wpmigd_stop(&d, 5000);
	wpmigd_cleanup(&d);
	return rss < 10240 && ticks == 0 && rss_after < 10240 && ticks_after == 0 ? 0 : 1;
}
