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

struct freeze {
	pid_t pid;
	struct frozen_thread *t;
	size_t n, cap;
	uint64_t t_start_ns, t_frozen_ns;
};

int freeze_process(pid_t pid, struct freeze *f);
/* leave_stopped: queue SIGSTOP first, so the process group-stops on detach. */
int thaw_process(struct freeze *f, bool leave_stopped);
