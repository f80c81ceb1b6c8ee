// SPDX-License-Identifier: GPL-2.0-only
/*
 * The tracker's figures, each beside a reference measured in the same run,
 * as medians over several repetitions (the machines are noisy):
 *
 *   scan     PAGEMAP_SCAN get-and-re-protect of 1 GiB (--sizes: each of a
 *            list), clean and with 1 % of pages written, target idle and
 *            target spinning on the other core; reference: reading
 *            /proc/PID/pagemap for the same range
 *   read     1 GiB of scattered written pages (every other page of 2 GiB)
 *            with reader.c; references: memcpy of 1 GiB in 4 MiB pieces,
 *            and process_vm_readv one page per call
 *   write    the target's first write to a protected page vs a write to an
 *            unprotected one (ns/page, timed inside the target); and untracked;
 *            references: this machine's own page faults, the first touch of
 *            an anonymous page and a copy-on-write after fork, with the
 *            write-protect fault's overhead as a ratio to each
 *   attach   tracker_attach of an idle target; reference: a bare ptrace
 *            seize, interrupt, detach round trip
 *   thp      how many pages a pass reports after one write into a THP
 *
 * Usage: bench-tracker [--quick] [--reps N] [--sizes MIB,MIB...] [FIGURE...]
 * --quick uses small sizes and few repetitions: it only checks the
 * benchmark runs (meson suite bench-smoke).  Goals are judged on full runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench-report.h"
#include "basic/util.h"
#include "harness.h"
#include "track/reader.h"
#include "track/tracker.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

struct opts {
	bool quick;
	unsigned reps, n_sizes;
	uint64_t scan_bytes[4], read_bytes, write_bytes;
};

static int failures;

#define BENCH_CHECK(cond, ...)                                                       \
	do {                                                                         \
		if (!(cond)) {                                                       \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);         \
			fprintf(stderr, __VA_ARGS__);                                \
			fputc('\n', stderr);                                         \
			failures++;                                                  \
		}                                                                    \
	} while (0)

/* ---- statistics ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct stat3 {
	double med, min, max;
};

static struct stat3 stats(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return (struct stat3){ n ? (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2) : 0,
			       n ? v[0] : 0, n ? v[n - 1] : 0 };
}

static void print_row(const char *what, struct stat3 s, const char *unit)
{
	printf("  %-46s %9.3f %-5s (min %.3f, max %.3f)\n", what, s.med, unit, s.min, s.max);
}

static void print_goal(const char *goal, bool met, const struct opts *o)
{
	printf("  %-46s %s\n", goal, o->quick ? "(not judged in --quick)" : met ? "met" : "MISSED");
}

/* ---- the target: a child process obeying commands on a pipe ---- */

enum { T_MAP, T_WRITE_SPREAD, T_WRITE_STRIDE, T_TIME_WRITES, T_TIME_FAULTS, T_SPIN, T_QUIT };

struct tcmd {
	int op;
	uint64_t a, b;
};

struct treply {
	int64_t r;
	uint64_t v[2];
};

struct target {
	pid_t pid;
	int cmd_fd, rep_fd;
	uint64_t base, len; /* its region */
};

struct tstate {
	uint8_t *base;
	uint64_t len;
	pthread_t spinner;
	atomic_bool spin;
};

static void pin_to(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

/* A word that says which page it is in and which write put it there. */
static uint64_t page_word(uint64_t page, uint64_t round)
{
	return (page << 16) ^ round ^ 0x5157000000000000ULL;
}

static void *spin_thread(void *arg)
{
	struct tstate *s = arg;
	volatile uint64_t sink = 0;

	pin_to(1);
	while (atomic_load(&s->spin))
		sink += s->base[(sink * 4096) % s->len]; /* reads: no page is written */
	return NULL;
}

static int64_t t_map(struct tstate *s, uint64_t len, bool huge)
{
	uint64_t al = 2 * MiB;
	uint8_t *raw = mmap(NULL, len + al, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0);

	if (raw == MAP_FAILED)
		return -errno;
	s->base = (uint8_t *)(((uintptr_t)raw + al - 1) & ~(al - 1));
	s->len = len;
	if (madvise(s->base, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) < 0)
		return -errno;
	for (uint64_t p = 0; p < len / PAGE_SIZE_4K; p++)
		*(uint64_t *)(s->base + p * PAGE_SIZE_4K) = page_word(p, 0);
	return (int64_t)(uintptr_t)s->base;
}

/* n distinct pages: i * an odd stride modulo a power-of-two page count. */
static void t_write_spread(struct tstate *s, uint64_t n, uint64_t round)
{
	uint64_t pages = s->len / PAGE_SIZE_4K;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t p = (i * 0x9E3779B1ULL + round * 7919) & (pages - 1);
		*(uint64_t *)(s->base + p * PAGE_SIZE_4K) = page_word(p, round);
	}
}

static void t_write_stride(struct tstate *s, uint64_t stride, uint64_t round)
{
	for (uint64_t p = 0; p < s->len / PAGE_SIZE_4K; p += stride)
		*(uint64_t *)(s->base + p * PAGE_SIZE_4K) = page_word(p, round);
}

/* One write per page, twice: the first may fault, the second cannot. */
static void t_time_writes(struct tstate *s, uint64_t round, struct treply *rep)
{
	uint64_t pages = s->len / PAGE_SIZE_4K;

	for (int pass = 0; pass < 2; pass++) {
		uint64_t t0 = now_ns();
		for (uint64_t p = 0; p < pages; p++)
			*(volatile uint64_t *)(s->base + p * PAGE_SIZE_4K + 8) = round + (uint64_t)pass;
		rep->v[pass] = now_ns() - t0;
	}
}

static void write_pages(uint8_t *m, uint64_t pages, uint64_t word)
{
	for (uint64_t p = 0; p < pages; p++)
		*(volatile uint64_t *)(m + p * PAGE_SIZE_4K) = word;
}

/*
 * What a page fault costs on this machine, timed like t_time_writes: one
 * write per page of len fresh anonymous bytes (first touch: allocate, zero,
 * map), then one write per page again after a fork (copy-on-write: allocate,
 * copy, map).  Machines differ by more than 10x here (shadow paging in a
 * guest), so the write-protect fault is read against these.
 */
static void t_time_faults(uint64_t len, struct treply *rep)
{
	uint64_t pages = len / PAGE_SIZE_4K, t0;
	uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pid_t child;

	if (m == MAP_FAILED || madvise(m, len, MADV_NOHUGEPAGE) < 0) {
		rep->r = -errno;
		return;
	}
	t0 = now_ns();
	write_pages(m, pages, 1);
	rep->v[0] = now_ns() - t0;
	child = fork();
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause(); /* keeps the pages shared until killed */
	}
	if (child < 0) {
		rep->r = -errno;
	} else {
		t0 = now_ns();
		write_pages(m, pages, 2);
		rep->v[1] = now_ns() - t0;
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	munmap(m, len);
}

static void target_main(int cmd_fd, int rep_fd)
{
	struct tstate s = { 0 };
	struct tcmd c;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	pin_to(1);
	while (read(cmd_fd, &c, sizeof(c)) == sizeof(c)) {
		struct treply rep = { 0 };

		switch (c.op) {
		case T_MAP:
			rep.r = t_map(&s, c.a, c.b);
			break;
		case T_WRITE_SPREAD:
			t_write_spread(&s, c.a, c.b);
			break;
		case T_WRITE_STRIDE:
			t_write_stride(&s, c.a, c.b);
			break;
		case T_TIME_WRITES:
			t_time_writes(&s, c.a, &rep);
			break;
		case T_TIME_FAULTS:
			t_time_faults(c.a, &rep);
			break;
		case T_SPIN:
			if (c.a && !atomic_load(&s.spin)) {
				atomic_store(&s.spin, true);
				pthread_create(&s.spinner, NULL, spin_thread, &s);
			} else if (!c.a && atomic_load(&s.spin)) {
				atomic_store(&s.spin, false);
				pthread_join(s.spinner, NULL);
			}
			break;
		case T_QUIT:
			_exit(0);
		}
		if (write(rep_fd, &rep, sizeof(rep)) != sizeof(rep))
			_exit(1);
	}
	_exit(0);
}

static int64_t tcall(struct target *t, int op, uint64_t a, uint64_t b, struct treply *out)
{
	struct tcmd c = { op, a, b };
	struct treply rep;

	if (write(t->cmd_fd, &c, sizeof(c)) != sizeof(c) ||
	    read(t->rep_fd, &rep, sizeof(rep)) != sizeof(rep))
		return -EIO;
	if (out)
		*out = rep;
	return rep.r;
}

static int target_start(struct target *t, uint64_t len, bool huge)
{
	int cmd[2], rep[2];

	if (pipe2(cmd, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0)
		return -errno;
	t->pid = fork();
	if (t->pid < 0)
		return -errno;
	if (t->pid == 0) {
		close(cmd[1]);
		close(rep[0]);
		target_main(cmd[0], rep[1]);
	}
	close(cmd[0]);
	close(rep[1]);
	t->cmd_fd = cmd[1];
	t->rep_fd = rep[0];
	t->len = len;
	int64_t r = tcall(t, T_MAP, len, huge, NULL);
	if (r < 0)
		return (int)r;
	t->base = (uint64_t)r;
	return 0;
}

static void target_stop(struct target *t)
{
	struct tcmd c = { .op = T_QUIT };

	if (write(t->cmd_fd, &c, sizeof(c)) < 0)
		kill(t->pid, SIGKILL);
	close(t->cmd_fd);
	close(t->rep_fd);
	waitpid(t->pid, NULL, 0);
}

static struct tracker *attach(pid_t pid)
{
	struct tracker *t = NULL;
	char why[256];
	int r = tracker_attach(pid, NULL, &t, why, sizeof(why));

	BENCH_CHECK(r == 0, "attach: %s", why);
	return r == 0 ? t : NULL;
}

/* A pass; its figures; written pages inside [a, b) in *in_region. */
static int pass_once(struct tracker *t, unsigned flags, struct pass_stats *st, uint64_t a,
		     uint64_t b, uint64_t *in_region)
{
	struct range_set part = { 0 };
	struct pass p;
	int r = tracker_pass(t, flags, &p);

	BENCH_CHECK(r == 0, "pass: %s", strerror(-r));
	if (r < 0)
		return r;
	*st = p.st;
	range_set_clip(&p.data, a, b, &part);
	if (in_region)
		*in_region = range_set_bytes(&part) / PAGE_SIZE_4K;
	range_set_free(&part);
	pass_free(&p);
	return 0;
}

/* ---- scan ---- */

/* The incumbent way to learn about 1 GiB of pages: read its pagemap. */
static double pagemap_read_ms(pid_t pid, uint64_t start, uint64_t len)
{
	char path[64];
	size_t n = len / PAGE_SIZE_4K * 8;
	uint64_t *buf = malloc(n);
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	uint64_t t0 = now_ns();
	ssize_t got = pread(fd, buf, n, (off_t)(start / PAGE_SIZE_4K * 8));
	double ms = ns_to_ms(now_ns() - t0);
	BENCH_CHECK(got == (ssize_t)n, "pagemap read: %zd of %zu", got, n);
	close(fd);
	free(buf);
	return ms;
}

/* The report's rows and plot points of one series of scans. */
static void report_scan(const struct target *tg, const struct opts *o, bool running,
			bool dirty, const double *v, const double *ref)
{
	unsigned long long mib = (unsigned long long)(tg->len / MiB);
	char id[64], what[128], series[64];

	snprintf(id, sizeof(id), "scan.%s.%s.%llu", dirty ? "dirty" : "clean",
		 running ? "spinning" : "idle", mib);
	snprintf(what, sizeof(what), "PAGEMAP_SCAN of %llu MiB tracked, %s, target %s", mib,
		 dirty ? "1 % written" : "clean", running ? "spinning on the other core" : "idle");
	brep_row(&(struct brep_row){
		.id = id, .section = "Tracking", .what = what, .unit = "ms", .v = v, .n = o->reps,
		.ref = "pread of its /proc/PID/pagemap", .ref_unit = "ms", .ref_v = ref,
		.ref_n = o->reps,
		.target = !dirty && !running && mib == 1024 ? "<= 1" : NULL });
	snprintf(series, sizeof(series), "%s, target %s", dirty ? "1 % written" : "clean",
		 running ? "spinning" : "idle");
	brep_point("scan", series, (double)tg->len / GiB, v, o->reps);
}

static void scan_series(struct target *tg, struct tracker *t, const struct opts *o,
			bool running, double *clean_med, double *dirty_med)
{
	double clean[64], dirty[64], pass_ms[64], ref[64];
	uint64_t pages = tg->len / PAGE_SIZE_4K, want = pages / 100, seen = 0;
	const char *how = running ? "target spinning on cpu 1" : "target idle";
	struct pass_stats st;
	char what[128];

	tcall(tg, T_SPIN, running, 0, NULL);
	for (unsigned i = 0; i < o->reps; i++) {
		if (pass_once(t, 0, &st, tg->base, tg->base + tg->len, &seen) < 0)
			return;
		clean[i] = ns_to_ms(st.scan_ns);
		pass_ms[i] = ns_to_ms(st.total_ns);
		BENCH_CHECK(seen == 0, "clean scan reported %llu pages", (unsigned long long)seen);
		ref[i] = pagemap_read_ms(tg->pid, tg->base, tg->len);
	}
	for (unsigned i = 0; i < o->reps; i++) {
		tcall(tg, T_WRITE_SPREAD, want, 1000 + i + running * 100, NULL);
		if (pass_once(t, 0, &st, tg->base, tg->base + tg->len, &seen) < 0)
			return;
		dirty[i] = ns_to_ms(st.scan_ns);
		BENCH_CHECK(seen == want, "1 %% written: %llu of %llu pages reported",
			    (unsigned long long)seen, (unsigned long long)want);
	}
	tcall(tg, T_SPIN, 0, 0, NULL);
	report_scan(tg, o, running, false, clean, ref);
	report_scan(tg, o, running, true, dirty, ref);
	printf(" %s:\n", how);
	snprintf(what, sizeof(what), "scan %llu MiB clean", (unsigned long long)(tg->len / MiB));
	struct stat3 c = stats(clean, o->reps);
	print_row(what, c, "ms");
	snprintf(what, sizeof(what), "scan %llu MiB, 1 %% written (%llu pages)",
		 (unsigned long long)(tg->len / MiB), (unsigned long long)want);
	struct stat3 d = stats(dirty, o->reps);
	print_row(what, d, "ms");
	print_row("  whole clean pass (maps, layout, scan)", stats(pass_ms, o->reps), "ms");
	print_row("  ref: pread of its /proc/PID/pagemap", stats(ref, o->reps), "ms");
	*clean_med = c.med;
	*dirty_med = d.med;
}

static void scan_size(const struct opts *o, uint64_t bytes)
{
	struct target tg;
	struct pass_stats st;
	double ci, di, cr, dr;

	printf("\nscan: PAGEMAP_SCAN get-and-re-protect (median of %u)\n", o->reps);
	if (target_start(&tg, bytes, false) < 0) {
		BENCH_CHECK(0, "scan target");
		return;
	}
	struct tracker *t = attach(tg.pid);
	if (t) {
		pass_once(t, 0, &st, 0, 0, NULL); /* first pass: everything new */
		printf("  first pass (everything new): %.3f ms, scan %.3f ms\n",
		       ns_to_ms(st.total_ns), ns_to_ms(st.scan_ns));
		pass_once(t, 0, &st, 0, 0, NULL);
		scan_series(&tg, t, o, false, &ci, &di);
		scan_series(&tg, t, o, true, &cr, &dr);
		char goal[96];
		snprintf(goal, sizeof(goal), "goal: clean scan of 1 GiB < 1 ms (idle %.3f)", ci);
		if (bytes == GiB)
			print_goal(goal, ci < 1.0, o);
		tracker_detach(t);
	}
	target_stop(&tg);
}

static void bench_scan(const struct opts *o)
{
	for (unsigned i = 0; i < o->n_sizes; i++)
		scan_size(o, o->scan_bytes[i]);
}

/* ---- read ---- */

/* Read the whole plan; with tg, check each of its pages holds its word. */
static double read_all_gbs(struct tracker *t, const struct pass *p, const struct read_plan *plan,
			   uint8_t *buf, const struct target *tg)
{
	uint64_t unreadable = 0, bad = 0, t0 = now_ns();

	for (size_t c = 0; c < plan->n_chunks; c++) {
		const struct chunk *ch = &plan->chunks[c];
		int r = read_chunk(t, p, plan, ch, buf, &unreadable);

		if (r < 0) {
			BENCH_CHECK(0, "read_chunk: %s", strerror(-r));
			return 0;
		}
		if (!tg)
			continue;
		uint64_t off = 0;
		for (size_t k = ch->first_seg; k < ch->first_seg + ch->n_segs; k++)
			for (uint64_t a = plan->segs[k].start; a < plan->segs[k].end;
			     a += PAGE_SIZE_4K, off += PAGE_SIZE_4K)
				if (a >= tg->base && a < tg->base + tg->len)
					bad += *(uint64_t *)(buf + off) !=
					       page_word((a - tg->base) / PAGE_SIZE_4K, 1);
	}
	double s = (double)(now_ns() - t0) / 1e9;
	BENCH_CHECK(unreadable == 0 && bad == 0, "read: %llu unreadable, %llu wrong pages",
		    (unsigned long long)unreadable, (unsigned long long)bad);
	return (double)plan->bytes / s / 1e9;
}

static double memcpy_gbs(uint8_t *src, uint64_t len, uint8_t *dst, uint64_t chunk)
{
	uint64_t t0 = now_ns();

	for (uint64_t off = 0; off < len; off += chunk)
		memcpy(dst, src + off, MIN(chunk, len - off));
	__asm__ volatile("" ::"r"(dst) : "memory");
	return (double)len / ((double)(now_ns() - t0) / 1e9) / 1e9;
}

/* The reader's access pattern without the kernel: every other page. */
static double memcpy_scattered_gbs(uint8_t *src, uint64_t len, uint8_t *dst, uint64_t chunk)
{
	uint64_t t0 = now_ns(), off = 0;

	for (uint64_t a = 0; a < len; a += 2 * PAGE_SIZE_4K) {
		memcpy(dst + off, src + a, PAGE_SIZE_4K);
		off = (off + PAGE_SIZE_4K) % chunk;
	}
	__asm__ volatile("" ::"r"(dst) : "memory");
	return (double)(len / 2) / ((double)(now_ns() - t0) / 1e9) / 1e9;
}

/* What process_vm_readv does without scattering: 4 MiB per call. */
static double contiguous_readv_gbs(const struct target *tg, uint8_t *buf, uint64_t chunk)
{
	uint64_t t0 = now_ns(), len = tg->len / 2;

	for (uint64_t off = 0; off < len; off += chunk) {
		struct iovec l = { buf, chunk }, r = { (void *)(tg->base + off), chunk };

		if (process_vm_readv(tg->pid, &l, 1, &r, 1, 0) != (ssize_t)chunk) {
			BENCH_CHECK(0, "process_vm_readv: %m");
			return 0;
		}
	}
	return (double)len / ((double)(now_ns() - t0) / 1e9) / 1e9;
}

static double one_page_readv_gbs(pid_t pid, const struct read_plan *plan, uint8_t *buf,
				 uint64_t chunk)
{
	uint64_t t0 = now_ns(), off = 0;

	for (size_t k = 0; k < plan->n_segs; k++)
		for (uint64_t a = plan->segs[k].start; a < plan->segs[k].end; a += PAGE_SIZE_4K) {
			struct iovec l = { buf + off, PAGE_SIZE_4K }, r = { (void *)a, PAGE_SIZE_4K };

			if (process_vm_readv(pid, &l, 1, &r, 1, 0) != (ssize_t)PAGE_SIZE_4K) {
				BENCH_CHECK(0, "process_vm_readv: %m");
				return 0;
			}
			off = (off + PAGE_SIZE_4K) % chunk;
		}
	return (double)plan->bytes / ((double)(now_ns() - t0) / 1e9) / 1e9;
}

static void read_figures(struct target *tg, struct tracker *t, const struct pass *p,
			 const struct opts *o)
{
	const uint64_t chunk = 4 * MiB;
	double rd[64], mc[64], ms[64], cont[64], one[64];
	struct read_plan plan;
	uint8_t *buf = aligned_alloc(4096, chunk);
	uint64_t src_len = tg->len / 2;
	uint8_t *src = malloc(tg->len);

	memset(src, 0x5a, tg->len);
	memset(buf, 0, chunk);
	int r = read_plan_build(p, chunk, &plan);
	BENCH_CHECK(r == 0, "read_plan_build: %s", strerror(-r));
	if (r == 0) {
		unsigned n_one = MIN(o->reps, 3u);
		for (unsigned i = 0; i < o->reps; i++) {
			rd[i] = read_all_gbs(t, p, &plan, buf, i == 0 ? tg : NULL);
			mc[i] = memcpy_gbs(src, src_len, buf, chunk);
			ms[i] = memcpy_scattered_gbs(src, tg->len, buf, chunk);
			cont[i] = contiguous_readv_gbs(tg, buf, chunk);
		}
		for (unsigned i = 0; i < n_one; i++)
			one[i] = one_page_readv_gbs(tg->pid, &plan, buf, chunk);
		printf("  %llu MiB in %zu segments, %zu chunks of <= 4 MiB\n",
		       (unsigned long long)(plan.bytes / MiB), plan.n_segs, plan.n_chunks);
		struct stat3 s = stats(rd, o->reps), m = stats(mc, o->reps);
		print_row("reader.c (process_vm_readv, 1024 iovecs)", s, "GB/s");
		char ref[64];
		snprintf(ref, sizeof(ref), "  ref: memcpy %llu MiB in 4 MiB pieces",
			 (unsigned long long)(src_len / MiB));
		print_row(ref, m, "GB/s");
		print_row("  ref: memcpy of every other page, own memory", stats(ms, o->reps), "GB/s");
		print_row("  ref: process_vm_readv 4 MiB contiguous/call", stats(cont, o->reps), "GB/s");
		print_row("  ref: process_vm_readv one page per call", stats(one, n_one), "GB/s");
		printf("  %-46s %9.2f\n", "reader / memcpy", s.med / m.med);
		brep_row(&(struct brep_row){
			.id = "read.reader", .section = "Tracking",
			.what = "reading scattered written pages out of the target (reader.c)",
			.unit = "GB/s", .v = rd, .n = o->reps, .ref = "memcpy of the same bytes",
			.ref_unit = "GB/s", .ref_v = mc, .ref_n = o->reps, .target = ">= 5" });
		brep_row(&(struct brep_row){
			.id = "read.readv.page", .section = "Tracking",
			.what = "the same pages, process_vm_readv one page per call", .unit = "GB/s",
			.v = one, .n = n_one, .ref = "reader.c", .ref_id = "read.reader" });
		char goal[96];
		snprintf(goal, sizeof(goal), "goal: >= 5 GB/s (%.2f)", s.med);
		print_goal(goal, s.med >= 5.0, o);
		read_plan_free(&plan);
	}
	free(src);
	free(buf);
}

static void bench_read(const struct opts *o)
{
	struct target tg;
	struct pass_stats st;
	struct pass p;
	uint64_t seen = 0;

	printf("\nread: %llu MiB of scattered written pages (every other page of %llu MiB), "
	       "median of %u\n", (unsigned long long)(o->read_bytes / 2 / MiB),
	       (unsigned long long)(o->read_bytes / MiB), o->reps);
	if (target_start(&tg, o->read_bytes, false) < 0) {
		BENCH_CHECK(0, "read target");
		return;
	}
	struct tracker *t = attach(tg.pid);
	if (t) {
		pass_once(t, 0, &st, 0, 0, NULL);
		pass_once(t, 0, &st, 0, 0, NULL);
		tcall(&tg, T_WRITE_STRIDE, 2, 1, NULL);
		int r = tracker_pass(t, 0, &p);
		BENCH_CHECK(r == 0, "pass: %s", strerror(-r));
		if (r == 0) {
			struct range_set part = { 0 };
			range_set_clip(&p.data, tg.base, tg.base + tg.len, &part);
			seen = range_set_bytes(&part);
			range_set_free(&part);
			BENCH_CHECK(seen == tg.len / 2, "pass found %llu MiB of %llu written",
				    (unsigned long long)(seen / MiB),
				    (unsigned long long)(tg.len / 2 / MiB));
			read_figures(&tg, t, &p, o);
			pass_free(&p);
		}
		tracker_detach(t);
	}
	target_stop(&tg);
}

/* ---- write ---- */

/* ns per page to us per page, in place (for the report). */
static const double *us_of(double *v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		v[i] /= 1e3;
	return v;
}

static void bench_write(const struct opts *o)
{
	double prot[64], unprot[64], untr[64], touch[64], cow[64];
	struct target tg, ref;
	struct pass_stats st;
	struct treply rep;

	printf("\nwrite: one write per page over %llu MiB, timed in the target (median of %u)\n",
	       (unsigned long long)(o->write_bytes / MiB), o->reps);
	if (target_start(&tg, o->write_bytes, false) < 0) {
		BENCH_CHECK(0, "write target");
		return;
	}
	/* The fault references fork: not in tg, whose pages would all become COW. */
	if (target_start(&ref, PAGE_SIZE_4K, false) < 0) {
		BENCH_CHECK(0, "fault reference process");
		target_stop(&tg);
		return;
	}
	double pages = (double)(tg.len / PAGE_SIZE_4K);
	for (unsigned i = 0; i < o->reps; i++) {
		tcall(&tg, T_TIME_WRITES, 10 + i, 0, &rep);
		untr[i] = (double)rep.v[0] / pages;
		int64_t r = tcall(&ref, T_TIME_FAULTS, tg.len, 0, &rep);
		BENCH_CHECK(r == 0, "fault reference: %s", strerror((int)-r));
		touch[i] = (double)rep.v[0] / pages;
		cow[i] = (double)rep.v[1] / pages;
	}
	target_stop(&ref);
	struct tracker *t = attach(tg.pid);
	if (t) {
		pass_once(t, 0, &st, 0, 0, NULL);
		for (unsigned i = 0; i < o->reps; i++) {
			uint64_t seen = 0;
			/* The pass re-protects every page the last round wrote. */
			pass_once(t, 0, &st, tg.base, tg.base + tg.len, &seen);
			BENCH_CHECK(i == 0 || seen == tg.len / PAGE_SIZE_4K, "round %u: %llu pages "
				    "reported written", i, (unsigned long long)seen);
			tcall(&tg, T_TIME_WRITES, 100 + i, 0, &rep);
			prot[i] = (double)rep.v[0] / pages;
			unprot[i] = (double)rep.v[1] / pages;
		}
		tracker_detach(t);
		struct stat3 p = stats(prot, o->reps), u = stats(unprot, o->reps);
		struct stat3 ft = stats(touch, o->reps), cw = stats(cow, o->reps);
		double over = p.med - u.med;
		print_row("first write to a protected page", p, "ns");
		print_row("  ref: write to an unprotected page (tracked)", u, "ns");
		print_row("  ref: write, process not tracked", stats(untr, o->reps), "ns");
		print_row("  ref: first touch of an anonymous page", ft, "ns");
		print_row("  ref: copy-on-write fault after fork", cw, "ns");
		printf("  %-46s %9.0f ns/page\n", "overhead of the write-protect fault", over);
		printf("  %-46s %9.2f\n", "  / first touch of an anonymous page", over / ft.med);
		printf("  %-46s %9.2f\n", "  / copy-on-write fault", over / cw.med);
		brep_row(&(struct brep_row){
			.id = "write.wp_fault", .section = "Tracking",
			.what = "target's first write to a write-protected page", .unit = "us",
			.v = us_of(prot, o->reps), .n = o->reps,
			.ref = "first touch of an anonymous page, same run", .ref_unit = "us",
			.ref_v = us_of(touch, o->reps), .ref_n = o->reps,
			.note = "timed inside the target; includes the write itself" });
		brep_row(&(struct brep_row){
			.id = "write.cow_fault", .section = "Tracking",
			.what = "copy-on-write fault after fork", .unit = "us",
			.v = us_of(cow, o->reps), .n = o->reps,
			.ref = "first touch of an anonymous page, same run", .ref_unit = "us",
			.ref_v = touch, .ref_n = o->reps }); /* touch: in us since the row above */
	}
	target_stop(&tg);
}

/* ---- attach ---- */

static double bare_ptrace_us(pid_t pid)
{
	uint64_t t0 = now_ns();
	int status;

	if (ptrace(PTRACE_SEIZE, pid, NULL, NULL) < 0)
		return -1;
	ptrace(PTRACE_INTERRUPT, pid, NULL, NULL);
	waitpid(pid, &status, __WALL);
	ptrace(PTRACE_DETACH, pid, NULL, NULL);
	return (double)(now_ns() - t0) / 1e3;
}

static void bench_attach(const struct opts *o)
{
	double at[64], bare[64];
	struct target tg;

	printf("\nattach: tracker_attach of an idle target with %llu MiB mapped (median of %u)\n",
	       (unsigned long long)(o->write_bytes / MiB), o->reps);
	if (target_start(&tg, o->write_bytes, false) < 0) {
		BENCH_CHECK(0, "attach target");
		return;
	}
	for (unsigned i = 0; i < o->reps; i++) {
		struct tracker_info info;
		struct tracker *t = attach(tg.pid);

		if (!t)
			break;
		tracker_get_info(t, &info);
		at[i] = (double)info.attach_ns / 1e3;
		tracker_detach(t);
		usleep(2000); /* let it go idle again */
		bare[i] = bare_ptrace_us(tg.pid);
		usleep(2000);
	}
	brep_row(&(struct brep_row){
		.id = "attach", .section = "Tracking", .what = "attach (tracker_attach), idle target",
		.unit = "us", .v = at, .n = o->reps, .ref = "bare ptrace seize + interrupt + detach",
		.ref_unit = "us", .ref_v = bare, .ref_n = o->reps });
	print_row("tracker_attach", stats(at, o->reps), "us");
	print_row("  ref: bare seize + interrupt + detach", stats(bare, o->reps), "us");
	target_stop(&tg);
}

/* ---- thp ---- */

static void bench_thp(const struct opts *o)
{
	struct pass_stats st;
	struct target tg;
	uint64_t seen = 0;

	printf("\nthp: granularity after a write into a transparent huge page\n");
	if (target_start(&tg, 4 * MiB, true) < 0) {
		BENCH_CHECK(0, "thp target");
		return;
	}
	uint64_t before = proc_anon_huge_kb(tg.pid, tg.base);
	struct tracker *t = attach(tg.pid);
	if (t) {
		pass_once(t, 0, &st, 0, 0, NULL);
		pass_once(t, 0, &st, 0, 0, NULL);
		uint64_t protected_kb = proc_anon_huge_kb(tg.pid, tg.base);
		tcall(&tg, T_WRITE_SPREAD, 1, 0, NULL); /* one word, in page 0 */
		pass_once(t, 0, &st, tg.base, tg.base + tg.len, &seen);
		uint64_t after = proc_anon_huge_kb(tg.pid, tg.base);
		printf("  AnonHugePages: %llu kB populated, %llu kB protected, %llu kB after one "
		       "write;\n  the next pass reports %llu page(s) of 4 KiB written\n",
		       (unsigned long long)before, (unsigned long long)protected_kb,
		       (unsigned long long)after, (unsigned long long)seen);
		if (before == 0)
			printf("  (no THP was allocated here: nothing to conclude)\n");
		else
			printf("  => %s\n", seen == 1 ? "split on the first write: 4 KiB granularity"
						      : "tracked whole");
		BENCH_CHECK(seen >= 1, "the write into the THP was not reported");
		tracker_detach(t);
	}
	(void)o;
	target_stop(&tg);
}

static const struct {
	const char *name;
	void (*fn)(const struct opts *);
} figures[] = {
	{ "scan", bench_scan }, { "read", bench_read }, { "write", bench_write },
	{ "attach", bench_attach }, { "thp", bench_thp },
};

int main(int argc, char **argv)
{
	struct opts o = { .reps = 9, .n_sizes = 1, .scan_bytes = { GiB }, .read_bytes = 2 * GiB,
			  .write_bytes = 64 * MiB };
	const char *only[8];
	size_t n_only = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			o.quick = true;
			o.reps = 3;
			o.scan_bytes[0] = 64 * MiB;
			o.n_sizes = 1;
			o.read_bytes = 64 * MiB;
			o.write_bytes = 8 * MiB;
		} else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
			int n = atoi(argv[++i]); /* MIN, MAX: arguments evaluated twice */
			o.reps = (unsigned)MIN(MAX(n, 1), 64);
		} else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
			o.n_sizes = 0;
			for (char *tok = strtok(argv[++i], ","); tok && o.n_sizes < 4;
			     tok = strtok(NULL, ","))
				o.scan_bytes[o.n_sizes++] = MAX(strtoull(tok, NULL, 10), 2ULL) * MiB;
		} else if (argv[i][0] != '-' && n_only < ARRAY_SIZE(only)) {
			only[n_only++] = argv[i];
		} else {
			fprintf(stderr, "usage: bench-tracker [--quick] [--reps N] [--sizes MIB,...] "
					"[scan|read|write|attach|thp]...\n");
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	pin_to(0);
	printf("bench-tracker%s: %ld cpus, tracker on cpu 0, target on cpu 1\n",
	       o.quick ? " --quick" : "", sysconf(_SC_NPROCESSORS_ONLN));
	for (size_t i = 0; i < ARRAY_SIZE(figures); i++) {
		bool want = !n_only;

		for (size_t k = 0; k < n_only; k++)
			want |= !strcmp(only[k], figures[i].name);
		if (want)
			figures[i].fn(&o);
	}
	if (failures)
		fprintf(stderr, "%d checks failed\n", failures);
	return failures ? 1 : 0;
}
