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

struct inject {
	pid_t pid, tid;
	int pidfd;
	uint64_t syscall_ip; /* a "0f 05" pair in the target's vDSO */
	struct user_regs_struct saved;
	bool seized;
	unsigned signals_redelivered; /* signals that arrived during injection */
};


int inject_attach(struct inject *in, pid_t pid);
/* Run syscall nr(args) in the target; *ret gets its return value. */
int inject_syscall(struct inject *in, long nr, const long args[6], long *ret);
int inject_detach(struct inject *in);

/*
 * The whole attach sequence: make pid create a userfaultfd with flags,
 * take it over with pidfd_getfd, close the target's copy, detach.
 * On success *ret_fd is our fd and *ret_pidfd a pidfd of the target.
 */
int inject_acquire_uffd(pid_t pid, int uffd_flags, int *ret_fd, int *ret_pidfd, char *why,
			size_t why_len);
