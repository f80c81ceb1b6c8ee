// SPDX-License-Identifier: GPL-2.0-only
/*
 * Threads that come and go while we attach and freeze (argv[1] is the case):
 *
 *   churn        a target creating and joining threads all the time: attach
 *                and freeze hold every thread there is; then targets whose
 *                main thread waits in epoll_wait() beside chains of threads
 *                living microseconds.  A thread that exits while it is
 *                seized, interrupted or waited for is the race: each part
 *                runs until it has hit it RACES times (not just tried), and
 *                no attach or freeze may fail for it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attach-testlib.h"
#include "basic/util.h"
#include "track/freeze.h"
#include "track/inject.h"
#include "track/target.h"

/* Races each part tries to hit, and the fewest that prove anything (a
 * loaded machine hits fewer in the time: then the test says so, 77);
 * attempts and seconds it may take for them. */
#define RACES 100
#define RACES_MIN 25u
#define MAX_TRIES 20000
#define MAX_SECONDS 60

/* What one part saw. */
struct tally {
	unsigned attaches, attach_failed, attach_races, attach_most, main_taken;
	unsigned freezes, freeze_failed, freeze_races, walks_most, short_of;
};

static bool enough(const struct tally *t, bool freezes, uint64_t t0)
{
	bool hit = t->attach_races >= RACES && (!freezes || t->freeze_races >= RACES);

	return hit || t->attaches >= MAX_TRIES || now_ns() - t0 > MAX_SECONDS * 1000000000ULL;
}

/* Prints and checks what a part saw; the races it hit. */
static unsigned report(const char *what, const struct tally *t, bool freezes)
{
	fprintf(stderr, "  %s: %u attaches, %u thread-exit races hit (at most %u in one), "
		"main thread taken %u times", what, t->attaches, t->attach_races, t->attach_most,
		t->main_taken);
	if (freezes)
		fprintf(stderr, "; %u freezes, %u races hit (at most %u walks)", t->freezes,
			t->freeze_races, t->walks_most);
	fputc('\n', stderr);
	CHECK(t->attach_failed == 0, "%s: %u attaches failed", what, t->attach_failed);
	CHECK(t->freeze_failed == 0, "%s: %u freezes failed", what, t->freeze_failed);
	CHECK(t->short_of == 0, "%s: %u freezes held fewer threads than the target had", what,
	      t->short_of);
	if (!test_failures &&
	    (t->attach_races < RACES_MIN || (freezes && t->freeze_races < RACES_MIN))) {
		fprintf(stderr, "SKIP %s: only %u + %u thread-exit races in %u attaches and %u "
			"freezes (%u needed to prove anything; the machine is too busy)\n", what,
			t->attach_races, t->freeze_races, t->attaches, t->freezes, RACES_MIN);
		exit(77);
	}
	return t->attach_races + t->freeze_races;
}

static struct tracker *attach_counted(pid_t pid, struct tally *tl, const char *what)
{
	struct tracker *t = NULL;
	struct tracker_info info;
	char why[256] = "";
	int r = tracker_attach(pid, NULL, &t, why, sizeof(why));

	tl->attaches++;
	CHECK(r == 0, "%s: attach %u: %s", what, tl->attaches, why);
	if (r < 0) {
		tl->attach_failed++;
		return NULL;
	}
	tracker_get_info(t, &info);
	tl->attach_races += info.attach_threads_exited;
	tl->attach_most = MAX(tl->attach_most, info.attach_threads_exited);
	tl->main_taken += info.attach_threads_exited >= INJECT_EXITS_BEFORE_MAIN;
	return t;
}

#define PF_EXITING_FLAG 0x4ul /* include/linux/sched.h PF_EXITING */

/* A thread running under a freeze: what the next person needs to know. */
static void report_unheld(pid_t pid, pid_t tid, char state, unsigned long flags,
			  const struct freeze *f)
{
	char path[96], sc[128] = "?\n";
	bool held = false;
	FILE *fp;

	for (size_t k = 0; k < f->n; k++)
		held |= f->t[k].tid == tid;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", (int)pid, (int)tid);
	fp = fopen(path, "r");
	if (fp) {
		if (!fgets(sc, sizeof(sc), fp))
			snprintf(sc, sizeof(sc), "?\n");
		fclose(fp);
	}
	fprintf(stderr, "  thread %d not stopped under the freeze: state %c, flags %#lx, %s the "
		"freeze's list, %u walks, %u exited; syscall %s", (int)tid, state, flags,
		held ? "in" : "not in", f->walks, f->threads_exited, sc);
}

/*
 * Frozen means every thread that can run is in a ptrace stop ('t') and
 * held: one that exited under the freeze may still be listed, dying.
 */
static void check_frozen(pid_t pid, const struct freeze *f, struct tally *tl, const char *what)
{
	char path[64], states[512];
	size_t n = 0, held = 0, dying = 0;
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	CHECK(d, "%s: %s: %s", what, path, strerror(errno));
	while (d && (de = readdir(d)) && n + 1 < sizeof(states)) {
		pid_t tid = (pid_t)atoi(de->d_name);
		unsigned long flags;

		if (tid <= 0 || proc_task_stat(pid, tid, &states[n], &flags) < 0)
			continue;
		held += states[n] == 't';
		/* Exiting (PF_EXITING): still running do_exit(), it may show 'R'. */
		dying += states[n] == 'X' || states[n] == 'Z' ||
			 (states[n] != 't' && (flags & PF_EXITING_FLAG));
		if (states[n] != 't' && states[n] != 'X' && states[n] != 'Z' &&
		    !(flags & PF_EXITING_FLAG))
			report_unheld(pid, tid, states[n], flags, f);
		n++;
	}
	if (d)
		closedir(d);
	states[n] = 0;
	CHECK(held + dying == n, "%s: freeze %u: states while frozen: %s", what, tl->freezes,
	      states);
	tl->short_of += f->n != held;
}

static void freeze_counted(pid_t pid, struct tracker *t, struct tally *tl, const char *what)
{
	struct freeze f;
	int r = freeze_process(pid, &f);

	tl->freezes++;
	tl->freeze_races += f.threads_exited;
	tl->walks_most = MAX(tl->walks_most, f.walks);
	CHECK(r == 0, "%s: freeze %u: %s", what, tl->freezes, f.why[0] ? f.why : strerror(-r));
	if (r < 0) {
		tl->freeze_failed++;
		return;
	}
	check_frozen(pid, &f, tl, what);
	if (t)
		one_pass(t, PASS_FINAL, what);
	thaw_process(&f, false);
}

/* ---- the workload's churn: threads created and joined ---- */

static unsigned long churned(struct wl *w, const char *cmd)
{
	char reply[64];

	return wl_cmd(w, reply, sizeof(reply), "churn %s", cmd) == 0 ? strtoul(reply + 3, NULL, 10)
								       : 0;
}

/* Threads come and go while we attach and freeze: every one there is held. */
static unsigned workload_churn(void)
{
	struct tally tl = { 0 };
	char states[256];
	struct wl w;

	if (start_selfcheck_target(&w, NULL) < 0)
		return 0;
	char *before = proc_fds(w.pid);
	unsigned long c0 = churned(&w, "start");
	for (int i = 0; i < 100 && !test_failures; i++) {
		struct tracker *t = attach_counted(w.pid, &tl, "workload churn");

		if (!t)
			continue;
		one_pass(t, 0, "workload churn");
		freeze_counted(w.pid, t, &tl, "workload churn");
		tracker_detach(t);
		CHECK(wait_states(w.pid, RUNNING_STATES "XZ", 1000, states, sizeof(states)),
		      "cycle %d: states after thaw and detach: %s", i, states);
	}
	unsigned long c1 = churned(&w, "stop");
	CHECK(c1 > c0 + 100, "only %lu threads were created meanwhile", c1 - c0);
	CHECK(tl.attach_failed == 0 && tl.freeze_failed == 0 && tl.short_of == 0,
	      "workload churn: %u attaches and %u freezes failed, %u held too few threads",
	      tl.attach_failed, tl.freeze_failed, tl.short_of);
	check_clean(&w, "after the churn");
	char *after = proc_fds(w.pid);
	CHECK(!strcmp(before, after), "fds differ:\n%s\n%s", before, after);
	CHECK(proc_has_uffd_wp(w.pid) == 0, "uffd-wp left on a churning target");
	fprintf(stderr, "  100 attach/freeze/detach cycles while %lu threads came and went: "
		"%u + %u thread-exit races hit (attach + freeze)\n", c1 - c0, tl.attach_races,
		tl.freeze_races);
	free(before);
	free(after);
	wl_stop(&w);
	return tl.attach_races + tl.freeze_races;
}

/* ---- chains of short-lived threads beside a main thread in epoll_wait() ---- */

/* Each thread spins spin_ns, starts the next one and exits. */
static void *chain_thread(void *arg)
{
	uint64_t end = now_ns() + (uint64_t)(uintptr_t)arg;
	pthread_attr_t attr;
	pthread_t t;

	while (now_ns() < end)
		;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	while (pthread_create(&t, &attr, chain_thread, arg) != 0)
		;
	return NULL;
}

/*
 * A main thread in epoll_wait() (which a stop ends with EINTR, so the
 * injection must choose another thread) and `chains` chains of threads
 * that live spin_ns each: the thread chosen may be gone by the time we
 * seize it.  Each return of epoll_wait() is reported on fd.
 */
static pid_t start_chains(int fd, int chains, uint64_t spin_ns)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	struct epoll_event ev;
	pthread_t t;
	int ep = epoll_create1(0);

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (int i = 0; i < chains; i++)
		pthread_create(&t, NULL, chain_thread, (void *)(uintptr_t)spin_ns);
	for (;;) {
		int n = epoll_wait(ep, &ev, 1, -1), e = n < 0 ? errno : 0;

		if (write(fd, &e, sizeof(e)) != sizeof(e))
			_exit(1);
	}
}

static int drain(int fd)
{
	int e, n = 0;

	while (read(fd, &e, sizeof(e)) == sizeof(e))
		n++;
	return n;
}

/*
 * Attaches only, threads living 20 us each: the main thread is never the
 * one stopped (its epoll_wait() never returns), unless every thread
 * chosen exited first INJECT_EXITS_BEFORE_MAIN times.
 */
static unsigned attach_epoll_churn(void)
{
	struct tally tl = { 0 };
	int report_fd[2];

	if (pipe2(report_fd, O_NONBLOCK) < 0)
		return 0;
	pid_t pid = start_chains(report_fd[1], 1, 20000);
	close(report_fd[1]);
	sleep_us(20000);
	uint64_t t0 = now_ns();
	while (!enough(&tl, false, t0) && !test_failures) {
		struct tracker *t = attach_counted(pid, &tl, "epoll churn");

		if (t)
			tracker_detach(t);
	}
	int returns = drain(report_fd[0]);
	CHECK(returns <= (int)tl.main_taken, "epoll_wait() in the target returned %d times during "
	      "attaches (the main thread was taken %u times)", returns, tl.main_taken);
	/* A freeze stops every thread: there epoll_wait() does return EINTR. */
	struct freeze f;
	if (freeze_process(pid, &f) == 0)
		thaw_process(&f, false);
	sleep_us(20000);
	fprintf(stderr, "  after one freeze, epoll_wait() in the target returned %d times\n",
		drain(report_fd[0]));
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(report_fd[0]);
	return report("main in epoll_wait, threads living 20 us", &tl, false);
}

/*
 * Four chains of threads that exit right after starting the next: attach,
 * a freeze with a final pass, thaw, detach, until both hit the race.
 */
static unsigned storm(void)
{
	struct tally tl = { 0 };
	char states[512];
	int report_fd[2];

	if (pipe2(report_fd, O_NONBLOCK) < 0)
		return 0;
	pid_t pid = start_chains(report_fd[1], 4, 0);
	close(report_fd[1]);
	sleep_us(20000);
	uint64_t t0 = now_ns();
	while (!enough(&tl, true, t0) && !test_failures) {
		struct tracker *t = attach_counted(pid, &tl, "storm");

		freeze_counted(pid, t, &tl, "storm");
		if (t)
			tracker_detach(t);
		CHECK(wait_states(pid, RUNNING_STATES "XZ", 1000, states, sizeof(states)),
		      "storm: states after thaw and detach: %s", states);
		drain(report_fd[0]);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(report_fd[0]);
	return report("main in epoll_wait, 4 chains of threads exiting at once", &tl, true);
}

static void case_churn(void)
{
	unsigned races = workload_churn();

	races += attach_epoll_churn();
	races += storm();
	fprintf(stderr, "  thread-exit races hit in all: %u\n", races);
}

static const struct attach_case cases[] = {
	{ "churn", case_churn },
};

int main(int argc, char **argv)
{
	return attach_test_main(argc, argv, cases, ARRAY_SIZE(cases));
}
