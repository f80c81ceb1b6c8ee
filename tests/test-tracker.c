// SPDX-License-Identifier: GPL-2.0-only
/*
 * The tracker against a real process, one memory kind per run (argv[1]):
 * after every kind of change (writes, sparse writes, zeroing, DONTNEED,
 * MADV_REMOVE, mprotect, new mapping, mremap, munmap, fork) a live pass must
 * hold every written page, and a pass with the target frozen must give an
 * image equal to /proc/PID/mem byte for byte.  Afterwards the target keeps
 * no registration, no write-protect and no fd of ours, and its own
 * self-check (registers, blocked syscalls, signals) is clean.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "basic/util.h"
#include "track/freeze.h"

#define REGION_MB 16

struct ctx {
	const char *kind;
	struct wl wl;
	struct tracker *t;
	struct shadow sh;
	uint64_t start, end; /* the workload's main region */
	bool shared, huge;
};

static bool hugetlb_reserve(unsigned pages, long *old)
{
	char *text;
	FILE *f;

	if (read_full_file("/proc/sys/vm/nr_hugepages", &text, NULL) < 0)
		return false;
	*old = atol(text);
	free(text);
	f = fopen("/proc/sys/vm/nr_hugepages", "w");
	if (!f)
		return false;
	fprintf(f, "%ld", *old + pages);
	fclose(f);
	if (read_full_file("/proc/sys/vm/nr_hugepages", &text, NULL) < 0)
		return false;
	bool ok = atol(text) >= *old + pages;
	free(text);
	return ok;
}

static void hugetlb_restore(long old)
{
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "w");
	if (f) {
		fprintf(f, "%ld", old);
		fclose(f);
	}
}

/*
 * The thp kind tests tracking of THPs: whether the kernel gave the region
 * any is what it did (THP enabled, memory not too fragmented), not what the
 * test asked for.  Without one the run would repeat the anon kind: skip.
 */
static void require_thp(struct ctx *c)
{
	uint64_t kb = proc_anon_huge_kb(c->wl.pid, c->start), ranges = (c->end - c->start) >> 21;
	char *enabled = NULL;

	if (kb == 0 || kb == UINT64_MAX) {
		if (read_full_file("/sys/kernel/mm/transparent_hugepage/enabled", &enabled, NULL) < 0)
			enabled = strdup("(no THP support)\n");
		wl_stop(&c->wl);
		SKIP("no THP backs the populated thp region (transparent_hugepage/enabled: %.*s)",
		     (int)strcspn(enabled, "\n"), enabled);
	}
	fprintf(stderr, "  thp region: %llu of %llu 2 MiB ranges are THPs mapped by a PMD\n",
		(unsigned long long)(kb >> 11), (unsigned long long)ranges);
}

/* Live pass, applied to the shadow; returns it for inspection. */
static int live_pass(struct ctx *c, struct pass *p)
{
	int r = tracker_pass(c->t, 0, p);

	if (r == 0)
		r = shadow_apply(&c->sh, c->t, p);
	return r;
}

/* Freeze, final pass, compare byte for byte, thaw. */
static void verify_frozen(struct ctx *c, const char *step)
{
	struct freeze f;
	struct pass p;
	uint64_t bad = 0;
	int r = freeze_process(c->wl.pid, &f);

	CHECK(r == 0, "%s: freeze: %s", step, strerror(-r));
	if (r < 0)
		return;
	r = tracker_pass(c->t, PASS_FINAL, &p);
	CHECK(r == 0, "%s: final pass: %s", step, strerror(-r));
	if (r == 0) {
		r = shadow_apply(&c->sh, c->t, &p);
		CHECK(r == 0, "%s: read: %s", step, strerror(-r));
		r = shadow_compare(&c->sh, c->wl.pid, &bad);
		CHECK(r == 0 && bad == 0, "%s: image differs from /proc/PID/mem in %llu pages", step,
		      (unsigned long long)bad);
		pass_free(&p);
	}
	thaw_process(&f, false);
	fprintf(stderr, "  %-10s frozen pass: image == memory (%llu bad pages)\n", step,
		(unsigned long long)bad);
}

/* Parse "OK i j k" into page indices. */
static size_t parse_pages(const char *reply, uint64_t **out)
{
	size_t n = 0, cap = 64;
	uint64_t *v = malloc(cap * sizeof(*v));
	const char *p = reply + 2;

	while (*p) {
		char *e;
		unsigned long long x = strtoull(p, &e, 10);
		if (e == p)
			break;
		if (n == cap) {
			uint64_t *more = reallocarray(v, cap *= 2, sizeof(*v));
			if (!more)
				abort(); /* a test: out of memory ends it */
			v = more;
		}
		v[n++] = x;
		p = e;
	}
	*out = v;
	return n;
}

static uint64_t pages_in(const struct range_set *s, uint64_t a, uint64_t b)
{
	struct range_set part = { 0 };
	range_set_clip(s, a, b, &part);
	uint64_t n = range_set_bytes(&part) / PAGE_SIZE_4K;
	range_set_free(&part);
	return n;
}

/* Writes: every written page reported; report the false positives. */
static void step_write(struct ctx *c, const char *cmd, unsigned n, unsigned seed)
{
	char *reply = malloc(1 << 20);
	uint64_t *pages;
	struct pass p;

	CHECK(wl_cmd(&c->wl, reply, 1 << 20, "%s main %u %u", cmd, n, seed) == 0, "%s", reply);
	size_t np = parse_pages(reply, &pages);
	int r = live_pass(c, &p);
	CHECK(r == 0, "pass: %s", strerror(-r));
	if (r == 0) {
		uint64_t miss = missing_pages(&p, c->start, pages, np);
		uint64_t seen = pages_in(&p.data, c->start, c->end) + pages_in(&p.zero, c->start, c->end);
		CHECK(miss == 0, "%s: %llu of %zu written pages not reported", cmd,
		      (unsigned long long)miss, np);
		fprintf(stderr, "  %-10s %zu written, %llu reported in region (%lld extra, %s)\n", cmd,
			np, (unsigned long long)seen, (long long)seen - (long long)np,
			c->huge ? "huge pages report whole" : "false positives");
		pass_free(&p);
	}
	free(pages);
	free(reply);
	verify_frozen(c, cmd);
}

static void step_cmd(struct ctx *c, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void step_cmd(struct ctx *c, const char *name, const char *fmt, ...)
{
	char cmd[256], reply[256];
	struct pass p;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	CHECK(wl_cmd(&c->wl, reply, sizeof(reply), "%s", cmd) == 0, "%s: %s", cmd, reply);
	int r = live_pass(c, &p);
	CHECK(r == 0, "%s: pass: %s", name, strerror(-r));
	if (r == 0)
		pass_free(&p);
	verify_frozen(c, name);
}

static void step_fork(struct ctx *c)
{
	char reply[128];
	struct pass p;
	int uw = -1;

	CHECK(wl_cmd(&c->wl, reply, sizeof(reply), "fork") == 0, "fork: %s", reply);
	pid_t child = (pid_t)atoi(reply + 3);
	/* The daemon closes the child's uffd right after reading the event. */
	for (int i = 0; i < 100 && (uw = proc_has_uffd_wp(child)) != 0; i++)
		usleep(10000);
	CHECK(child > 0 && uw == 0, "child %d of a tracked process carries uffd-wp registration",
	      (int)child);
	int r = live_pass(c, &p);
	CHECK(r == 0, "pass after fork: %s", strerror(-r));
	if (r == 0) {
		ssize_t i = pass_find_region(&p, c->start);
		bool flagged = i >= 0 && (p.regions[i].flags & REGION_SHARED_ELSEWHERE);
		/* The child writes shared memory behind the tracker's back. */
		CHECK(flagged == c->shared, "shared-elsewhere flag %d after fork of a %s mapping",
		      flagged, c->kind);
		pass_free(&p);
	}
	verify_frozen(c, "fork");
	step_write(c, "write", 50, 77); /* parent writes after fork: COW seen */
	CHECK(wl_cmd(&c->wl, reply, sizeof(reply), "reapchild") == 0, "reapchild");
}

int main(int argc, char **argv)
{
	struct ctx c = { .kind = argc > 1 ? argv[1] : "anon" };
	char size[32], reply[256], why[256] = "";
	long old_huge = -1;
	struct pass p;
	int r;

	c.shared = !strcmp(c.kind, "memfd") || !strcmp(c.kind, "shm");
	c.huge = !strcmp(c.kind, "hugetlb");
	/* Two regions, an extra one, and the forked child's copies. */
	if (c.huge && !hugetlb_reserve(4 * REGION_MB, &old_huge)) {
		if (old_huge >= 0)
			hugetlb_restore(old_huge);
		SKIP("cannot reserve %d huge pages", 4 * REGION_MB);
	}
	snprintf(size, sizeof(size), "%dM", REGION_MB);
	char opt[32];
	snprintf(opt, sizeof(opt), "--%s", c.kind);
	const char *args[] = { opt, size, "--populate", "50", "--selfcheck", NULL };
	r = wl_start(&c.wl, args);
	if (r == -ENOMEM) {
		if (old_huge >= 0)
			hugetlb_restore(old_huge);
		SKIP("cannot map %s memory", c.kind);
	}
	CHECK(r == 0, "workload start: %s", strerror(-r));
	if (r < 0)
		return 1;
	/* The workload names its first region after its kind. */
	CHECK(wl_cmd(&c.wl, reply, sizeof(reply), "mmap main %s %dM", c.kind, REGION_MB) == 0,
	      "%s", reply);
	wl_region(&c.wl, "main", &c.start, &c.end);
	if (!strcmp(c.kind, "thp"))
		require_thp(&c);
	char *fds_before = proc_fds(c.wl.pid);

	/* Every final pass below is split (pieces of 2 MiB, so several per
	 * region) between this thread and the tracker's helper, and compared
	 * byte for byte: the split must find what one walk finds. */
	struct tracker_opts to = { .scan_split_min = 1 << 20 };

	r = tracker_attach(c.wl.pid, &to, &c.t, why, sizeof(why));
	CHECK(r == 0, "attach: %s", why);
	if (r < 0) {
		wl_stop(&c.wl);
		return 1;
	}
	/* First pass: every region is new and covered whole. */
	r = live_pass(&c, &p);
	CHECK(r == 0, "first pass: %s", strerror(-r));
	if (r == 0) {
		uint64_t covered = pages_in(&p.data, c.start, c.end) + pages_in(&p.zero, c.start, c.end);
		ssize_t i = pass_find_region(&p, c.start);
		CHECK(i >= 0 && (p.regions[i].flags & REGION_NEW), "main region not new in first pass");
		CHECK(covered == (c.end - c.start) / PAGE_SIZE_4K, "first pass covers %llu of %llu pages",
		      (unsigned long long)covered, (unsigned long long)((c.end - c.start) / PAGE_SIZE_4K));
		fprintf(stderr, "  first pass: %zu regions, %llu data pages, %llu zero pages, scan %.3f ms\n",
			p.n_regions, (unsigned long long)(range_set_bytes(&p.data) / PAGE_SIZE_4K),
			(unsigned long long)(range_set_bytes(&p.zero) / PAGE_SIZE_4K),
			ns_to_ms(p.st.scan_ns));
		pass_free(&p);
	}
	verify_frozen(&c, "first");

	unsigned hp = c.huge ? 512 : 1; /* madvise on hugetlb needs 2 MiB units */
	step_write(&c, "write", 200, 1);
	step_write(&c, "poke", 300, 2);
	step_cmd(&c, "zero", "zero main %u %u", 4 * hp, 2 * hp);
	step_cmd(&c, "dontneed", "dontneed main %u %u", 0, 2 * hp);
	if (c.shared)
		step_cmd(&c, "remove", "remove main %u %u", 2 * hp, 2 * hp);
	step_cmd(&c, "mprotect", "mprotect main ro");
	step_cmd(&c, "mprotect", "mprotect main rw");
	step_write(&c, "write", 100, 3);
	step_cmd(&c, "mmap", "mmap extra %s %dM", c.kind, c.huge ? 4 : 2);
	step_cmd(&c, "mremap", "mremap extra");
	step_cmd(&c, "writeall", "writeall extra");
	step_cmd(&c, "munmap", "munmap extra");
	step_fork(&c);

	CHECK(wl_cmd(&c.wl, reply, sizeof(reply), "check") == 0, "self-check while tracked: %s", reply);
	tracker_detach(c.t);
	char *fds_after = proc_fds(c.wl.pid);
	CHECK(!strcmp(fds_before, fds_after), "fds differ:\nbefore:\n%s\nafter:\n%s", fds_before,
	      fds_after);
	CHECK(proc_has_uffd_wp(c.wl.pid) == 0, "uffd-wp registration left after detach");
	CHECK(wl_cmd(&c.wl, reply, sizeof(reply), "check") == 0, "self-check after detach: %s", reply);
	fprintf(stderr, "  self-check: %s", reply);
	free(fds_before);
	free(fds_after);
	shadow_free(&c.sh);
	wl_stop(&c.wl);
	if (old_huge >= 0)
		hugetlb_restore(old_huge);
	fprintf(stderr, "%s: %s\n", c.kind, test_failures ? "FAILED" : "ok");
	return test_failures ? 1 : 0;
}
