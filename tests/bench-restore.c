// SPDX-License-Identifier: GPL-2.0-only
/*
 * Restore figures through the real daemon and client (medians of several
 * runs), each beside a reference measured in the same run:
 *
 *  - the README demo's restore: a workload of 256 MiB anon, 64 MiB memfd
 *    and 16 MiB private file, 70 % populated, zeroes its anon region, then
 *    the generation is put back (about 123 MiB rewritten): the pause
 *    (goal: <= 30 ms);
 *  - rollback of a 1 GiB process where 1 % of the pages differ (goal:
 *    pause <= 5 ms), and where nothing changed (goal: <= 2 ms);
 *  - issue 13's cases: 6 pages of a 44 MiB process, and a 256 MiB
 *    process rolled back one generation where 658 pages differ;
 *  - the write-back rate while frozen, against process_vm_writev of as
 *    many scattered pages into another process's populated memory, in
 *    batches of 1024 iovecs, in the same run, of the same pages once more,
 *    and of the same source into as many other pages of that process
 *    (what costs is the kernel's first read of the daemon's source pages,
 *    not the target's: restore-write.c reads them once before the
 *    freeze), and this machine's page fault.
 *
 *   bench-restore [--quick] [--reps N] [--baseline BUILD_DIR] [--only issue|demo|rollback]
 *
 * --quick: small sizes, one run, goals not judged (a smoke test).
 * --baseline: run the same scenarios with another build's wpmigd and
 * wpmig-ctl too (e.g. main's), for a before/after in the same run.
 */
#include <errno.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "wpmigd-harness.h"
#include "basic/util.h"

struct rres {
	double pause_ms, duration_ms, write_ms, prepare_ms;
	double freeze_ms, scan_ms, threads_ms, thaw_ms; /* the rest of the pause */
	uint64_t pages, differing, since;
};

static int checkpoint(struct wpmigd *d, pid_t pid, const char *set, uint64_t *gen)
{
	char p[16], *out = NULL;
	json_object *o;

	snprintf(p, sizeof(p), "%d", (int)pid);
	if (CTL(d, &out, NULL, "--json", "checkpoint", p, "--set", set) != 0) {
		free(out);
		return -EIO;
	}
	o = json_tokener_parse(out);
	*gen = ju64(o, "generation");
	json_object_put(o);
	free(out);
	return 0;
}

static int restore(struct wpmigd *d, pid_t pid, const char *set, uint64_t gen, struct rres *r)
{
	char p[16], img[64], *out = NULL, *err = NULL;
	json_object *o;
	int rc;

	snprintf(p, sizeof(p), "%d", (int)pid);
	snprintf(img, sizeof(img), "%s/%llu", set, (unsigned long long)gen);
	rc = CTL(d, &out, &err, "--json", "restore", p, img);
	if (rc != 0) {
		fprintf(stderr, "restore: %s", err ? err : "");
		free(out);
		free(err);
		return -EIO;
	}
	o = json_tokener_parse(out);
	*r = (struct rres){ .pause_ms = jdbl(o, "pause_ms"), .duration_ms = jdbl(o, "duration_ms"),
			    .write_ms = jdbl(o, "write_ms"), .prepare_ms = jdbl(o, "prepare_ms"),
			    .freeze_ms = jdbl(o, "freeze_ms"), .scan_ms = jdbl(o, "scan_ms"),
			    .threads_ms = jdbl(o, "threads_ms"), .thaw_ms = jdbl(o, "thaw_ms"),
			    .pages = ju64(o, "pages"), .differing = ju64(o, "pages_differing"),
			    .since = ju64(o, "pages_written_since") };
	json_object_put(o);
	free(out);
	free(err);
	return 0;
}

/*
 * The reference: process_vm_writev of n pages, scattered like the ones
 * written back (every stride-th page), into a child's own populated memory
 * (not shared with us: no copy on write), 1024 iovecs a call; then the
 * same pages once more (a page the kernel has written just before costs
 * less: how much less is the machine's, see docs/restore.md).  GB/s.
 */
struct ref {
	double first_gbs, again_gbs, other_gbs;
};

static double writev_pages(pid_t pid, uint8_t *src, uint8_t *base, uint64_t n, uint64_t stride,
			   struct iovec *l, struct iovec *r)
{
	uint64_t t0 = now_ns();

	for (uint64_t i = 0; i < n; i += 1024) {
		uint64_t k = MIN(1024, n - i);

		for (uint64_t j = 0; j < k; j++) {
			l[j] = (struct iovec){ src + (i + j) * 4096, 4096 };
			r[j] = (struct iovec){ base + (i + j) * stride * 4096, 4096 };
		}
		if (process_vm_writev(pid, l, k, r, k, 0) != (ssize_t)(k * 4096))
			perror("process_vm_writev");
	}
	return (double)(n * 4096) / ((double)(now_ns() - t0) / 1e9) / 1e9;
}

static struct ref writev_reference(uint64_t n, uint64_t stride)
{
	/* Two sets of pages: the second between the first's, or after them. */
	uint64_t other = stride > 1 ? 4096 : n * 4096;
	uint64_t len = n * stride * 4096 + (stride > 1 ? 0 : other);
	uint8_t *src = malloc(n * 4096), *base = NULL;
	struct iovec *l = calloc(1024, sizeof(*l)), *r = calloc(1024, sizeof(*r));
	struct ref res = { 0 };
	int fds[2];
	pid_t pid;

	if (!src || !l || !r || pipe(fds) < 0)
		goto out;
	memset(src, 0x5a, n * 4096);
	pid = fork();
	if (pid == 0) {
		uint8_t *b = mmap(NULL, len, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (b != MAP_FAILED)
			memset(b, 1, len);
		if (write(fds[1], &b, sizeof(b)) != sizeof(b))
			_exit(1);
		pause();
		_exit(0);
	}
	if (read(fds[0], &base, sizeof(base)) == sizeof(base) && base != MAP_FAILED) {
		res.first_gbs = writev_pages(pid, src, base, n, stride, l, r);
		res.again_gbs = writev_pages(pid, src, base, n, stride, l, r);
		res.other_gbs = writev_pages(pid, src, base + other, n, stride, l, r);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(fds[0]);
	close(fds[1]);
out:
	free(src);
	free(l);
	free(r);
	return res;
}

/* This machine's page fault: the first write to each page of fresh
 * anonymous memory (no huge pages), us per page. */
static double fault_us(void)
{
	uint64_t len = 64ULL << 20, t0;
	uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		return 0;
	madvise(m, len, MADV_NOHUGEPAGE);
	t0 = now_ns();
	for (uint64_t o = 0; o < len; o += 4096)
		*(volatile uint8_t *)(m + o) = 1;
	double us = (double)(now_ns() - t0) / 1e3 / (double)(len / 4096);
	munmap(m, len);
	return us;
}

struct scen {
	const char *name;
	double goal_ms;
	double pause[32], write_gbs[32], ref_gbs[32], again_gbs[32], other_gbs[32], duration[32];
	uint64_t pages;
	int n;
};

static void report(struct scen *s, bool judge)
{
	if (!s->n)
		return;
	double p = median(s->pause, s->n), lo = s->pause[0], hi = s->pause[s->n - 1];
	double w = median(s->write_gbs, s->n), ref = median(s->ref_gbs, s->n);
	double again = median(s->again_gbs, s->n), other = median(s->other_gbs, s->n);
	double dur = median(s->duration, s->n);

	printf("  %-34s pause %7.2f ms (min %.2f, max %.2f)", s->name, p, lo, hi);
	if (judge && s->goal_ms)
		printf("  goal <= %.0f ms: %s", s->goal_ms, p <= s->goal_ms ? "met" : "MISSED");
	printf("\n    %llu pages written back; whole restore %.0f ms", (unsigned long long)s->pages,
	       dur);
	if (s->pages >= 64)
		printf("; write-back %.2f GB/s = %.2f us/page, ref process_vm_writev %.2f GB/s "
		       "= %.2f us/page (%.2fx), the same pages again %.2f us/page, "
		       "other pages from the same source %.2f us/page",
		       w, w > 0 ? 4.096 / w : 0, ref, ref > 0 ? 4.096 / ref : 0,
		       ref > 0 ? w / ref : 0, again > 0 ? 4.096 / again : 0,
		       other > 0 ? 4.096 / other : 0);
	printf("\n");
}

static void add(struct scen *s, const struct rres *r, uint64_t stride)
{
	s->pause[s->n] = r->pause_ms;
	s->duration[s->n] = r->duration_ms;
	s->write_gbs[s->n] = r->write_ms > 0 ? (double)r->pages * 4096 / r->write_ms / 1e6 : 0;
	struct ref ref = r->pages >= 64 ? writev_reference(r->pages, stride) : (struct ref){ 0 };

	s->ref_gbs[s->n] = ref.first_gbs;
	s->again_gbs[s->n] = ref.again_gbs;
	s->other_gbs[s->n] = ref.other_gbs;
	s->pages = r->pages;
	s->n++;
	printf("    run %d: pause %.2f ms, %llu pages (%llu differed, %llu written since), "
	       "write %.2f ms (freeze %.2f, scan %.2f, threads %.2f, thaw %.2f), prepare %.0f ms\n",
	       s->n, r->pause_ms, (unsigned long long)r->pages, (unsigned long long)r->differing,
	       (unsigned long long)r->since, r->write_ms, r->freeze_ms, r->scan_ms, r->threads_ms,
	       r->thaw_ms, r->prepare_ms);
}

static int start(struct wpmigd *d, struct wl *w, const char *const *args)
{
	if (wpmigd_start(d, "", NULL) < 0) {
		fprintf(stderr, "cannot start wpmigd\n");
		return -EIO;
	}
	if (wl_start(w, args) < 0) {
		fprintf(stderr, "cannot start the workload\n");
		return -EIO;
	}
	return 0;
}

static void stop(struct wpmigd *d, struct wl *w)
{
	wl_stop(w);
	wpmigd_stop(d, 10000);
	wpmigd_cleanup(d);
}

/* The README demo: the anon region zeroed, the generation put back. */
static void demo(int reps, bool quick, struct scen *s)
{
	const char *const big[] = { "--anon", "256M", "--memfd", "64M", "--file", "16M",
				    "--populate", "70", NULL };
	const char *const small[] = { "--anon", "16M", "--memfd", "4M", "--file", "1M",
				      "--populate", "70", NULL };
	struct wpmigd d = { 0 };
	struct wl w = { 0 };
	struct rres r;
	uint64_t gen;

	if (start(&d, &w, quick ? small : big) < 0 || checkpoint(&d, w.pid, "demo", &gen) < 0)
		goto out;
	for (int i = 0; i < reps; i++) {
		wl_cmd(&w, NULL, 0, "zero anon 0 %d", quick ? 4096 : 65536);
		if (restore(&d, w.pid, "demo", gen, &r) < 0)
			break;
		add(s, &r, 1);
	}
out:
	stop(&d, &w);
}

/* 1 GiB populated: 1 % of it rewritten, or nothing, then put back. */
static void rollback(int reps, bool quick, struct scen *one, struct scen *none)
{
	const char *const big[] = { "--anon", "1G", "--populate", "100", NULL };
	const char *const small[] = { "--anon", "64M", "--populate", "100", NULL };
	uint64_t pages = quick ? 16384 : 262144, gen;
	struct wpmigd d = { 0 };
	struct wl w = { 0 };
	struct rres r;

	if (start(&d, &w, quick ? small : big) < 0 || checkpoint(&d, w.pid, "big", &gen) < 0)
		goto out;
	for (int i = 0; i < reps; i++) {
		wl_cmd(&w, NULL, 0, "write anon %llu %d", (unsigned long long)(pages / 100), i + 1);
		if (restore(&d, w.pid, "big", gen, &r) < 0)
			break;
		add(one, &r, 100);
	}
	for (int i = 0; i < reps; i++) {
		if (restore(&d, w.pid, "big", gen, &r) < 0)
			break;
		add(none, &r, 1);
	}
out:
	stop(&d, &w);
}

/*
 * Issue 13's cases: n pages of a process with anon MiB rewritten after a
 * generation, a newer generation taken, and the older one put back.
 */
static void back_one(const char *anon, uint64_t n, int reps, struct scen *s)
{
	const char *const args[] = { "--anon", anon, "--populate", "100", NULL };
	struct wpmigd d = { 0 };
	struct wl w = { 0 };
	struct rres r;
	uint64_t gen, later;

	if (start(&d, &w, args) < 0 || checkpoint(&d, w.pid, "back", &gen) < 0)
		goto out;
	for (int i = 0; i < reps; i++) {
		wl_cmd(&w, NULL, 0, "write anon %llu %d", (unsigned long long)n, i + 1);
		if (checkpoint(&d, w.pid, "back", &later) < 0 ||
		    restore(&d, w.pid, "back", gen, &r) < 0)
			break;
		add(s, &r, 100); /* scattered, like 1 % of pages */
	}
out:
	stop(&d, &w);
}

static void run_all(const char *label, int reps, bool quick, const char *only)
{
	struct scen demo_s = { .name = "demo: 256 MiB anon zeroed", .goal_ms = 30 };
	struct scen one = { .name = "1 GiB, 1 % differs", .goal_ms = 5 };
	struct scen none = { .name = "1 GiB, nothing changed", .goal_ms = 2 };

	if (quick) {
		demo_s.name = "demo (quick): 16 MiB anon zeroed";
		one.name = "64 MiB, 1 % differs";
		none.name = "64 MiB, nothing changed";
	}
	struct scen few = { .name = "44 MiB, 6 pages differ" };
	struct scen back = { .name = "256 MiB, 658 pages, one gen back" };

	printf("%s\n", label);
	if (!quick && (!only || !strcmp(only, "issue"))) {
		printf(" issue 13's cases\n");
		back_one("44M", 6, reps, &few);
		back_one("256M", 658, reps, &back);
	}
	if (!only || !strcmp(only, "demo")) {
		printf(" demo\n");
		demo(reps, quick, &demo_s);
	}
	if (!only || !strcmp(only, "rollback")) {
		printf(" rollback\n");
		rollback(reps, quick, &one, &none);
	}
	printf(" medians of %d run(s):\n", reps);
	report(&few, !quick);
	report(&back, !quick);
	report(&demo_s, !quick);
	report(&one, !quick);
	report(&none, !quick);
}

static void loadavg(const char *when)
{
	char *t = NULL;

	if (read_full_file("/proc/loadavg", &t, NULL) == 0)
		printf("load average %s: %s", when, t);
	free(t);
}

int main(int argc, char **argv)
{
	bool quick = false;
	const char *baseline = NULL, *only = NULL;
	int reps = 5;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			quick = true;
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--baseline") && i + 1 < argc)
			baseline = argv[++i];
		else if (!strcmp(argv[i], "--only") && i + 1 < argc)
			only = argv[++i];
	}
	if (quick)
		reps = 1;
	reps = MAX(1, MIN(reps, 32));
	require_tracking();
	setvbuf(stdout, NULL, _IOLBF, 0);
	loadavg("before");
	printf("page fault (first write to an anonymous page): %.2f us\n", fault_us());
	run_all("this build", reps, quick, only);
	if (baseline) {
		char *d = xstrdup_printf("%s/daemon/wpmigd", baseline);
		char *c = xstrdup_printf("%s/client/wpmig-ctl", baseline);

		setenv("WPMIGD", d, 1);
		setenv("WPMIG_CTL", c, 1);
		run_all(baseline, reps, quick, only);
	}
	printf("page fault (first write to an anonymous page): %.2f us\n", fault_us());
	loadavg("after");
	return 0;
}
