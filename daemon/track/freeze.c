// SPDX-License-Identifier: GPL-2.0-only
#include "track/freeze.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

#include "basic/util.h"
#include "track/inject.h"

static bool have_thread(const struct freeze *f, pid_t tid)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->t[i].tid == tid)
			return true;
	return false;
}

static int add_thread(struct freeze *f, pid_t tid)
{
	if (f->n == f->cap) {
		size_t ncap = f->cap ? f->cap * 2 : 16;
		struct frozen_thread *nt = reallocarray(f->t, ncap, sizeof(*nt));

		if (!nt)
			return -ENOMEM;
		f->t = nt;
		f->cap = ncap;
	}
	f->t[f->n++] = (struct frozen_thread){ .tid = tid };
	return 0;
}

static void drop_thread(struct freeze *f, size_t i)
{
	f->t[i] = f->t[--f->n];
}

/* Wait until thread i is in a ptrace stop; drop it if it exited. */
static int wait_thread(struct freeze *f, size_t i, bool *dropped)
{
	int status;

	*dropped = false;
	for (;;) {
		pid_t w = waitpid(f->t[i].tid, &status, __WALL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 || WIFEXITED(status) || WIFSIGNALED(status)) {
			drop_thread(f, i);
			*dropped = true;
			return 0;
		}
		if (!WIFSTOPPED(status))
			continue;
		if ((status >> 16) == 0 && WSTOPSIG(status) != SIGTRAP)
			f->t[i].sig = WSTOPSIG(status); /* keep it for the thaw */
		else if ((status >> 16) == 0)
			f->t[i].sig = SIGTRAP;
		return 0;
	}
}

struct seizing {
	struct freeze *f;
	size_t n_new;
};

static int seize_one(void *ud, pid_t tid)
{
	struct seizing *z = ud;

	if (have_thread(z->f, tid))
		return 0;
	if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) < 0)
		/* Exited since listed (ESRCH), or exiting (EPERM). */
		return errno == ESRCH || task_exiting(z->f->pid, tid) ? 0 : -errno;
	if (add_thread(z->f, tid) < 0) {
		ptrace(PTRACE_DETACH, tid, NULL, NULL);
		return -ENOMEM;
	}
	ptrace(PTRACE_INTERRUPT, tid, NULL, NULL);
	z->n_new++;
	return 0;
}

/* Seize and interrupt every thread not yet held; *n_new: how many. */
static int seize_new_threads(struct freeze *f, size_t *n_new)
{
	struct seizing z = { f, 0 };
	int r = proc_task_foreach(f->pid, seize_one, &z);

	*n_new = z.n_new;
	return r;
}

int freeze_process(pid_t pid, struct freeze *f)
{
	size_t n_new, waited = 0;
	int r;

	*f = (struct freeze){ .pid = pid, .t_start_ns = now_ns() };
	/* A thread may clone before it stops: list again until nothing new. */
	do {
		r = seize_new_threads(f, &n_new);
		if (r < 0)
			goto fail;
		while (waited < f->n) {
			bool dropped;

			wait_thread(f, waited, &dropped);
			if (!dropped)
				waited++;
		}
	} while (n_new);
	if (f->n == 0) {
		r = -ESRCH;
		goto fail;
	}
	f->t_frozen_ns = now_ns();
	return 0;
fail:
	thaw_process(f, false);
	return r;
}

/*
 * PTRACE_DETACH needs the thread in a ptrace stop: one seized and
 * interrupted but not waited for yet (a freeze that failed half way) is
 * waited for first, else it would stop later and stay stopped.  One that
 * exited is reaped.
 */
static void detach_thread(pid_t tid, int sig)
{
	for (;;) {
		int status;
		pid_t w;

		if (ptrace(PTRACE_DETACH, tid, NULL, (void *)(long)sig) == 0 || errno != ESRCH)
			return;
		while ((w = waitpid(tid, &status, __WALL)) < 0 && errno == EINTR)
			;
		if (w < 0 || !WIFSTOPPED(status))
			return;
		if ((status >> 16) == 0)
			sig = WSTOPSIG(status); /* a signal-delivery-stop: pass it on */
	}
}

int thaw_process(struct freeze *f, bool leave_stopped)
{
	int r = 0;

	if (leave_stopped && f->n && kill(f->pid, SIGSTOP) < 0)
		r = -errno;
	for (size_t i = 0; i < f->n; i++)
		detach_thread(f->t[i].tid, f->t[i].sig);
	free(f->t);
	f->t = NULL;
	f->n = f->cap = 0;
	return r;
}
