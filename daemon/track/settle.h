/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Choosing the moment of a freeze.  On hosts with shadow paging (this
 * project's VMs) a thread's first return to user mode after its process's
 * page tables changed can stall for milliseconds in the host before it
 * executes anything, and a ptrace stop request is not taken until the stall
 * ends.  A live pass changes page tables (it re-protects what it found); a
 * thread that wakes up after it and before the freeze carries such a stall
 * into the pause (1-27 ms measured, issue 16).  A sleeping thread stopped
 * by the freeze does not stall: it stops inside the kernel.
 *
 * So: mark the threads' states before a pass; before the freeze, wait
 * (bounded) while a thread that was asleep at the mark is running, so its
 * stall ends before the pause begins rather than inside it.  Threads running
 * at the mark (spinning, busy) are not waited for: they would hold the wait
 * to its bound every time.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Threads looked at: the first ones of the task list (one procfs read each
 * per look, so the cost stays small for many threads). */
#define SETTLE_MAX_THREADS 64

struct settle {
	pid_t pid;
	unsigned n;
	pid_t tid[SETTLE_MAX_THREADS];
	bool ran[SETTLE_MAX_THREADS]; /* running at the mark: never waited for */
};

struct settle_result {
	uint64_t ns;      /* waited */
	unsigned threads; /* threads found running that were asleep at the mark */
	bool timed_out;   /* one still ran when the bound was reached */
};

/* Note which threads of pid run now (before a pass that may re-protect). */
void settle_mark(pid_t pid, struct settle *s);
/*
 * Wait, at most max_ns, until no thread that was asleep at the mark is
 * running.  No error: a thread that is gone, or unreadable, is not waited for.
 */
void settle_wait(const struct settle *s, uint64_t max_ns, struct settle_result *res);
