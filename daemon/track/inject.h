/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Run a syscall inside a foreign process with ptrace, leaving it exactly as
 * found.  Used to make the target create the userfaultfd that tracks its mm
 * (a uffd belongs to the mm of the process that creates it).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "track/target.h"

/* Borrowed threads that may exit before they stop, before the main thread is taken. */
#define INJECT_EXITS_BEFORE_MAIN 32

struct inject {
	pid_t pid, tid;
	int pidfd;
	uint64_t syscall_ip; /* a "0f 05" pair in the target's vDSO */
	struct user_regs_struct saved;
	bool seized;
	unsigned signals_redelivered; /* signals that arrived during injection */
	unsigned threads_exited; /* threads chosen that exited before they stopped */
};

/*
 * Stop a thread of pid for injection.  A chosen thread that exits first is
 * not an error: another is chosen.  -ESRCH when the process exits; on
 * another failure in->tid is the thread that refused.
 */
int inject_attach(struct inject *in, pid_t pid);
/* Run syscall nr(args) in the target; *ret gets its return value. */
int inject_syscall(struct inject *in, long nr, const long args[6], long *ret);
int inject_detach(struct inject *in);

/*
 * Let go of a seized thread whatever its state: detach it at a ptrace stop
 * (interrupting it first if it is not in one; sig is delivered), or reap
 * it if it exited.
 */
void ptrace_let_go(pid_t tid, int sig);

struct uffd_grab {
	int fd;    /* our userfaultfd of the target's mm */
	int pidfd; /* of the target */
	unsigned threads_exited; /* as in struct inject, also on failure */
};

/*
 * The whole attach sequence: make pid create a userfaultfd with flags,
 * take it over with pidfd_getfd, close the target's copy, detach.
 */
int inject_acquire_uffd(pid_t pid, int uffd_flags, struct uffd_grab *ret, char *why,
			size_t why_len);
