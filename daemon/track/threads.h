/* SPDX-License-Identifier: GPL-2.0-only
 *
 * The state of every thread of a frozen process, taken with the pages of a
 * checkpoint's frozen pass and put back by restore: general registers
 * (with fs/gs base and orig_rax), the FPU/extended state, the blocked
 * signal mask, and whether the thread was inside a syscall and how the
 * kernel would resume it.  Stored as the "threads" section of a generation
 * (SECTION_THREADS; the byte layout is in docs/image-format.md).
 *
 * Capture and apply need the threads in ptrace stops of the calling thread
 * (freeze.h); decoding checks every byte of what it is given.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "track/freeze.h"

#define THREADS_SECTION_NAME "threads"
#define THREADS_MAX 65536           /* threads in one section */
#define THREADS_XSTATE_MAX (64 << 10) /* bytes of one thread's extended state */

/* The kernel's restart codes (not in the uapi headers): what a syscall
 * interrupted by a stop leaves in rax for the restart logic. */
#define KERNEL_ERESTARTSYS 512
#define KERNEL_ERESTARTNOINTR 513
#define KERNEL_ERESTARTNOHAND 514
#define KERNEL_ERESTART_RESTARTBLOCK 516

enum {
	THREAD_IN_SYSCALL = 1 << 0, /* stopped inside (or at the end of) a syscall */
};

struct thread_state {
	pid_t tid;
	uint32_t flags;     /* THREAD_* */
	uint32_t stop_sig;  /* a signal the thread had stopped for at the freeze */
	uint64_t sigmask;   /* blocked signals, bit n-1 for signal n */
	struct user_regs_struct regs;
	uint8_t *xstate;    /* NT_X86_XSTATE, xstate_len bytes (points into the set) */
};

struct thread_states {
	struct thread_state *t;
	size_t n;
	uint32_t xstate_len; /* the same for every thread of a process */
	uint8_t *xstate_buf; /* n * xstate_len */
};

/* Every frozen thread of f. */
int threads_capture(const struct freeze *f, struct thread_states *out);
void threads_free(struct thread_states *ts);

/* The section's bytes (malloc'ed), and back; decode returns -EBADMSG for
 * anything that is not exactly a well-formed section. */
int threads_encode(const struct thread_states *ts, uint8_t **ret, size_t *ret_len);
int threads_decode(const void *buf, size_t len, struct thread_states *out);

/*
 * Can ts be put back into the frozen process f?  The same thread ids (a
 * thread created or exited since: -ESTALE, why names them), 64-bit
 * threads, the same extended state size as now.  Changes nothing.
 */
int threads_check(const struct thread_states *ts, const struct freeze *f, char *why,
		  size_t why_len);
/* The same check of the thread ids alone, on a running process (may race). */
int threads_check_live(const struct thread_states *ts, pid_t pid, char *why, size_t why_len);
/*
 * Put every thread's state back (threads_check first).  A thread that was
 * in a syscall resumes as the kernel decides at the thaw: restarted
 * (-ERESTARTSYS and friends) or ended with EINTR when a handler runs.  One
 * stopped in a call that restarts through the kernel's per-thread restart
 * block (nanosleep, clock_nanosleep, futex and poll with a timeout) issues
 * the call again with its registers' arguments: the block now belongs to
 * whatever the thread did since, so a relative timeout starts afresh.
 * *failed_tid: the thread a failure concerns.
 */
int threads_apply(const struct thread_states *ts, const struct freeze *f, pid_t *failed_tid);

/* The registers a thread resumes with: regs adjusted as threads_apply does. */
void thread_resume_regs(const struct thread_state *t, struct user_regs_struct *out);
/* "read", "futex", ... for the calls threads are usually stopped in; else NULL. */
const char *thread_syscall_name(long nr);
/* How a thread stopped in a syscall resumes: "restart", "EINTR unless
 * SA_RESTART" ..., or "returns" (the call had ended). */
const char *thread_resume_how(const struct thread_state *t);
