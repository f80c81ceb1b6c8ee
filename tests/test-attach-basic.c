// SPDX-License-Identifier: GPL-2.0-only
/*
 * Attach and detach leave the target as found, one case per run (argv[1]):
 *
 *   clean        fds, uffd-wp flags and the target's self-check around
 *                attach/pass/detach; no fd of ours in the target meanwhile
 *   signals      200 attach/detach cycles (every 4th with a freeze) under a
 *                flood of SIGUSR1 and SIGRTMIN+1: none lost or duplicated
 *   busy         a target whose threads all spin on the CPU
 *   foreign-uffd a target with its own userfaultfd on a range: that range is
 *                read whole in final passes only, the target's own fault
 *                handling is unaffected
 *
 * The target is tests/workload.c with --selfcheck: a thread checks its
 * registers around a busy loop, one is blocked in read(), one in
 * clock_nanosleep(), and signals are counted; "check" reports them.
 */
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attach-testlib.h"
#include "basic/util.h"

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
 * range cannot be registered by us (EBUSY), is read whole in every final
 * pass (not in live ones) without touching its missing pages, and its own
 * handler keeps working.
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
		/* A live pass leaves it alone (a copy each pass would be stored
		 * each time); the final pass reads it whole. */
		CHECK(tracker_pass(t, 0, &p) == 0, "second pass");
		struct range_set part = { 0 };
		range_set_clip(&p.data, base, base + FOREIGN_BYTES, &part);
		CHECK(range_set_bytes(&part) == 0, "a live pass read %llu bytes of it",
		      (unsigned long long)range_set_bytes(&part));
		range_set_clip(&p.zero, base, base + FOREIGN_BYTES, &part);
		CHECK(range_set_bytes(&part) == 0, "a live pass zeroed %llu bytes of it",
		      (unsigned long long)range_set_bytes(&part));
		pass_free(&p);
		CHECK(tracker_pass(t, PASS_FINAL, &p) == 0, "final pass");
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

static const struct attach_case cases[] = {
	{ "clean", case_clean },
	{ "signals", case_signals },
	{ "busy", case_busy },
	{ "foreign-uffd", case_foreign_uffd },
};

int main(int argc, char **argv)
{
	return attach_test_main(argc, argv, cases, ARRAY_SIZE(cases));
}
