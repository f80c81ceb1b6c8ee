// SPDX-License-Identifier: GPL-2.0-only
#include "track/seccomp.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>

#include "basic/util.h"

#ifndef PTRACE_SECCOMP_GET_FILTER
#define PTRACE_SECCOMP_GET_FILTER 0x420c
#endif
#ifndef SECCOMP_RET_KILL_PROCESS
#define SECCOMP_RET_KILL_PROCESS 0x80000000U
#endif
#ifndef SECCOMP_RET_USER_NOTIF
#define SECCOMP_RET_USER_NOTIF 0x7fc00000U
#endif
#ifndef SECCOMP_RET_LOG
#define SECCOMP_RET_LOG 0x7ffc0000U
#endif
#ifndef SECCOMP_RET_ACTION_FULL
#define SECCOMP_RET_ACTION_FULL 0xffff0000U
#endif
#define BPF_MAXINSNS_SECCOMP 4096

/* struct seccomp_data as the filter sees it (little-endian x86-64). */
static uint32_t data_word(const struct seccomp_call *c, uint32_t off, int *bad)
{
	uint8_t d[64];
	uint32_t arch = AUDIT_ARCH_X86_64, w;

	memcpy(d, &c->nr, 4);
	memcpy(d + 4, &arch, 4);
	memcpy(d + 8, &c->ip, 8);
	memcpy(d + 16, c->args, 48);
	if (off & 3 || off > sizeof(d) - 4) {
		*bad = 1;
		return 0;
	}
	memcpy(&w, d + off, 4);
	return w;
}

static int alu(uint16_t op, uint32_t *a, uint32_t v)
{
	switch (op) {
	case BPF_ADD: *a += v; break;
	case BPF_SUB: *a -= v; break;
	case BPF_MUL: *a *= v; break;
	case BPF_DIV: if (!v) return -EINVAL; *a /= v; break;
	case BPF_MOD: if (!v) return -EINVAL; *a %= v; break;
	case BPF_OR: *a |= v; break;
	case BPF_AND: *a &= v; break;
	case BPF_XOR: *a ^= v; break;
	case BPF_LSH: *a = v < 32 ? *a << v : 0; break;
	case BPF_RSH: *a = v < 32 ? *a >> v : 0; break;
	case BPF_NEG: *a = -*a; break;
	default: return -EINVAL;
	}
	return 0;
}

static int jump(uint16_t op, uint32_t a, uint32_t v, int *taken)
{
	switch (op) {
	case BPF_JEQ: *taken = a == v; break;
	case BPF_JGT: *taken = a > v; break;
	case BPF_JGE: *taken = a >= v; break;
	case BPF_JSET: *taken = (a & v) != 0; break;
	default: return -EINVAL;
	}
	return 0;
}

int seccomp_run_bpf(const struct sock_filter *prog, size_t len, const struct seccomp_call *call,
		    uint32_t *ret)
{
	uint32_t A = 0, X = 0, M[BPF_MEMWORDS] = { 0 };
	int bad = 0;

	for (size_t pc = 0; pc < len; pc++) {
		const struct sock_filter *f = &prog[pc];
		uint16_t c = f->code;
		uint32_t src = BPF_SRC(c) == BPF_X ? X : f->k;
		int taken = 0;

		switch (BPF_CLASS(c)) {
		case BPF_LD:
		case BPF_LDX: {
			uint32_t v;
			switch (BPF_MODE(c)) {
			case BPF_ABS: v = data_word(call, f->k, &bad); break;
			case BPF_LEN: v = 64; break;
			case BPF_IMM: v = f->k; break;
			case BPF_MEM: if (f->k >= BPF_MEMWORDS) return -EINVAL; v = M[f->k]; break;
			default: return -EINVAL;
			}
			if (bad || (BPF_MODE(c) == BPF_ABS && BPF_SIZE(c) != BPF_W))
				return -EINVAL;
			*(BPF_CLASS(c) == BPF_LD ? &A : &X) = v;
			break;
		}
		case BPF_ST:
		case BPF_STX:
			if (f->k >= BPF_MEMWORDS)
				return -EINVAL;
			M[f->k] = BPF_CLASS(c) == BPF_ST ? A : X;
			break;
		case BPF_ALU:
			if (alu(BPF_OP(c), &A, src) < 0)
				return -EINVAL;
			break;
		case BPF_JMP:
			if (BPF_OP(c) == BPF_JA) {
				pc += f->k;
			} else {
				if (jump(BPF_OP(c), A, src, &taken) < 0)
					return -EINVAL;
				pc += taken ? f->jt : f->jf;
			}
			break;
		case BPF_RET:
			*ret = BPF_RVAL(c) == BPF_A ? A : f->k;
			return 0;
		case BPF_MISC:
			if (BPF_MISCOP(c) == BPF_TAX)
				X = A;
			else
				A = X;
			break;
		}
	}
	return -EINVAL; /* fell off the end: the kernel rejects such programs */
}

int seccomp_evaluate(pid_t tid, const struct seccomp_call *call, uint32_t *action)
{
	uint32_t best = SECCOMP_RET_ALLOW;

	for (unsigned long i = 0;; i++) {
		long n = ptrace((enum __ptrace_request)PTRACE_SECCOMP_GET_FILTER, tid, (void *)i, NULL);
		uint32_t ret;

		if (n < 0 && errno == ENOENT)
			break;
		if (n < 0)
			return -errno;
		if (n == 0 || n > BPF_MAXINSNS_SECCOMP)
			return -EINVAL;
		_cleanup_free_ struct sock_filter *prog = calloc((size_t)n, sizeof(*prog));
		if (!prog)
			return -ENOMEM;
		if (ptrace((enum __ptrace_request)PTRACE_SECCOMP_GET_FILTER, tid, (void *)i, prog) != n)
			return -EIO;
		int r = seccomp_run_bpf(prog, (size_t)n, call, &ret);
		if (r < 0)
			return r;
		/* The kernel keeps the action of lowest value as signed. */
		if ((int32_t)(ret & SECCOMP_RET_ACTION_FULL) < (int32_t)(best & SECCOMP_RET_ACTION_FULL))
			best = ret;
	}
	*action = best;
	return 0;
}

int seccomp_action_allows(uint32_t action)
{
	uint32_t a = action & SECCOMP_RET_ACTION_FULL;

	return a == SECCOMP_RET_ALLOW || a == SECCOMP_RET_LOG;
}

const char *seccomp_action_name(uint32_t action)
{
	switch (action & SECCOMP_RET_ACTION_FULL) {
	case SECCOMP_RET_KILL_PROCESS: return "kill the process";
	case SECCOMP_RET_KILL_THREAD: return "kill the thread";
	case SECCOMP_RET_TRAP: return "send SIGSYS";
	case SECCOMP_RET_ERRNO: return "fail with an errno";
	case SECCOMP_RET_USER_NOTIF: return "defer to a supervisor";
	case SECCOMP_RET_TRACE: return "stop for a tracer";
	case SECCOMP_RET_LOG: return "log and allow";
	case SECCOMP_RET_ALLOW: return "allow";
	}
	return "an unknown action";
}
