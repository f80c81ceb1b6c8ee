// SPDX-License-Identifier: GPL-2.0-only
/*
 * Attach and detach against real processes, one case per run (argv[1]):
 *
 *   clean        fds, uffd-wp flags and the target's self-check around
 *                attach/pass/detach; no fd of ours in the target meanwhile
 *   signals      200 attach/detach cycles (every 4th with a freeze) under a
 *                flood of SIGUSR1 and SIGRTMIN+1: none lost or duplicated
 *   busy         a target whose threads all spin on the CPU
 *   exit-race    short-lived targets attached as they start and exit:
 *                a clean error or success, no hang, no stuck process
 *   errors       no such PID, zombie, kernel thread, PID 1, self, already
 *                traced, io_uring fd: refused, with a reason; an allow-all
 *                seccomp filter: tracked and left clean
 *                naming the PID, the target unharmed
 *   freeze       all threads in 't' while frozen, running after thaw,
 *                group-stopped ('T') after a leave_stopped thaw until SIGCONT
 *   churn        a target creating and joining threads all the time: attach
 *                and freeze hold every thread there is
 *   foreign-uffd a target with its own userfaultfd on a range: that range is
 *                read whole, the target's own fault handling is unaffected
 *   stopped      a target already group-stopped: attach and freeze work and
 *                leave it stopped
 *   tracer-death a process that attaches, scans, freezes and detaches in a
 *                loop is SIGKILLed at random moments; the target must run on
 *
 * The target is tests/workload.c with --selfcheck: a thread checks its
 * registers around a busy loop, one is blocked in read(), one in
 * clock_nanosleep(), and signals are counted; "check" reports them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "basic/util.h"
#include "track/freeze.h"
#include "track/inject.h"
#include "track/maps.h"

#define RUNNING_STATES "RSD"

static uint64_t rng = 0x2545F4914F6CDD1DULL;

static uint64_t rnd(uint64_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng % n;
}

static void sleep_us(uint64_t us)
{
	struct timespec ts = { .tv_sec = (time_t)(us / 1000000), .tv_nsec = (long)(us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- the target's state ---- */

/* State letter of every thread of pid, as a string; returns how many. */
static size_t task_states(pid_t pid, char *out, size_t len)
{
	char path[64];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	out[0] = 0;
	d = opendir(path);
	if (!d)
		return 0;
	while ((de = readdir(d)) && n + 1 < len) {
		unsigned long flags;
		pid_t tid = (pid_t)atoi(de->d_name);

		if (tid > 0 && proc_task_stat(pid, tid, &out[n], &flags) == 0)
			n++;
	}
	closedir(d);
	out[n] = 0;
	return n;
}

/* Wait up to ms for every thread to be in one of the states `allowed`. */
static bool wait_states(pid_t pid, const char *allowed, int ms, char *states, size_t len)
{
	for (int i = 0;; i++) {
		size_t n = task_states(pid, states, len);

		if (n > 0 && strspn(states, allowed) == n)
			return true;
		if (i >= ms)
			return false;
		sleep_us(1000);
	}
}

#define PM_UFFD_WP (1ULL << 57)

/* Pages of pid whose pagemap entry still carries the uffd-wp bit. */
/* Pages of pid with the uffd-wp bit; *empty gets those not present
 * (markers in empty entries: this tracker must never install them). */
static long wp_pages_ex(pid_t pid, long *empty)
{
	struct vma_list maps;
	char path[64];
	long n = 0;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || maps_read(pid, &maps) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	for (size_t i = 0; i < maps.n; i++) {
		uint64_t pages = (maps.v[i].end - maps.v[i].start) / PAGE_SIZE_4K;
		uint64_t *e = malloc(pages * 8);

		if (maps.v[i].kind == VMA_SPECIAL || !e) {
			free(e);
			continue;
		}
		ssize_t got = pread(fd, e, pages * 8, (off_t)(maps.v[i].start / PAGE_SIZE_4K * 8));
		for (ssize_t k = 0; k < got / 8; k++) {
			n += !!(e[k] & PM_UFFD_WP);
			if (empty)
				*empty += (e[k] & PM_UFFD_WP) && !(e[k] & (1ULL << 63));
		}
		free(e);
	}
	vma_list_free(&maps);
	close(fd);
	return n;
}

static long wp_pages(pid_t pid)
{
	return wp_pages_ex(pid, NULL);
}

struct selfcheck {
	bool ok;
	unsigned long usr1, rt;
	char line[256];
};

static unsigned long field(const char *line, const char *key)
{
	const char *p = strstr(line, key);

	return p ? strtoul(p + strlen(key), NULL, 10) : (unsigned long)-1;
}

/* The workload's own verdict on its registers, blocked calls and signals. */
static bool selfcheck(struct wl *w, struct selfcheck *c)
{
	c->ok = wl_cmd(w, c->line, sizeof(c->line), "check") == 0;
	c->line[strcspn(c->line, "\n")] = 0;
	c->usr1 = field(c->line, "usr1=");
	c->rt = field(c->line, " rt=");
	return c->ok;
}

static void check_clean(struct wl *w, const char *when)
{
	struct selfcheck c;

	CHECK(selfcheck(w, &c), "%s: target self-check: %s", when, c.line);
}

static uint64_t region_sum(struct wl *w, const char *name)
{
	char reply[64];

	if (wl_cmd(w, reply, sizeof(reply), "sum %s", name) < 0)
		return 0;
	return strtoull(reply + 3, NULL, 16);
}

static bool why_names_pid(const char *why, pid_t pid)
{
	char num[16];
	const char *p = why;
	size_t n = (size_t)snprintf(num, sizeof(num), "%d", (int)pid);

	/* The PID as a whole number, not as part of another. */
	while ((p = strstr(p, num))) {
		bool left = p == why || p[-1] < '0' || p[-1] > '9';
		if (left && (p[n] < '0' || p[n] > '9'))
			return true;
		p++;
	}
	return false;
}

static int start_selfcheck_target(struct wl *w, const char *busy)
{
	const char *args[] = { "--anon", "16M", "--memfd", "4M", "--shm", "4M", "--file", "2M",
			       "--selfcheck", busy ? "--busy" : NULL, busy, NULL };
	int r = wl_start(w, args);

	CHECK(r == 0, "workload start: %s", strerror(-r));
	return r;
}

static struct tracker *attach_or_fail(pid_t pid, const char *when)
{
	struct tracker *t = NULL;
	char why[256] = "";
	int r = tracker_attach(pid, NULL, &t, why, sizeof(why));

	CHECK(r == 0, "%s: attach: %s (%s)", when, why, strerror(-r));
	return r == 0 ? t : NULL;
}

static void one_pass(struct tracker *t, unsigned flags, const char *when)
{
	struct pass p;
	int r = tracker_pass(t, flags, &p);

	CHECK(r == 0, "%s: pass: %s", when, strerror(-r));
	if (r == 0)
		pass_free(&p);
}

/* Freeze, a final pass, thaw: what a checkpoint does. */
static void frozen_pass(struct tracker *t, pid_t pid, const char *when)
{
	struct freeze f;
	int r = freeze_process(pid, &f);

	CHECK(r == 0, "%s: freeze: %s", when, strerror(-r));
	if (r < 0)
		return;
	one_pass(t, PASS_FINAL, when);
	thaw_process(&f, false);
}

/* ---- clean ---- */

static void case_clean(void)
{
	struct wl w;

	if (start_selfcheck_target(&w, NULL) < 0)
		return;
	char *before = proc_fds(w.pid);
	CHECK(proc_has_uffd_wp(w.pid) == 0, "uffd-wp before any attach");
	for (int round = 0; round < 3; round++) {
		struct tracker *t = attach_or_fail(w.pid, "clean");

		if (!t)
			break;
		char *during = proc_fds(w.pid);
		CHECK(!strcmp(before, during), "round %d: the target holds an fd of ours while "
		      "tracked:\nbefore:\n%s\nduring:\n%s", round, before, during);
		free(during);
		CHECK(proc_has_uffd_wp(w.pid) == 1, "round %d: no uffd-wp registration while tracked",
		      round);
		one_pass(t, 0, "clean");
		long empty = 0, wp = wp_pages_ex(w.pid, &empty);
		/* Every populated page protected; no marker in an empty entry
		 * (they would cost the target page tables for untouched memory). */
		CHECK(wp > 2048, "round %d: only %ld pages write-protected after a pass", round, wp);
		CHECK(empty == 0, "round %d: %ld empty entries protected by markers", round, empty);
		frozen_pass(t, w.pid, "clean");
		check_clean(&w, "while tracked");
		tracker_detach(t);

		char *after = proc_fds(w.pid);
		CHECK(!strcmp(before, after), "round %d: fds differ:\nbefore:\n%s\nafter:\n%s", round,
		      before, after);
		free(after);
		CHECK(proc_has_uffd_wp(w.pid) == 0, "round %d: uffd-wp registration left after detach",
		      round);
		CHECK(wp_pages(w.pid) == 0, "round %d: %ld pages still write-protected after detach "
		      "(%ld while tracked)", round, wp_pages(w.pid), wp);
		check_clean(&w, "after detach");
		fprintf(stderr, "  round %d: fds unchanged throughout, %ld pages write-protected "
			"while tracked, none after detach, self-check clean\n", round, wp);
	}
	free(before);
	wl_stop(&w);
}

/* ---- signals ---- */

struct flood {
	atomic_bool stop;
	atomic_ulong usr1, rt, rt_refused;
};

static bool usr1_pending(pid_t pid)
{
	char path[64], *text, *p;
	unsigned long long set = 0;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (read_full_file(path, &text, NULL) < 0)
		return true;
	p = strstr(text, "ShdPnd:");
	if (p)
		set = strtoull(p + 7, NULL, 16);
	free(text);
	return set & (1ULL << (SIGUSR1 - 1));
}

/*
 * SIGUSR1 is sent only while none is pending (a second one would merge with
 * it and be lost without anyone's fault); each is followed by four queued
 * real-time signals.  Every signal sent must be handled exactly once.
 */
static pid_t start_flooder(pid_t target, struct flood *fl)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	while (!atomic_load(&fl->stop)) {
		if (usr1_pending(target)) {
			sched_yield();
			continue;
		}
		if (kill(target, SIGUSR1) == 0)
			atomic_fetch_add(&fl->usr1, 1);
		for (int k = 0; k < 4; k++) {
			if (sigqueue(target, SIGRTMIN + 1, (union sigval){ 0 }) == 0)
				atomic_fetch_add(&fl->rt, 1);
			else
				atomic_fetch_add(&fl->rt_refused, 1);
		}
	}
	_exit(0);
}

static void case_signals(void)
{
	struct flood *fl = mmap(NULL, sizeof(*fl), PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	unsigned cycles = 200, failed = 0;
	struct selfcheck c = { 0 };
	struct wl w;

	if (fl == MAP_FAILED || start_selfcheck_target(&w, NULL) < 0)
		return;
	char *before = proc_fds(w.pid);
	pid_t flooder = start_flooder(w.pid, fl);
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < cycles; i++) {
		struct tracker *t = attach_or_fail(w.pid, "under signals");

		if (!t) {
			failed++;
			continue;
		}
		one_pass(t, 0, "under signals");
		if (i % 4 == 3)
			frozen_pass(t, w.pid, "under signals");
		tracker_detach(t);
	}
	uint64_t t1 = now_ns();
	atomic_store(&fl->stop, true);
	waitpid(flooder, NULL, 0);
	/* The last ones may still be on their way. */
	for (int i = 0; i < 300; i++) {
		selfcheck(&w, &c);
		if (c.usr1 >= fl->usr1 && c.rt >= fl->rt)
			break;
		sleep_us(10000);
	}
	fprintf(stderr, "  %u attach/detach cycles in %.0f ms (%u failed); sent %lu SIGUSR1, "
		"%lu SIGRTMIN+1 (%lu refused: queue full); target counted usr1=%lu rt=%lu\n",
		cycles, ns_to_ms(t1 - t0), failed, fl->usr1, fl->rt, fl->rt_refused, c.usr1, c.rt);
	CHECK(failed == 0, "%u of %u attaches failed under signals", failed, cycles);
	CHECK(c.ok, "self-check after the flood: %s", c.line);
	CHECK(c.usr1 == fl->usr1, "SIGUSR1: sent %lu, handled %lu", fl->usr1, c.usr1);
	CHECK(c.rt == fl->rt, "SIGRTMIN+1: sent %lu, handled %lu", fl->rt, c.rt);
	CHECK(fl->usr1 + fl->rt >= 2000, "only %lu signals sent: the flood proves little",
	      fl->usr1 + fl->rt);
	char *after = proc_fds(w.pid);
	CHECK(!strcmp(before, after), "fds differ after the flood:\n%s\n%s", before, after);
	CHECK(proc_has_uffd_wp(w.pid) == 0, "uffd-wp left after the flood");
	free(before);
	free(after);
	wl_stop(&w);
	munmap(fl, sizeof(*fl));
}

/* ---- busy ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static unsigned long busy_loops(struct wl *w)
{
	char reply[64];

	return wl_cmd(w, reply, sizeof(reply), "busy") == 0 ? strtoul(reply + 3, NULL, 10) : 0;
}

static void case_busy(void)
{
	enum { CYCLES = 30 };
	uint64_t attach_ns[CYCLES];
	unsigned n = 0;
	char states[64] = "";
	struct wl w;

	if (start_selfcheck_target(&w, "4") < 0)
		return;
	char *before = proc_fds(w.pid);
	/* All four spinning threads are on the CPU before we start. */
	for (int i = 0; i < 100 && strspn(states, "R") < 4; i++) {
		task_states(w.pid, states, sizeof(states));
		sleep_us(1000);
	}
	for (unsigned i = 0; i < CYCLES; i++) {
		struct tracker *t = attach_or_fail(w.pid, "busy");
		struct tracker_info info;

		if (!t)
			continue;
		tracker_get_info(t, &info);
		attach_ns[n++] = info.attach_ns;
		one_pass(t, 0, "busy");
		if (i % 3 == 0)
			frozen_pass(t, w.pid, "busy");
		tracker_detach(t);
	}
	unsigned long b0 = busy_loops(&w);
	sleep_us(50000);
	unsigned long b1 = busy_loops(&w);
	CHECK(b1 > b0, "busy threads stopped spinning after detach (%lu -> %lu)", b0, b1);
	CHECK(wait_states(w.pid, RUNNING_STATES, 100, states, sizeof(states)),
	      "thread states after detach: %s", states);
	check_clean(&w, "busy target");
	char *after = proc_fds(w.pid);
	CHECK(!strcmp(before, after), "fds differ:\n%s\n%s", before, after);
	CHECK(proc_has_uffd_wp(w.pid) == 0, "uffd-wp left on a busy target");
	if (n) {
		qsort(attach_ns, n, sizeof(attach_ns[0]), cmp_u64);
		fprintf(stderr, "  busy target (4 spinning threads): attach median %.2f ms, max %.2f ms "
			"over %u\n", ns_to_ms(attach_ns[n / 2]), ns_to_ms(attach_ns[n - 1]), n);
	}
	free(before);
	free(after);
	wl_stop(&w);
}

/* ---- exit-race ---- */

enum { EXIT_NOW, EXIT_SPIN, EXIT_THREADED, EXIT_SLEEP, EXIT_EXEC, EXEC_LIVE, EXIT_VARIANTS };

static const char *const variant_names[] = { "exit", "spin+exit", "thread+exit", "sleep+exit",
					     "exec true", "exec sleep" };

static void *spin_briefly(void *arg)
{
	uint64_t end = now_ns() + 20000;

	while (now_ns() < end)
		;
	return arg;
}

static void *spin_forever(void *arg)
{
	for (;;)
		__asm__ volatile("" ::: "memory");
	return arg;
}

static void short_lived(int variant, uint64_t delay_us)
{
	pthread_t th;
	uint64_t end = now_ns() + delay_us * 1000;

	switch (variant) {
	case EXIT_SPIN:
		while (now_ns() < end)
			;
		break;
	case EXIT_THREADED:
		pthread_create(&th, NULL, spin_forever, NULL);
		while (now_ns() < end)
			;
		break;
	case EXIT_SLEEP:
		sleep_us(delay_us);
		break;
	case EXIT_EXEC:
		execl("/bin/true", "true", (char *)NULL);
		_exit(3);
	case EXEC_LIVE: /* a new program that lives on while we attach */
		execl("/bin/sleep", "sleep", "0.03", (char *)NULL);
		_exit(3);
	}
	_exit(0);
}

struct race_report {
	int status;
	char stuck_state; /* 0 unless the child had to be killed */
};

/*
 * The real parent of the short-lived targets: it must see each exit
 * (a tracer that reaps a traced child and detaches wrong leaves it
 * waiting), with a deadline.  Commands: variant byte + delay; replies:
 * the child's pid, then a race_report.
 */
static void race_parent(int cmd_fd, int rep_fd)
{
	struct { int variant; uint32_t delay_us; } cmd;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	while (read(cmd_fd, &cmd, sizeof(cmd)) == sizeof(cmd)) {
		struct race_report rep = { 0 };
		pid_t child = fork();

		if (child == 0)
			short_lived(cmd.variant, cmd.delay_us);
		if (write(rep_fd, &child, sizeof(child)) != sizeof(child))
			_exit(1);
		for (int i = 0; i < 5000; i++) {
			if (waitpid(child, &rep.status, WNOHANG) == child)
				break;
			if (i == 4999) {
				char s[8];
				task_states(child, s, sizeof(s));
				rep.stuck_state = s[0] ? s[0] : '?';
				kill(child, SIGKILL);
				waitpid(child, &rep.status, 0);
			}
			sleep_us(1000);
		}
		if (write(rep_fd, &rep, sizeof(rep)) != sizeof(rep))
			_exit(1);
	}
	_exit(0);
}

static void case_exit_race(void)
{
	enum { TRIALS = 500 };
	unsigned ok[EXIT_VARIANTS] = { 0 }, refused[EXIT_VARIANTS] = { 0 }, n_err[8] = { 0 };
	int errs[8] = { 0 }, cmd[2], rep[2];
	size_t n_kinds = 0;

	if (pipe(cmd) < 0 || pipe(rep) < 0)
		return;
	pid_t helper = fork();
	if (helper == 0) {
		close(cmd[1]);
		close(rep[0]);
		race_parent(cmd[0], rep[1]);
	}
	close(cmd[0]);
	close(rep[1]);
	for (unsigned i = 0; i < TRIALS; i++) {
		struct { int variant; uint32_t delay_us; } c = { (int)(i % EXIT_VARIANTS),
								 (uint32_t)rnd(1500) };
		struct race_report report;
		struct tracker *t = NULL;
		char why[256] = "";
		pid_t child;

		if (write(cmd[1], &c, sizeof(c)) != sizeof(c) ||
		    read(rep[0], &child, sizeof(child)) != sizeof(child)) {
			CHECK(0, "race helper died");
			break;
		}
		int r = tracker_attach(child, NULL, &t, why, sizeof(why));
		if (r == 0) {
			struct pass p;
			if (tracker_pass(t, 0, &p) == 0)
				pass_free(&p);
			tracker_detach(t);
			ok[c.variant]++;
		} else {
			CHECK(why[0] && why_names_pid(why, child), "attach to %d failed (%s) with a "
			      "reason not naming it: '%s'", (int)child, strerror(-r), why);
			/* Only an exit may stop the attach: anything else is
			 * a wrong reason given to the user, or a live process
			 * refused (an exec moved its vDSO under us). */
			CHECK(r == -ESRCH, "trial %u (%s, %u us): attach refused with %s: %s", i,
			      variant_names[c.variant], c.delay_us, strerror(-r), why);
			refused[c.variant]++;
			size_t k = 0;
			while (k < n_kinds && errs[k] != r)
				k++;
			if (k == n_kinds && n_kinds < ARRAY_SIZE(errs))
				errs[n_kinds++] = r;
			if (k < ARRAY_SIZE(errs))
				n_err[k]++;
		}
		if (read(rep[0], &report, sizeof(report)) != sizeof(report)) {
			CHECK(0, "race helper died");
			break;
		}
		CHECK(!report.stuck_state, "trial %u (%s): the target was still there after 5 s, "
		      "state %c", i, variant_names[c.variant], report.stuck_state);
		CHECK(WIFEXITED(report.status) && WEXITSTATUS(report.status) == 0,
		      "trial %u (%s, %u us): the target ended with status 0x%x (%s %d) after "
		      "attach %s", i, variant_names[c.variant], c.delay_us, report.status,
		      WIFSIGNALED(report.status) ? "signal" : "exit",
		      WIFSIGNALED(report.status) ? WTERMSIG(report.status) : WEXITSTATUS(report.status),
		      r == 0 ? "succeeded" : why);
	}
	close(cmd[1]);
	waitpid(helper, NULL, 0);
	close(rep[0]);
	fprintf(stderr, "  %d races:", TRIALS);
	for (int v = 0; v < EXIT_VARIANTS; v++)
		fprintf(stderr, " %s %u ok/%u refused;", variant_names[v], ok[v], refused[v]);
	fprintf(stderr, "\n  refusals:");
	for (size_t k = 0; k < n_kinds; k++)
		fprintf(stderr, " %s x%u;", strerror(-errs[k]), n_err[k]);
	fprintf(stderr, "\n");
}

/* ---- errors ---- */

static void expect_refused(pid_t pid, int want, const char *words, const char *what)
{
	struct tracker *t = NULL;
	char why[256] = "";
	int r = tracker_attach(pid, NULL, &t, why, sizeof(why));

	CHECK(r == want, "%s (PID %d): got %d (%s), want %s; why: %s", what, (int)pid, r,
	      strerror(-r), strerror(-want), why);
	CHECK(why[0] && why_names_pid(why, pid), "%s: reason '%s' does not name PID %d", what, why,
	      (int)pid);
	CHECK(!words || strstr(why, words), "%s: reason '%s' does not say '%s'", what, why, words);
	fprintf(stderr, "  %-14s -> %s: %s\n", what, strerror(-r), why);
	if (r == 0)
		tracker_detach(t);
}

/* PIDs stay below pid_max: that one names no process, now or later. */
static pid_t free_pid(void)
{
	char *text = NULL;
	pid_t pid = 4194304;

	if (read_full_file("/proc/sys/kernel/pid_max", &text, NULL) == 0)
		pid = (pid_t)atoi(text);
	free(text);
	return pid;
}

static pid_t zombie(void)
{
	char states[8];
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	for (int i = 0; i < 1000; i++) {
		task_states(pid, states, sizeof(states));
		if (states[0] == 'Z')
			break;
		sleep_us(1000);
	}
	return pid;
}

/* A process tracing w (PTRACE_SEIZE only: w keeps running) until told. */
static pid_t start_other_tracer(pid_t target, int *release_fd)
{
	int ready[2], release[2];
	char c = 0;

	if (pipe(ready) < 0 || pipe(release) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(release[1]);
		c = ptrace(PTRACE_SEIZE, target, NULL, NULL) == 0;
		if (write(ready[1], &c, 1) != 1 || read(release[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(ready[1]);
	close(release[0]);
	if (read(ready[0], &c, 1) != 1 || !c)
		CHECK(0, "the other tracer could not seize %d", (int)target);
	close(ready[0]);
	*release_fd = release[1];
	return pid;
}

static void refuse_traced(void)
{
	char why[256] = "", tracer_pid[16];
	struct tracker *t;
	int release = -1;
	struct wl w;

	if (start_selfcheck_target(&w, NULL) < 0)
		return;
	char *before = proc_fds(w.pid);
	pid_t tracer = start_other_tracer(w.pid, &release);
	expect_refused(w.pid, -EBUSY, "already traced", "traced");
	snprintf(tracer_pid, sizeof(tracer_pid), "%d", (int)tracer);
	tracker_attach(w.pid, NULL, &t, why, sizeof(why));
	CHECK(why_names_pid(why, tracer), "reason '%s' does not name the tracer %s", why, tracer_pid);
	close(release);
	waitpid(tracer, NULL, 0);
	check_clean(&w, "after the other tracer left");
	/* Once the other tracer is gone, attaching works. */
	t = attach_or_fail(w.pid, "after the other tracer left");
	tracker_detach(t);
	char *after = proc_fds(w.pid);
	CHECK(!strcmp(before, after), "fds differ:\n%s\n%s", before, after);
	free(before);
	free(after);
	wl_stop(&w);
}

/* Re-exec'd as "--under-seccomp PROGRAM ARGS...": allow-all filter, exec. */
static int exec_under_seccomp(char **argv)
{
	struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = { .len = 1, .filter = &allow };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) {
		printf("ERR seccomp: %s\n", strerror(errno));
		return 1;
	}
	execv(argv[0], argv);
	printf("ERR exec %s: %s\n", argv[0], strerror(errno));
	return 1;
}

/* Its filter allows what we inject: tracked, and left as found (the
 * filters that would hurt it are refused in test-seccomp.c). */
static void allow_seccomp(void)
{
	const char *bin = getenv("WPMIG_WORKLOAD");
	const char *args[] = { "--under-seccomp", bin ? bin : "./workload", "--anon", "4M",
			       "--selfcheck", NULL };
	char *saved = strdup(bin ? bin : "./workload");
	struct wl w;

	/* wl_start runs $WPMIG_WORKLOAD: point it at ourselves for one start. */
	setenv("WPMIG_WORKLOAD", "/proc/self/exe", 1);
	int r = wl_start(&w, args);
	setenv("WPMIG_WORKLOAD", saved, 1);
	free(saved);
	CHECK(r == 0, "seccomp workload start: %s", strerror(-r));
	if (r < 0)
		return;
	char *before = proc_fds(w.pid), why[256] = "";
	struct tracker *t = NULL;
	struct pass p;
	r = tracker_attach(w.pid, NULL, &t, why, sizeof(why));
	CHECK(r == 0, "attach under an allow-all seccomp filter: %s", why);
	if (r == 0) {
		CHECK(tracker_pass(t, 0, &p) == 0, "pass under seccomp");
		pass_free(&p);
		tracker_detach(t);
	}
	char *after = proc_fds(w.pid);
	CHECK(!strcmp(before, after), "fds differ:\n%s\n%s", before, after);
	CHECK(proc_has_uffd_wp(w.pid) == 0, "registration left under seccomp");
	check_clean(&w, "seccomp target after tracking");
	free(before);
	free(after);
	wl_stop(&w);
}

/* A child holding an io_uring fd: writes through its pins bypass write-protect. */
static void refuse_pinned(void)
{
	struct io_uring_params params = { 0 };
	struct tracker_opts allow = { .allow_pinned = true };
	struct tracker *t = NULL;
	char why[256];
	int go[2];

	int ring = (int)syscall(SYS_io_uring_setup, 4, &params);
	if (ring < 0) {
		fprintf(stderr, "  io_uring        -> not available here (%s): not checked\n",
			strerror(errno));
		return;
	}
	if (pipe(go) < 0)
		return;
	pid_t child = fork();
	if (child == 0) {
		char c;
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(go[1]);
		_exit(read(go[0], &c, 1) == 1 ? 0 : 4); /* blocked in read() till told */
	}
	close(ring);
	close(go[0]);
	expect_refused(child, -EPERM, "io_uring", "io_uring fd");
	int r = tracker_attach(child, &allow, &t, why, sizeof(why));
	CHECK(r == 0, "io_uring fd with allow_pinned: %s", why);
	if (r == 0) {
		/* Treated as always dirty: after a first pass, a final pass with
		 * nothing written still covers every page of every region. */
		struct pass p;
		CHECK(tracker_pass(t, 0, &p) == 0, "first pass");
		pass_free(&p);
		CHECK(tracker_pass(t, PASS_FINAL, &p) == 0, "final pass");
		uint64_t all = 0, covered = range_set_bytes(&p.data) + range_set_bytes(&p.zero);
		for (size_t i = 0; i < p.n_regions; i++)
			all += p.regions[i].end - p.regions[i].start;
		CHECK(covered == all, "allow_pinned final pass covers %llu of %llu bytes",
		      (unsigned long long)covered, (unsigned long long)all);
		pass_free(&p);
		tracker_detach(t);
	}
	int status = -1;
	CHECK(write(go[1], "x", 1) == 1 && waitpid(child, &status, 0) == child &&
	      WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "the io_uring child did not get its byte after attach/detach (status 0x%x)", status);
	close(go[1]);
}

static void case_errors(void)
{
	char *comm = NULL;

	expect_refused(free_pid(), -ESRCH, "no such process", "no such PID");
	pid_t z = zombie();
	expect_refused(z, -ESRCH, "zombie", "zombie");
	waitpid(z, NULL, 0);
	if (read_full_file("/proc/2/comm", &comm, NULL) == 0 && !strcmp(comm, "kthreadd\n"))
		expect_refused(2, -EINVAL, "kernel thread", "kthreadd");
	else
		fprintf(stderr, "  PID 2 is not kthreadd here: kernel thread not checked\n");
	free(comm);
	expect_refused(1, -EPERM, "init", "PID 1");
	expect_refused(getpid(), -EPERM, "itself", "self");
	expect_refused(0, -EINVAL, NULL, "PID 0");
	refuse_traced();
	allow_seccomp();
	refuse_pinned();
}

/* ---- freeze ---- */

static pid_t last_tid(pid_t pid)
{
	char path[64];
	struct dirent *de;
	pid_t last = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	while (d && (de = readdir(d)))
		last = MAX(last, (pid_t)atoi(de->d_name));
	if (d)
		closedir(d);
	return last;
}

/*
 * A freeze that fails half way (one thread is traced by someone else) must
 * let go of the threads it had seized and interrupted but not waited for.
 */
static void freeze_fails_cleanly(struct wl *w)
{
	char states[64];
	struct freeze f;
	int release;
	pid_t tid = last_tid(w->pid); /* listed last: the others are seized first */
	pid_t other = start_other_tracer(tid, &release);
	int r = freeze_process(w->pid, &f);

	CHECK(r == -EPERM, "freeze with thread %d traced elsewhere: %d (%s), want EPERM", (int)tid,
	      r, strerror(-r));
	if (r == 0)
		thaw_process(&f, false);
	CHECK(wait_states(w->pid, RUNNING_STATES, 1000, states, sizeof(states)),
	      "after a failed freeze: %s", states);
	close(release);
	waitpid(other, NULL, 0);
	check_clean(w, "after a failed freeze");
	fprintf(stderr, "  freeze with thread %d traced elsewhere: %s\n",
		(int)tid, strerror(-r));
}

static void case_freeze(void)
{
	char states[64];
	struct selfcheck c;
	struct freeze f;
	struct wl w;

	if (start_selfcheck_target(&w, "2") < 0)
		return;
	size_t n_tasks = task_states(w.pid, states, sizeof(states));
	int r = freeze_process(w.pid, &f);
	CHECK(r == 0, "freeze: %s", strerror(-r));
	if (r < 0) {
		wl_stop(&w);
		return;
	}
	CHECK(f.n == n_tasks, "froze %zu threads of %zu", f.n, n_tasks);
	task_states(w.pid, states, sizeof(states));
	CHECK(strspn(states, "t") == n_tasks, "states while frozen: %s (want all t)", states);
	fprintf(stderr, "  frozen %zu threads in %.3f ms: %s\n", f.n,
		ns_to_ms(f.t_frozen_ns - f.t_start_ns), states);
	/* A signal sent while frozen is handled once, after the thaw. */
	kill(w.pid, SIGUSR1);
	sleep_us(20000);
	task_states(w.pid, states, sizeof(states));
	CHECK(strspn(states, "t") == n_tasks, "states while frozen, after a signal: %s", states);
	thaw_process(&f, false);
	CHECK(wait_states(w.pid, RUNNING_STATES, 1000, states, sizeof(states)),
	      "states after thaw: %s", states);
	unsigned long b0 = busy_loops(&w);
	sleep_us(30000);
	CHECK(busy_loops(&w) > b0, "busy threads do not run after thaw");
	CHECK(selfcheck(&w, &c) && c.usr1 == 1, "after thaw: %s (want usr1=1)", c.line);

	/* leave_stopped: group-stop on detach, until SIGCONT. */
	r = freeze_process(w.pid, &f);
	CHECK(r == 0, "freeze: %s", strerror(-r));
	if (r == 0) {
		thaw_process(&f, true);
		CHECK(wait_states(w.pid, "T", 1000, states, sizeof(states)),
		      "states after a leave_stopped thaw: %s (want all T)", states);
		sleep_us(50000);
		task_states(w.pid, states, sizeof(states));
		CHECK(strspn(states, "T") == n_tasks, "still stopped 50 ms later: %s", states);
		kill(w.pid, SIGCONT);
		CHECK(wait_states(w.pid, RUNNING_STATES, 1000, states, sizeof(states)),
		      "states after SIGCONT: %s", states);
		fprintf(stderr, "  leave_stopped: group-stopped until SIGCONT, then running\n");
	}
	uint64_t t0 = now_ns();
	for (int i = 0; i < 100; i++) {
		r = freeze_process(w.pid, &f);
		CHECK(r == 0, "freeze %d: %s", i, strerror(-r));
		if (r == 0)
			thaw_process(&f, false);
	}
	fprintf(stderr, "  100 freeze/thaw cycles: %.3f ms each\n", ns_to_ms(now_ns() - t0) / 100);
	CHECK(selfcheck(&w, &c) && c.usr1 == 1, "after freeze/thaw cycles: %s", c.line);
	freeze_fails_cleanly(&w);
	wl_stop(&w);
}

/* ---- churn ---- */

static unsigned long churned(struct wl *w, const char *cmd)
{
	char reply[64];

	return wl_cmd(w, reply, sizeof(reply), "churn %s", cmd) == 0 ? strtoul(reply + 3, NULL, 10)
								       : 0;
}

/* Each thread spins briefly, starts the next one and exits. */
static void *chain_thread(void *arg)
{
	pthread_attr_t attr;
	pthread_t t;

	spin_briefly(NULL);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	while (pthread_create(&t, &attr, chain_thread, NULL) != 0)
		;
	return arg;
}

/*
 * A main thread in epoll_wait() (which a stop ends with EINTR, so the
 * injection must choose another thread) and a chain of threads that live
 * 20 us each: the thread chosen may be gone by the time we seize it.
 * Each return of epoll_wait() is reported on fd.
 */
static void epoll_churn_target(int fd)
{
	struct epoll_event ev;
	pthread_t t;
	int ep = epoll_create1(0);

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	pthread_create(&t, NULL, chain_thread, NULL);
	for (;;) {
		int n = epoll_wait(ep, &ev, 1, -1), e = n < 0 ? errno : 0;

		if (write(fd, &e, sizeof(e)) != sizeof(e))
			_exit(1);
	}
}

static void attach_epoll_churn(void)
{
	unsigned ok = 0, failed = 0;
	int report[2], e;
	char why[256];

	if (pipe2(report, O_NONBLOCK) < 0)
		return;
	pid_t pid = fork();
	if (pid == 0)
		epoll_churn_target(report[1]);
	close(report[1]);
	sleep_us(20000);
	for (int i = 0; i < 200; i++) {
		struct tracker *t = NULL;
		int r = tracker_attach(pid, NULL, &t, why, sizeof(why));

		CHECK(r == 0, "attach %d to a churning target blocked in epoll_wait: %s", i, why);
		if (r < 0) {
			failed++;
			continue;
		}
		ok++;
		tracker_detach(t);
	}
	int returns = 0;
	while (read(report[0], &e, sizeof(e)) == sizeof(e))
		returns++;
	CHECK(returns == 0, "epoll_wait() in the target returned %d times during attaches", returns);
	/* A freeze stops every thread: there epoll_wait() does return EINTR. */
	struct freeze f;
	if (freeze_process(pid, &f) == 0)
		thaw_process(&f, false);
	sleep_us(20000);
	while (read(report[0], &e, sizeof(e)) == sizeof(e))
		fprintf(stderr, "  after one freeze, epoll_wait() in the target returned: %s\n",
			e ? strerror(e) : "0");
	fprintf(stderr, "  %u attaches to a target in epoll_wait with churning threads, %u failed\n",
		ok, failed);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(report[0]);
}

/* Threads come and go while we attach and freeze: every one there is held. */
static void case_churn(void)
{
	unsigned short_of = 0, failed = 0;
	char states[64];
	struct wl w;

	if (start_selfcheck_target(&w, NULL) < 0)
		return;
	char *before = proc_fds(w.pid);
	unsigned long c0 = churned(&w, "start");
	for (int i = 0; i < 100; i++) {
		struct tracker *t = attach_or_fail(w.pid, "churning target");
		struct freeze f;

		if (!t) {
			failed++;
			continue;
		}
		one_pass(t, 0, "churning target");
		int r = freeze_process(w.pid, &f);
		CHECK(r == 0, "cycle %d: freeze of a churning target: %s", i, strerror(-r));
		if (r == 0) {
			size_t n = task_states(w.pid, states, sizeof(states));
			CHECK(strspn(states, "t") == n, "cycle %d: states while frozen: %s", i, states);
			short_of += f.n != n;
			one_pass(t, PASS_FINAL, "churning target");
			thaw_process(&f, false);
		}
		tracker_detach(t);
		CHECK(wait_states(w.pid, RUNNING_STATES, 1000, states, sizeof(states)),
		      "cycle %d: states after thaw and detach: %s", i, states);
		if (test_failures)
			break;
	}
	unsigned long c1 = churned(&w, "stop");
	CHECK(c1 > c0 + 100, "only %lu threads were created meanwhile", c1 - c0);
	CHECK(short_of == 0, "%u freezes held fewer threads than the target had", short_of);
	CHECK(failed == 0, "%u attaches failed", failed);
	check_clean(&w, "after the churn");
	char *after = proc_fds(w.pid);
	CHECK(!strcmp(before, after), "fds differ:\n%s\n%s", before, after);
	CHECK(proc_has_uffd_wp(w.pid) == 0, "uffd-wp left on a churning target");
	fprintf(stderr, "  100 attach/freeze/detach cycles while %lu threads came and went\n",
		c1 - c0);
	free(before);
	free(after);
	wl_stop(&w);
	attach_epoll_churn();
}

/* ---- foreign-uffd ---- */

#define FOREIGN_BYTES (1UL << 20)

struct foreign {
	int uffd;
	uint8_t page[4096];
};

/* The target's own missing-fault handler: every page it is asked for
 * arrives filled with its page number. */
static void *foreign_handler(void *arg)
{
	struct foreign *fo = arg;
	struct uffd_msg m;

	for (;;) {
		struct pollfd p = { .fd = fo->uffd, .events = POLLIN };

		if (poll(&p, 1, -1) < 0 || read(fo->uffd, &m, sizeof(m)) != sizeof(m) ||
		    m.event != UFFD_EVENT_PAGEFAULT)
			continue;
		uint64_t addr = m.arg.pagefault.address & ~(PAGE_SIZE_4K - 1);
		memset(fo->page, (int)((addr >> 12) & 0x7f) | 0x80, sizeof(fo->page));
		struct uffdio_copy c = { .dst = addr, .src = (uintptr_t)fo->page, .len = 4096 };
		ioctl(fo->uffd, UFFDIO_COPY, &c);
	}
	return NULL;
}

/* Commands on cmd: a page index to read (answer: its byte on rep). */
static void foreign_target(int cmd, int rep)
{
	static struct foreign fo;
	struct uffdio_api api = { .api = UFFD_API };
	uint8_t *area = mmap(NULL, FOREIGN_BYTES, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uffdio_register reg = { .range = { (uintptr_t)area, FOREIGN_BYTES },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };
	pthread_t th;
	uint32_t page;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	fo.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (fo.uffd < 0 || ioctl(fo.uffd, UFFDIO_API, &api) < 0 ||
	    ioctl(fo.uffd, UFFDIO_REGISTER, &reg) < 0)
		_exit(3);
	pthread_create(&th, NULL, foreign_handler, &fo);
	if (write(rep, &area, sizeof(area)) != sizeof(area))
		_exit(1);
	while (read(cmd, &page, sizeof(page)) == sizeof(page)) {
		uint8_t v = area[(page % (FOREIGN_BYTES / 4096)) * 4096];
		if (write(rep, &v, 1) != 1)
			_exit(1);
	}
	_exit(0);
}

static bool foreign_page_ok(int cmd, int rep, uint64_t base, uint32_t page)
{
	uint8_t v = 0;

	if (write(cmd, &page, sizeof(page)) != sizeof(page) || read(rep, &v, 1) != 1)
		return false;
	return v == ((((base >> 12) + page) & 0x7f) | 0x80);
}

/*
 * A target using userfaultfd itself (postcopy-style missing faults): its
 * range cannot be registered by us (EBUSY), is read whole every pass
 * without touching its missing pages, and its own handler keeps working.
 */
static void case_foreign_uffd(void)
{
	int cmd[2], rep[2];
	uint64_t base = 0;
	struct pass p;

	if (pipe(cmd) < 0 || pipe(rep) < 0)
		return;
	pid_t pid = fork();
	if (pid == 0)
		foreign_target(cmd[0], rep[1]);
	if (read(rep[0], &base, sizeof(base)) != sizeof(base)) {
		CHECK(0, "the foreign-uffd target did not start");
		return;
	}
	CHECK(foreign_page_ok(cmd[1], rep[0], base, 1), "its handler before attach");
	struct tracker *t = attach_or_fail(pid, "target with its own uffd");
	if (t && tracker_pass(t, 0, &p) == 0) {
		ssize_t i = pass_find_region(&p, base);
		CHECK(i >= 0 && (p.regions[i].flags & REGION_UNTRACKED),
		      "its uffd range is not flagged untracked");
		pass_free(&p);
		CHECK(foreign_page_ok(cmd[1], rep[0], base, 2), "its handler while tracked");
		CHECK(tracker_pass(t, 0, &p) == 0, "second pass");
		struct range_set part = { 0 };
		range_set_clip(&p.data, base, base + FOREIGN_BYTES, &part);
		/* Read whole: its two populated pages as data, the rest zero. */
		CHECK(range_set_bytes(&part) == 2 * PAGE_SIZE_4K, "%llu bytes of its range as data",
		      (unsigned long long)range_set_bytes(&part));
		range_set_clip(&p.zero, base, base + FOREIGN_BYTES, &part);
		CHECK(range_set_bytes(&part) == FOREIGN_BYTES, "its range not covered whole: %llu",
		      (unsigned long long)range_set_bytes(&part));
		range_set_free(&part);
		pass_free(&p);
	}
	tracker_detach(t);
	CHECK(foreign_page_ok(cmd[1], rep[0], base, 3), "its handler after detach");
	fprintf(stderr, "  a range registered by the target's own uffd: untracked, read whole, "
		"its handler unaffected\n");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(cmd[0]);
	close(cmd[1]);
	close(rep[0]);
	close(rep[1]);
}

/* ---- stopped ---- */

static void case_stopped(void)
{
	char states[64];
	struct freeze f;
	struct wl w;

	if (start_selfcheck_target(&w, NULL) < 0)
		return;
	char *before = proc_fds(w.pid);
	kill(w.pid, SIGSTOP);
	CHECK(wait_states(w.pid, "T", 1000, states, sizeof(states)), "SIGSTOP: %s", states);
	struct tracker *t = attach_or_fail(w.pid, "group-stopped target");
	if (t) {
		one_pass(t, 0, "group-stopped target");
		int r = freeze_process(w.pid, &f);
		CHECK(r == 0, "freeze of a stopped target: %s", strerror(-r));
		if (r == 0) {
			one_pass(t, PASS_FINAL, "group-stopped target");
			thaw_process(&f, false);
		}
		tracker_detach(t);
	}
	CHECK(wait_states(w.pid, "T", 1000, states, sizeof(states)),
	      "a stopped target must stay stopped after attach, freeze and detach: %s", states);
	char *after = proc_fds(w.pid);
	CHECK(!strcmp(before, after), "fds differ:\n%s\n%s", before, after);
	CHECK(proc_has_uffd_wp(w.pid) == 0, "uffd-wp left on a stopped target");
	kill(w.pid, SIGCONT);
	CHECK(wait_states(w.pid, RUNNING_STATES, 1000, states, sizeof(states)),
	      "after SIGCONT: %s", states);
	check_clean(&w, "stopped target after SIGCONT");
	fprintf(stderr, "  group-stopped target: attached, frozen, detached, still stopped; "
		"runs after SIGCONT\n");
	free(before);
	free(after);
	wl_stop(&w);
}

/* ---- tracer-death ---- */

enum { PH_START, PH_ATTACH, PH_PASS, PH_FREEZE, PH_FINAL, PH_THAW, PH_DETACH, PH_N };

static const char *const phase_names[] = { "start", "attach", "pass", "freeze", "final-pass",
					   "thaw", "detach" };

/* A checkpoint's final pass: freeze, scan, thaw. */
static void daemon_freeze(pid_t target, struct tracker *t, atomic_int *phase)
{
	struct freeze f;
	struct pass p;

	atomic_store(phase, PH_FREEZE);
	if (freeze_process(target, &f) < 0)
		return;
	atomic_store(phase, PH_FINAL);
	if (tracker_pass(t, PASS_FINAL, &p) == 0)
		pass_free(&p);
	atomic_store(phase, PH_THAW);
	thaw_process(&f, false);
}

/*
 * The "daemon", phase published: the tracker's whole cycle forever, or
 * (freeze_only) one attach and then checkpoint after checkpoint, so that
 * kills land in the freeze too.
 */
static void daemon_loop(pid_t target, atomic_int *phase, bool freeze_only)
{
	struct tracker *t = NULL;
	char why[256];
	struct pass p;

	for (;;) {
		atomic_store(phase, PH_ATTACH);
		if (tracker_attach(target, NULL, &t, why, sizeof(why)) < 0)
			_exit(2);
		atomic_store(phase, PH_PASS);
		if (tracker_pass(t, 0, &p) == 0)
			pass_free(&p);
		while (freeze_only)
			daemon_freeze(target, t, phase);
		daemon_freeze(target, t, phase);
		atomic_store(phase, PH_DETACH);
		tracker_detach(t);
	}
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && (p[n] == '\n' || !p[n]))
			return true;
	return false;
}

/* Lines of a not in b; *uffd counts those that are userfaultfds. */
static int lines_missing(const char *a, const char *b, int *uffd)
{
	char *copy = strdup(a), *save = NULL;
	int n = 0;

	for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		if (!has_line(b, l)) {
			n++;
			*uffd += !!strstr(l, "=anon_inode:[userfaultfd]");
		}
	free(copy);
	return n;
}

/* Only a userfaultfd may have been added: created, not yet closed. */
static bool only_uffd_added(const char *before, const char *after)
{
	int added_uffd = 0, removed_uffd = 0;
	int added = lines_missing(after, before, &added_uffd);
	int removed = lines_missing(before, after, &removed_uffd);

	return added == 1 && added_uffd == 1 && removed == 0;
}

struct death_tally {
	unsigned kills[PH_N], target_killed[PH_N], uffd_left[PH_N], wp_left[PH_N];
};

/*
 * Is pid on its way out?  A tracer dying with PTRACE_O_EXITKILL set sends
 * SIGKILL before it can be reaped, so by then the target has it pending or
 * is exiting already -- but for the instant between taking the signal and
 * marking itself exiting: look three times, a millisecond apart.
 */
static bool dying(pid_t pid)
{
	for (int i = 0; i < 3; i++) {
		char path[64], *text = NULL;
		unsigned long long pend = 0;

		if (task_exiting(pid, pid))
			return true;
		snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
		if (read_full_file(path, &text, NULL) < 0)
			return true;
		for (char *p = text; (p = strstr(p, "Pnd:")); p += 4)
			pend |= strtoull(p + 4, NULL, 16);
		free(text);
		if (pend & (1ULL << (SIGKILL - 1)))
			return true;
		sleep_us(1000);
	}
	return false;
}

/* After the daemon died: the target runs, unstopped, unregistered, intact. */
static bool target_after_death(struct wl *w, const char *fds_before, uint64_t sum, int ph,
			       unsigned iter, struct death_tally *tally)
{
	char states[64];
	int status;

	if (dying(w->pid) && waitpid(w->pid, &status, 0) == w->pid) {
		w->pid = 0;
		/* PTRACE_O_EXITKILL, set while the registers are ours. */
		CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && ph == PH_ATTACH,
		      "iteration %u: the target died (status 0x%x) after the daemon was killed in "
		      "%s", iter, status, phase_names[ph]);
		tally->target_killed[ph]++;
		fclose(w->in);
		fclose(w->out);
		return false;
	}
	CHECK(wait_states(w->pid, RUNNING_STATES, 1000, states, sizeof(states)),
	      "iteration %u: target left in states %s after the daemon died in %s", iter, states,
	      phase_names[ph]);
	CHECK(proc_has_uffd_wp(w->pid) == 0, "iteration %u: uffd-wp left after the daemon died in %s",
	      iter, phase_names[ph]);
	tally->wp_left[ph] += wp_pages(w->pid) > 0;
	char *after = proc_fds(w->pid);
	if (strcmp(fds_before, after)) {
		CHECK(only_uffd_added(fds_before, after), "iteration %u: fds after the daemon died "
		      "in %s:\nbefore:\n%s\nafter:\n%s", iter, phase_names[ph], fds_before, after);
		tally->uffd_left[ph]++;
	}
	free(after);
	struct selfcheck c;
	CHECK(selfcheck(w, &c), "iteration %u: self-check after the daemon died in %s: %s", iter,
	      phase_names[ph], c.line);
	CHECK(region_sum(w, "anon") == sum, "iteration %u: memory changed after the daemon died "
	      "in %s", iter, phase_names[ph]);
	return true;
}

static void case_tracer_death(void)
{
	enum { ITERATIONS = 300 };
	atomic_int *phase = mmap(NULL, sizeof(*phase), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct death_tally tally = { 0 };
	bool alive = false;
	char *fds = NULL;
	uint64_t sum = 0;
	struct wl w;

	if (phase == MAP_FAILED)
		return;
	for (unsigned i = 0; i < ITERATIONS && !test_failures; i++) {
		if (!alive) {
			if (start_selfcheck_target(&w, NULL) < 0)
				break;
			sum = region_sum(&w, "anon");
			alive = true;
		}
		free(fds);
		fds = proc_fds(w.pid);
		atomic_store(phase, PH_START);
		pid_t daemon = fork();
		bool freeze_only = i % 3 == 2;
		if (daemon == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			daemon_loop(w.pid, phase, freeze_only);
		}
		/* Some kills fall into the first attach, some into freezes. */
		sleep_us(freeze_only ? 3000 + rnd(10000) : rnd(2) ? rnd(12000) : 300 + rnd(2500));
		kill(daemon, SIGKILL);
		int status;
		waitpid(daemon, &status, 0);
		int ph = atomic_load(phase); /* the step it died in */
		CHECK(WIFSIGNALED(status), "the daemon exited by itself (status 0x%x)", status);
		tally.kills[ph]++;
		alive = target_after_death(&w, fds, sum, ph, i, &tally);
	}
	fprintf(stderr, "  daemon SIGKILLed %d times; by phase: kills / target killed (EXITKILL) / "
		"target kept a uffd fd / pages left write-protected\n", ITERATIONS);
	for (int ph = 0; ph < PH_N; ph++)
		fprintf(stderr, "    %-10s %4u / %u / %u / %u\n", phase_names[ph], tally.kills[ph],
			tally.target_killed[ph], tally.uffd_left[ph], tally.wp_left[ph]);
	if (alive) {
		/* Whatever was left behind does not stop the next attach. */
		struct tracker *t = attach_or_fail(w.pid, "after the daemon deaths");
		if (t) {
			one_pass(t, 0, "after the daemon deaths");
			tracker_detach(t);
		}
		check_clean(&w, "at the end");
		wl_stop(&w);
	}
	free(fds);
	munmap(phase, sizeof(*phase));
}

static void on_alarm(int sig)
{
	static const char msg[] = "FAIL: the test hung (alarm)\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(1);
	_exit(1);
}

static const struct {
	const char *name;
	void (*fn)(void);
} cases[] = {
	{ "clean", case_clean },         { "signals", case_signals },
	{ "busy", case_busy },           { "exit-race", case_exit_race },
	{ "errors", case_errors },       { "freeze", case_freeze },
	{ "stopped", case_stopped },     { "tracer-death", case_tracer_death },
	{ "churn", case_churn },         { "foreign-uffd", case_foreign_uffd },
};

int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "--under-seccomp"))
		return exec_under_seccomp(argv + 2);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGALRM, on_alarm);
	rng ^= (uint64_t)getpid() << 20 ^ now_ns();
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		if (argc > 1 && strcmp(argv[1], cases[i].name))
			continue;
		int before = test_failures;
		alarm(240);
		fprintf(stderr, "%s:\n", cases[i].name);
		cases[i].fn();
		alarm(0);
		fprintf(stderr, "%s: %s\n", cases[i].name, test_failures == before ? "ok" : "FAILED");
	}
	return test_failures ? 1 : 0;
}
