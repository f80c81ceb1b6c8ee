// SPDX-License-Identifier: GPL-2.0-only
/*
 * Targets under seccomp filters: the tracker evaluates the filters for the
 * syscalls it would inject and attaches only when they would run normally.
 * A filter that would kill the target for userfaultfd() must leave it
 * alive and untouched; one that allows everything must be tracked.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "basic/util.h"
#include "track/seccomp.h"

enum policy { ALLOW_ALL, KILL_UFFD, ERRNO_UFFD, TRAP_CLOSE_OF_3 };

/* A child that installs the filter, then sleeps in pause(). */
static pid_t spawn(enum policy pol)
{
	int p[2];
	char c;

	if (pipe(p) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		uint32_t act = pol == KILL_UFFD ? SECCOMP_RET_KILL_PROCESS
			     : pol == ERRNO_UFFD ? SECCOMP_RET_ERRNO | EPERM
						 : SECCOMP_RET_TRAP;
		int nr = pol == TRAP_CLOSE_OF_3 ? SYS_close : SYS_userfaultfd;
		struct sock_filter f[] = {
			BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
			BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 1),
			BPF_STMT(BPF_RET | BPF_K, pol == ALLOW_ALL ? SECCOMP_RET_ALLOW : act),
			BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		};
		struct sock_fprog prog = { ARRAY_SIZE(f), f };
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
			_exit(1);
		c = 1;
		if (write(p[1], &c, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	if (read(p[0], &c, 1) != 1)
		pid = -1;
	close(p[0]);
	return pid;
}

static bool alive(pid_t pid)
{
	int st;
	return waitpid(pid, &st, WNOHANG) == 0;
}

static void one(enum policy pol, bool expect_attach, const char *name)
{
	char why[256] = "";
	struct tracker *t = NULL;
	pid_t pid = spawn(pol);

	CHECK(pid > 0, "%s: spawn", name);
	int r = tracker_attach(pid, NULL, &t, why, sizeof(why));
	CHECK((r == 0) == expect_attach, "%s: attach gave %d (%s)", name, r, why);
	if (!expect_attach)
		CHECK(strstr(why, "seccomp") != NULL, "%s: reason does not name seccomp: %s", name, why);
	if (t)
		tracker_detach(t);
	usleep(20000);
	CHECK(alive(pid), "%s: target died", name);
	CHECK(proc_has_uffd_wp(pid) == 0, "%s: registration left", name);
	fprintf(stderr, "  %-16s attach=%s %s\n", name, r == 0 ? "yes" : "no", why);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* The interpreter alone, against hand-computed results. */
static void interpreter(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xff),
		BPF_STMT(BPF_MISC | BPF_TAX, 0),
		BPF_STMT(BPF_LD | BPF_IMM, 7),
		BPF_JUMP(BPF_JMP | BPF_JGT | BPF_X, 0, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 5),
		BPF_STMT(BPF_RET | BPF_A, 0),
	};
	struct seccomp_call c = { .nr = 1, .args = { 0x103 } };
	uint32_t ret = 0;

	/* 7 > 3: jump true falls through to the ERRNO return. */
	CHECK(seccomp_run_bpf(f, ARRAY_SIZE(f), &c, &ret) == 0 && ret == (SECCOMP_RET_ERRNO | 5),
	      "7 > 3: ret=%x", ret);
	/* 7 <= 9: skips it and returns A. */
	c.args[0] = 0x109;
	CHECK(seccomp_run_bpf(f, ARRAY_SIZE(f), &c, &ret) == 0 && ret == 7, "7 <= 9: ret=%x", ret);

	struct sock_filter bad[] = { BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 66) };
	CHECK(seccomp_run_bpf(bad, 1, &c, &ret) == -EINVAL, "out-of-range load accepted");
}

int main(void)
{
	interpreter();
	one(ALLOW_ALL, true, "allow-all");
	one(KILL_UFFD, false, "kill-userfaultfd");
	one(ERRNO_UFFD, false, "errno-userfaultfd");
	one(TRAP_CLOSE_OF_3, false, "trap-close");
	return test_failures ? 1 : 0;
}
