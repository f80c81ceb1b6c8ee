// SPDX-License-Identifier: GPL-2.0-only
/*
 * wpmigd tracking and checkpointing processes whose threads come and go:
 * the daemon's attach (track) and freeze (checkpoint) meet threads that
 * exit as they are stopped, through the control socket, jobs and
 * wpmig-ctl (test-attach-churn drives the same library calls directly).
 *
 *   churn   a thread pool (the workload creating and joining threads) is
 *           checkpointed, and a process whose main thread waits in
 *           epoll_wait() beside chains of threads living microseconds is
 *           tracked, untracked and checkpointed, each until the daemon
 *           reports RACES threads that exited under it (its debug log);
 *           every request succeeds, the target runs on with its fds.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "basic/util.h"
#include "wpmigd-harness.h"

#define RACES 20
#define MAX_SECONDS 60

/* Threads that exited under the daemon, summed over its log lines. */
static unsigned races_logged(const struct wpmigd *d, pid_t pid, bool freezes)
{
	char *text = NULL, prefix[32];
	unsigned sum = 0;

	if (read_full_file(d->log, &text, NULL) < 0)
		return 0;
	snprintf(prefix, sizeof(prefix), "pid %d: ", (int)pid);
	for (char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		char *p = strstr(l, prefix), *end = strchr(l, '\n');
		unsigned walks, n;

		if (!p || (end && p > end))
			continue;
		p += strlen(prefix);
		if (!freezes && sscanf(p, "attached; %u threads", &n) == 1)
			sum += n;
		if (freezes && sscanf(p, "frozen in %u walks of its threads; %u", &walks, &n) == 2)
			sum += n;
	}
	free(text);
	return sum;
}

static bool run_ok(struct wpmigd *d, const char *verb, pid_t pid, const char *set)
{
	char p[16], *err = NULL;

	snprintf(p, sizeof(p), "%d", (int)pid);
	int rc = set ? CTL(d, NULL, &err, verb, p, "--set", set) : CTL(d, NULL, &err, verb, p);
	CHECK(rc == 0, "%s %d: exit %d: %s", verb, (int)pid, rc, err ? err : "");
	free(err);
	return rc == 0;
}

static bool out_of_time(uint64_t t0)
{
	return now_ns() - t0 > MAX_SECONDS * 1000000000ULL || test_failures;
}

/* Every thread running or dying: none left stopped by us. */
static void check_running(pid_t pid, const char *when)
{
	char path[64], *text = NULL;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	CHECK(read_full_file(path, &text, NULL) == 0 && !strstr(text, "State:\tt") &&
	      !strstr(text, "State:\tT") && strstr(text, "TracerPid:\t0\n"),
	      "%s: process %d left stopped or traced", when, (int)pid);
	free(text);
}

/* ---- a thread pool: checkpoints until the freeze met RACES exits ---- */

static void pool(struct wpmigd *d)
{
	static const char *const args[] = { "--anon", "16M", NULL };
	unsigned n = 0, races = 0;
	struct wl w;

	if (wl_start(&w, args) < 0)
		SKIP("cannot start the workload");
	char *before = proc_fds(w.pid);
	CHECK(wl_cmd(&w, NULL, 0, "churn start") == 0, "churn start");
	if (run_ok(d, "track", w.pid, NULL)) {
		uint64_t t0 = now_ns();
		while (races < RACES && !out_of_time(t0) && run_ok(d, "checkpoint", w.pid, "pool")) {
			n++;
			races = races_logged(d, w.pid, true);
		}
		run_ok(d, "untrack", w.pid, NULL);
	}
	CHECK(wl_cmd(&w, NULL, 0, "churn stop") == 0, "churn stop");
	check_running(w.pid, "thread pool");
	char *after = proc_fds(w.pid);
	CHECK(!strcmp(before, after), "fds differ:\n%s---\n%s", before, after);
	CHECK(proc_has_uffd_wp(w.pid) == 0, "uffd-wp left on the thread pool");
	fprintf(stderr, "  thread pool: %u checkpoints, %u thread-exit races hit in their freezes\n",
		n, races);
	CHECK(races >= RACES, "only %u races in %u checkpoints: this proves nothing here", races, n);
	free(before);
	free(after);
	wl_stop(&w);
}

/* ---- chains of threads beside a main thread in epoll_wait() ---- */

static void *chain_thread(void *arg)
{
	pthread_attr_t attr;
	pthread_t t;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	while (pthread_create(&t, &attr, chain_thread, arg) != 0)
		;
	return NULL;
}

static pid_t start_chains(void)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	struct epoll_event ev;
	pthread_t t;
	int ep = epoll_create1(0);

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (int i = 0; i < 4; i++)
		pthread_create(&t, NULL, chain_thread, NULL);
	for (;;)
		epoll_wait(ep, &ev, 1, -1);
}

static void chains(struct wpmigd *d)
{
	unsigned tracks = 0, ckpts = 0, attach_races = 0, freeze_races = 0;
	pid_t pid = start_chains();

	usleep(20000);
	char *before = proc_fds(pid);
	uint64_t t0 = now_ns();
	while (attach_races < RACES && !out_of_time(t0) && run_ok(d, "track", pid, NULL)) {
		tracks++;
		attach_races = races_logged(d, pid, false);
		if (!run_ok(d, "untrack", pid, NULL))
			break;
	}
	if (run_ok(d, "track", pid, NULL)) {
		t0 = now_ns();
		while (freeze_races < RACES && !out_of_time(t0) &&
		       run_ok(d, "checkpoint", pid, "chains")) {
			ckpts++;
			freeze_races = races_logged(d, pid, true);
		}
		run_ok(d, "untrack", pid, NULL);
	}
	check_running(pid, "chains");
	char *after = proc_fds(pid);
	CHECK(!strcmp(before, after), "fds differ:\n%s---\n%s", before, after);
	CHECK(proc_has_uffd_wp(pid) == 0, "uffd-wp left on the chains");
	fprintf(stderr, "  chains: %u tracks, %u thread-exit races hit in their attaches; "
		"%u checkpoints, %u races hit in their freezes\n", tracks, attach_races, ckpts,
		freeze_races);
	CHECK(attach_races >= RACES, "only %u races in %u tracks: this proves nothing here",
	      attach_races, tracks);
	CHECK(freeze_races >= RACES, "only %u races in %u checkpoints: this proves nothing here",
	      freeze_races, ckpts);
	free(before);
	free(after);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void test_churn(void)
{
	struct wpmigd d = { 0 };

	require_tracking();
	CHECK(wpmigd_start(&d, "log_level = debug\n", NULL) == 0, "daemon start");
	pool(&d);
	chains(&d);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit status");
	wpmigd_cleanup(&d);
}

int main(int argc, char **argv)
{
	static const struct subtest tests[] = {
		{ "churn", test_churn },
	};

	return run_subtests(argc, argv, tests, ARRAY_SIZE(tests));
}
