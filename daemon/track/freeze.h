/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Stop every thread of a process for a consistent final pass, and let it
 * go again.  ptrace (SEIZE + INTERRUPT) rather than the cgroup freezer: it
 * needs no cgroup move of the target and a dying daemon releases it (the
 * kernel detaches tracees when the tracer exits).  Freeze and thaw must be
 * called from the same thread (ptrace requests come from the tracer thread).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct frozen_thread {
	pid_t tid;
	int sig; /* signal caught in a signal-delivery-stop, given back on thaw */
};

/* Walks of /proc/PID/task a freeze may take before it gives up. */
#define FREEZE_MAX_WALKS 256

struct freeze {
	pid_t pid;
	struct frozen_thread *t;
	size_t n, cap;
	uint64_t t_start_ns, t_frozen_ns;
	/*
	 * When the last thread's release was asked for (thaw_process).  The
	 * pause ends there: a released thread may preempt the thread that
	 * thaws, which then waits for a CPU while the target already runs.
	 */
	uint64_t t_released_ns;
	int nice_before;         /* the freezing thread's, put back by the thaw */
	bool niced;              /* it runs at FREEZE_NICE until the thaw */
	bool realtime;           /* and SCHED_FIFO FREEZE_RT_PRIO until the thaw */
	unsigned walks;          /* of /proc/PID/task, until one found all held */
	unsigned threads_exited; /* as they were seized or waited for (skipped) */
	char why[160];           /* on failure, for the user */
};

/*
 * The freezing thread runs at this nice value from the freeze to the end of
 * the thaw: ahead of the target's released threads and of other processes
 * on the CPUs, which would otherwise preempt it between one thread's stop
 * (or release) and the next while the rest wait stopped.  Needs RLIMIT_NICE
 * of 40 (the unit's LimitNICE=-20) or CAP_SYS_NICE; without either the
 * freeze runs at the thread's own priority.
 */
#define FREEZE_NICE -20

/*
 * And, when allowed (RLIMIT_RTPRIO of at least this, i.e. LimitRTPRIO=1
 * without RestrictRealtime=yes, or CAP_SYS_NICE), SCHED_FIFO at this
 * priority over the same span.  nice -20 is not enough against the
 * target's own threads: under EEVDF a thread woken by our stop request or
 * release, or a spinner waiting on our CPU, is picked before the freezing
 * thread whenever it is owed more time, whatever the weights, and then runs
 * its slice (2-3 ms) while the other threads wait stopped (traced, issue
 * 16: the freeze and thaw tails of a target with spinning threads).
 */
#define FREEZE_RT_PRIO 1

/* May the calling thread take FREEZE_NICE (*realtime: and FREEZE_RT_PRIO)?
 * Tried and put back (at start-up, to say once in the log when it may not). */
bool freeze_priority_allowed(bool *realtime);

/*
 * Keep the target's stops from signalling us (start-up, once; the SIGCHLD
 * handler stays what it is, SA_NOCLDSTOP is added).  Each ptrace stop
 * otherwise sends SIGCHLD to the daemon: the freezing thread blocks it, so
 * it is not ignored, and it wakes the daemon's main thread on the CPU the
 * stopping thread leaves.  Switching to the daemon's address space there
 * took up to 1 ms on the test machine (shadow paging), and until that
 * switch is done the stopped thread still counts as on its CPU: the
 * freezing thread's first ptrace request after the freeze waited for it
 * (0.6-0.95 ms in 2 of 11 restores, issue 13; docs/tracking.md).  The
 * freezing thread's waitpid is woken without the signal.  -errno.
 */
int freeze_quiet_stops(void);

/*
 * Stop every thread of pid.  A thread exiting under the freeze is skipped;
 * a thread traced by another fails it (-EPERM), as does a process exiting
 * (-ESRCH) or one whose threads never hold still (-EAGAIN); f->why says
 * which.  On failure nothing is left stopped.
 */
int freeze_process(pid_t pid, struct freeze *f);
/* leave_stopped: queue SIGSTOP first, so the process group-stops on detach. */
int thaw_process(struct freeze *f, bool leave_stopped);
