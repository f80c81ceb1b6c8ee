// SPDX-License-Identifier: GPL-2.0-only
/*
 * track/settle.c against real processes: a thread asleep at the mark that
 * then runs is waited for until it sleeps again; a thread already running
 * at the mark (a spinner) is not; the wait stops at its bound; bound 0 does
 * not look at all.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "basic/util.h"
#include "track/settle.h"
#include "track/target.h"

#define MS 1000000ULL


struct child {
	pid_t pid;
	int cmd; /* write one byte: the child's main thread runs spin_ms, then sleeps */
};

static void *spinner(void *arg)
{
	for (volatile unsigned long n = 0;; n++)
		;
	return arg;
}

/* Main thread: blocked in read(); each byte makes it run spin_ms on the CPU. */
static int child_start(struct child *c, unsigned spin_ms, bool with_spinner)
{
	int p[2];

	if (pipe(p) < 0)
		return -errno;
	c->pid = fork();
	if (c->pid < 0)
		return -errno;
	if (c->pid == 0) {
		char b;
		pthread_t th;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(p[1]);
		if (with_spinner)
			pthread_create(&th, NULL, spinner, NULL);
		while (read(p[0], &b, 1) == 1)
			for (uint64_t t0 = now_ns(); now_ns() - t0 < spin_ms * MS;)
				;
		_exit(0);
	}
	close(p[0]);
	c->cmd = p[1];
	return 0;
}

static void child_stop(struct child *c)
{
	kill(c->pid, SIGKILL);
	waitpid(c->pid, NULL, 0);
	close(c->cmd);
}

static char state_of(pid_t pid)
{
	unsigned long flags;
	char s = '?';

	proc_task_stat(pid, pid, &s, &flags);
	return s;
}

/* Until the main thread is in state want (at most 2 s). */
static bool wait_state(pid_t pid, bool running)
{
	for (int i = 0; i < 2000; i++) {
		if ((state_of(pid) == 'R') == running)
			return true;
		usleep(1000);
	}
	return false;
}

/* A one-thread child marked asleep, then woken to run spin_ms. */
static void child_woken(struct child *c, unsigned spin_ms, struct settle *s)
{
	CHECK(child_start(c, spin_ms, false) == 0, "fork");
	CHECK(wait_state(c->pid, false), "child never slept");
	settle_mark(c->pid, s);
	CHECK(s->n == 1 && !s->ran[0], "mark: %u threads, ran %d", s->n, s->ran[0]);
	CHECK(write(c->cmd, "x", 1) == 1, "write");
	CHECK(wait_state(c->pid, true), "child never ran");
}

/* Asleep at the mark, then woken to run 300 ms: waited for until it sleeps. */
static void woken_thread_is_waited_for(void)
{
	struct settle_result res;
	struct child c;
	struct settle s;

	child_woken(&c, 300, &s);
	settle_wait(&s, 5000 * MS, &res);
	CHECK(res.threads == 1 && !res.timed_out, "threads %u, timed out %d", res.threads,
	      res.timed_out);
	CHECK(res.ns >= 100 * MS, "waited %.2f ms for a thread that runs 300 ms", res.ns / 1e6);
	CHECK(state_of(c.pid) != 'R', "still running after the wait (%c)", state_of(c.pid));
	child_stop(&c);
}

/* A thread running at the mark is not waited for; a sleeper never woken neither. */
static void spinner_is_not_waited_for(void)
{
	struct settle_result res;
	struct child c;
	struct settle s;
	unsigned ran = 0;

	CHECK(child_start(&c, 0, true) == 0, "fork");
	CHECK(wait_state(c.pid, false), "main thread never slept");
	usleep(20000); /* the spinner has started */
	settle_mark(c.pid, &s);
	for (unsigned i = 0; i < s.n; i++)
		ran += s.ran[i];
	CHECK(s.n == 2 && ran == 1, "mark: %u threads, %u running", s.n, ran);
	uint64_t t0 = now_ns();
	settle_wait(&s, 2000 * MS, &res);
	CHECK(res.threads == 0 && !res.timed_out && now_ns() - t0 < 500 * MS,
	      "threads %u, timed out %d, took %.2f ms", res.threads, res.timed_out,
	      (now_ns() - t0) / 1e6);
	child_stop(&c);
}

/* The bound holds against a thread that keeps running; 0 looks at nothing. */
static void bound(void)
{
	struct settle_result res;
	struct child c;
	struct settle s;

	child_woken(&c, 5000, &s);
	settle_wait(&s, 0, &res);
	CHECK(res.ns == 0 && res.threads == 0 && !res.timed_out, "bound 0: waited %.2f ms",
	      res.ns / 1e6);
	settle_wait(&s, 30 * MS, &res);
	CHECK(res.threads == 1 && res.timed_out, "threads %u, timed out %d", res.threads,
	      res.timed_out);
	CHECK(res.ns >= 30 * MS && res.ns < 1000 * MS, "bound 30 ms: waited %.2f ms",
	      res.ns / 1e6);
	child_stop(&c);
}

int main(void)
{
	woken_thread_is_waited_for();
	spinner_is_not_waited_for();
	bound();
	return test_failures ? 1 : 0;
}
