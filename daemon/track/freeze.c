// SPDX-License-Identifier: GPL-2.0-only
#include "track/freeze.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/util.h"
#include "track/inject.h"
#include "track/target.h"

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

/* One walk of /proc/PID/task: threads seized, and did any exit under it? */
struct walk {
	struct freeze *f;
	size_t n_new;
	bool exits;
};

/* Wait until thread i is in a ptrace stop; drop it if it exited. */
static void wait_thread(struct walk *w, size_t i, bool *dropped)
{
	struct freeze *f = w->f;
	int status;

	*dropped = false;
	for (;;) {
		pid_t p = waitpid(f->t[i].tid, &status, __WALL);

		if (p < 0 && errno == EINTR)
			continue;
		if (p < 0 || WIFEXITED(status) || WIFSIGNALED(status)) {
			drop_thread(f, i);
			f->threads_exited++;
			w->exits = true;
			*dropped = true;
			return;
		}
		if (!WIFSTOPPED(status))
			continue;
		if ((status >> 16) == 0 && WSTOPSIG(status) != SIGTRAP)
			f->t[i].sig = WSTOPSIG(status); /* keep it for the thaw */
		else if ((status >> 16) == 0)
			f->t[i].sig = SIGTRAP;
		return;
	}
}

/* A group leader that called pthread_exit(): listed until the process ends. */
static bool zombie_leader(pid_t pid, pid_t tid)
{
	unsigned long flags;
	char state;

	return tid == pid && proc_task_stat(pid, tid, &state, &flags) == 0 && state == 'Z';
}

static int seize_one(void *ud, pid_t tid)
{
	struct walk *w = ud;
	struct freeze *f = w->f;

	if (have_thread(f, tid))
		return 0;
	if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) < 0) {
		int r = -errno;

		if (zombie_leader(f->pid, tid))
			return 0;
		if (!task_exiting(f->pid, tid)) {
			target_refusal(f->pid, tid, r, f->why, sizeof(f->why));
			return r;
		}
		f->threads_exited++; /* ESRCH, or EPERM: it exited as we came */
		w->exits = true;
		return 0;
	}
	if (add_thread(f, tid) < 0) {
		ptrace_let_go(tid, 0);
		return -ENOMEM;
	}
	ptrace(PTRACE_INTERRUPT, tid, NULL, NULL);
	w->n_new++;
	return 0;
}

/*
 * Seize and interrupt every thread not yet held, then wait for each to
 * stop.  *settled: the walk found every thread held and none exited.
 */
static int walk_once(struct freeze *f, bool *settled)
{
	struct walk w = { .f = f };
	size_t i = f->n;
	int r;

	f->walks++;
	r = proc_task_foreach(f->pid, seize_one, &w);
	while (i < f->n) {
		bool dropped;

		wait_thread(&w, i, &dropped);
		if (!dropped)
			i++;
	}
	*settled = !w.n_new && !w.exits;
	return r;
}

/*
 * Does the kernel count more threads than we hold?  A walk of the task
 * list can miss a thread (procfs lists threads by position, and one that
 * vanished mid-walk without our seeing it shifts the rest); the count
 * cannot.  An exited thread not yet released counts too, briefly; a group
 * leader that called pthread_exit() counts until the process ends.
 */
static bool threads_unheld(const struct freeze *f)
{
	uint64_t n;
	char v[32];

	if (proc_status_field(f->pid, "Threads", v, sizeof(v)) < 0 ||
	    parse_number(v, UINT32_MAX, &n) < 0)
		return false; /* gone: the next step says so */
	return n > f->n + zombie_leader(f->pid, f->pid);
}

/* The calling thread's nice value in *old, then FREEZE_NICE; -errno. */
static int raise_priority(int *old)
{
	id_t self = (id_t)gettid();
	int v;

	errno = 0;
	v = getpriority(PRIO_PROCESS, self);
	if (v == -1 && errno)
		return -errno;
	if (v <= FREEZE_NICE) /* already there (or above): nothing to put back */
		return -EALREADY;
	if (setpriority(PRIO_PROCESS, self, FREEZE_NICE) < 0)
		return -errno;
	*old = v;
	return 0;
}

/*
 * Then SCHED_FIFO when allowed (RLIMIT_RTPRIO >= FREEZE_RT_PRIO or
 * CAP_SYS_NICE, and no RestrictRealtime=): nice -20 alone does not keep
 * the target's runnable threads off our CPU (see freeze.h).
 */
static bool raise_realtime(void)
{
	struct sched_param sp = { .sched_priority = FREEZE_RT_PRIO };

	return sched_getscheduler(0) == SCHED_OTHER && sched_setscheduler(0, SCHED_FIFO, &sp) == 0;
}

static void restore_priority(struct freeze *f)
{
	/* Back to SCHED_OTHER is always allowed (the nice value stays). */
	if (f->realtime && sched_setscheduler(0, SCHED_OTHER, &(struct sched_param){ 0 }) < 0)
		log_debug_errno(errno, "freeze: SCHED_OTHER not put back: %m");
	f->realtime = false;
	if (!f->niced)
		return;
	/* Raising a nice value needs no privilege: this cannot fail. */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), f->nice_before) < 0)
		log_debug_errno(errno, "freeze: nice %d not put back: %m", f->nice_before);
	f->niced = false;
}

int freeze_quiet_stops(void)
{
	struct sigaction sa;

	if (sigaction(SIGCHLD, NULL, &sa) < 0)
		return -errno;
	sa.sa_flags |= SA_NOCLDSTOP;
	return sigaction(SIGCHLD, &sa, NULL) < 0 ? -errno : 0;
}

bool freeze_priority_allowed(bool *realtime)
{
	struct freeze f = { 0 };
	int r = raise_priority(&f.nice_before);

	f.niced = r == 0;
	f.realtime = raise_realtime();
	*realtime = f.realtime;
	restore_priority(&f);
	return r == 0 || r == -EALREADY;
}

int freeze_process(pid_t pid, struct freeze *f)
{
	bool settled = false;
	int r = 0;

	*f = (struct freeze){ .pid = pid };
	f->niced = raise_priority(&f->nice_before) == 0;
	f->realtime = raise_realtime();
	f->t_start_ns = now_ns();
	/*
	 * Walk again until a walk finds every thread held and stopped: a
	 * thread may clone before it stops, and one that exits may have
	 * cloned first -- or made the walk skip others, procfs lists threads
	 * by position.  A stopped thread clones no more, so walks end.
	 */
	while (!settled && r == 0) {
		if (f->walks == FREEZE_MAX_WALKS) {
			snprintf(f->why, sizeof(f->why), "threads of process %d kept exiting and being "
				 "created through %u walks of its thread list", (int)pid, f->walks);
			r = -EAGAIN;
			break;
		}
		r = walk_once(f, &settled);
		if (settled && r == 0 && threads_unheld(f))
			settled = false;
	}
	if (r == 0 && f->n == 0)
		r = -ESRCH;
	if (r == -ESRCH)
		snprintf(f->why, sizeof(f->why), "process %d exited", (int)pid);
	if (r < 0) {
		thaw_process(f, false);
		return r;
	}
	f->t_frozen_ns = now_ns();
	return 0;
}

int thaw_process(struct freeze *f, bool leave_stopped)
{
	int r = 0;

	if (leave_stopped && f->n && kill(f->pid, SIGSTOP) < 0)
		r = -errno;
	/* A thread seized but not waited for yet (a freeze that failed half
	 * way) is waited for first, else it would stop later and stay stopped. */
	for (size_t i = 0; i < f->n; i++) {
		if (i + 1 == f->n)
			f->t_released_ns = now_ns();
		ptrace_let_go(f->t[i].tid, f->t[i].sig);
	}
	free(f->t);
	f->t = NULL;
	f->n = f->cap = 0;
	restore_priority(f);
	return r;
}
