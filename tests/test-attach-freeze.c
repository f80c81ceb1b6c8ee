// SPDX-License-Identifier: GPL-2.0-only
/*
 * Freezing a target, one case per run (argv[1]):
 *
 *   freeze       all threads in 't' while frozen, running after thaw,
 *                group-stopped ('T') after a leave_stopped thaw until SIGCONT
 *   stopped      a target already group-stopped: attach and freeze work and
 *                leave it stopped
 *   quiet        each stop of a freeze signals us (SIGCHLD) until
 *                freeze_quiet_stops, then none does; an exit still does
 */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attach-testlib.h"
#include "basic/util.h"
#include "track/freeze.h"

/* ---- freeze ---- */

/* The calling thread's policy and nice value: raised for a freeze, put back
 * by its thaw (also a failed freeze's). */
struct prio {
	int policy, nice;
};

static struct prio my_prio(void)
{
	return (struct prio){ sched_getscheduler(0), getpriority(PRIO_PROCESS, (id_t)gettid()) };
}

static void check_prio(struct prio before, const char *when)
{
	struct prio now = my_prio();

	CHECK(now.policy == before.policy && now.nice == before.nice,
	      "%s: policy %d nice %d, want %d and %d as before the freeze", when, now.policy,
	      now.nice, before.policy, before.nice);
}

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
	struct prio before = my_prio();
	int r = freeze_process(w->pid, &f);

	CHECK(r == -EPERM, "freeze with thread %d traced elsewhere: %d (%s), want EPERM", (int)tid,
	      r, strerror(-r));
	CHECK(why_names_pid(f.why, tid) && why_names_pid(f.why, other),
	      "the reason '%s' does not name thread %d and its tracer %d", f.why, (int)tid,
	      (int)other);
	if (r == 0)
		thaw_process(&f, false);
	check_prio(before, "after a failed freeze");
	CHECK(wait_states(w->pid, RUNNING_STATES, 1000, states, sizeof(states)),
	      "after a failed freeze: %s", states);
	close(release);
	waitpid(other, NULL, 0);
	check_clean(w, "after a failed freeze");
	fprintf(stderr, "  freeze with thread %d traced elsewhere: %s: %s\n",
		(int)tid, strerror(-r), f.why);
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
	struct prio before = my_prio();
	int r = freeze_process(w.pid, &f);
	CHECK(r == 0, "freeze: %s", strerror(-r));
	if (r < 0) {
		wl_stop(&w);
		return;
	}
	CHECK(sched_getscheduler(0) == (f.realtime ? SCHED_FIFO : before.policy),
	      "policy while frozen: %d (realtime %d)", sched_getscheduler(0), f.realtime);
	fprintf(stderr, "  freezing thread: nice -20 %s, SCHED_FIFO %s\n", f.niced ? "yes" : "no",
		f.realtime ? "yes" : "no");
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
	check_prio(before, "after the thaw");
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

/* ---- quiet ---- */

static volatile sig_atomic_t n_chld;

static void on_chld(int sig)
{
	(void)sig;
	n_chld++;
}

/* Freeze and thaw w rounds times; the threads frozen each time. */
static size_t freeze_rounds(struct wl *w, int rounds)
{
	size_t n = 0;

	for (int i = 0; i < rounds; i++) {
		struct freeze f;
		int r = freeze_process(w->pid, &f);

		CHECK(r == 0, "freeze %d: %s", i, strerror(-r));
		if (r < 0)
			return 0;
		n = f.n;
		thaw_process(&f, false);
	}
	return n;
}

static void case_quiet(void)
{
	struct sigaction sa = { .sa_handler = on_chld, .sa_flags = SA_RESTART };
	struct wl w;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, NULL);
	if (start_selfcheck_target(&w, "2") < 0)
		return;
	/* Without it every stop signals us: this test can tell. */
	n_chld = 0;
	size_t n = freeze_rounds(&w, 5);
	int loud = n_chld;

	CHECK(loud >= 5, "%d SIGCHLD in 5 freezes of %zu threads without SA_NOCLDSTOP "
	      "(want at least one a freeze)", loud, n);
	int r = freeze_quiet_stops();

	CHECK(r == 0, "freeze_quiet_stops: %s", strerror(-r));
	sigaction(SIGCHLD, NULL, &sa);
	CHECK(sa.sa_handler == on_chld && (sa.sa_flags & SA_NOCLDSTOP) &&
	      (sa.sa_flags & SA_RESTART), "the handler and its flags kept, SA_NOCLDSTOP added");
	n_chld = 0;
	n = freeze_rounds(&w, 20);
	CHECK(n >= 3 && n_chld == 0, "%d SIGCHLD in 20 freezes of %zu threads (want 0)",
	      (int)n_chld, n);
	fprintf(stderr, "  SIGCHLD: %d in 5 freezes before, %d in 20 after; %zu threads\n", loud,
		(int)n_chld, n);
	wl_stop(&w);
	CHECK(n_chld >= 1, "the target's exit did not signal us");
}

static const struct attach_case cases[] = {
	{ "freeze", case_freeze },
	{ "stopped", case_stopped },
	{ "quiet", case_quiet },
};

int main(int argc, char **argv)
{
	return attach_test_main(argc, argv, cases, ARRAY_SIZE(cases));
}
