// SPDX-License-Identifier: GPL-2.0-only
/*
 * Threads that come and go while we attach and freeze (argv[1] is the case):
 *
 *   churn        a target creating and joining threads all the time: attach
 *                and freeze hold every thread there is
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attach-testlib.h"
#include "basic/util.h"
#include "track/freeze.h"

static void *spin_briefly(void *arg)
{
	uint64_t end = now_ns() + 20000;

	while (now_ns() < end)
		;
	return arg;
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

static const struct attach_case cases[] = {
	{ "churn", case_churn },
};

int main(int argc, char **argv)
{
	return attach_test_main(argc, argv, cases, ARRAY_SIZE(cases));
}
