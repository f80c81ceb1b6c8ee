/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Evaluate a thread's seccomp filters for one syscall, as the kernel would,
 * before injecting it: a filter may kill the target for a syscall it never
 * makes itself.  The thread must be ptrace-stopped by us; reading filters
 * (PTRACE_SECCOMP_GET_FILTER) needs CAP_SYS_ADMIN.
 */
#pragma once

#include <stdint.h>
#include <sys/types.h>

struct seccomp_call {
	int nr;
	uint64_t ip; /* instruction pointer the kernel will see */
	uint64_t args[6];
};

/*
 * *action gets the winning SECCOMP_RET_* action (with its data) over every
 * filter of tid; 0 or -errno (-EACCES without CAP_SYS_ADMIN, -EINVAL for a
 * program we cannot evaluate).
 */
int seccomp_evaluate(pid_t tid, const struct seccomp_call *call, uint32_t *action);
/* Does this action let the syscall run normally? */
int seccomp_action_allows(uint32_t action);
const char *seccomp_action_name(uint32_t action);

/* The interpreter alone, for tests: run one classic BPF program. */
struct sock_filter;
int seccomp_run_bpf(const struct sock_filter *prog, size_t len, const struct seccomp_call *call,
		    uint32_t *ret);
