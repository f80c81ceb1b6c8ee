// SPDX-License-Identifier: GPL-2.0-only
/*
 * Targets under seccomp filters: the tracker evaluates the filters for the
 * syscalls it would inject and attaches only when they would run normally.
 * A filter that would kill the target for userfaultfd() must leave it
 * alive and untouched; one that allows everything must be tracked.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdatomic.h>
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

/* KILL_CLOSE_OF_4: fd 3 is open, so the injected userfaultfd() returns 4
 * and it is close(4) that must be evaluated, not close(3). */
enum policy { ALLOW_ALL, KILL_UFFD, ERRNO_UFFD, TRAP_CLOSE_OF_3, KILL_CLOSE_OF_4 };

/* A child that installs the filter, then sleeps in pause(). */
static pid_t spawn(enum policy pol)
{
	int p[2];
	char c;

	if (pipe(p) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		uint32_t act = pol == KILL_UFFD || pol == KILL_CLOSE_OF_4 ? SECCOMP_RET_KILL_PROCESS
			     : pol == ERRNO_UFFD ? SECCOMP_RET_ERRNO | EPERM
						 : SECCOMP_RET_TRAP;
		int nr = pol == TRAP_CLOSE_OF_3 || pol == KILL_CLOSE_OF_4 ? SYS_close : SYS_userfaultfd;
		/* fds 0-2, 3 (/dev/null) and the pipe moved up to 20: 4 is the lowest free */
		if (dup2(p[1], 20) < 0 || close_range(3, 19, 0) < 0 ||
		    open("/dev/null", O_RDONLY) != 3)
			_exit(1);
		p[1] = 20;
		struct sock_filter f[] = {
			BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
			BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 3),
			BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
			/* KILL_CLOSE_OF_4 looks at the fd; the others act on any */
			BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, pol == KILL_CLOSE_OF_4 ? 4 : 0, 0,
				 pol == KILL_CLOSE_OF_4 ? 1 : 0),
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

static void one(enum policy pol, bool expect_attach, const char *name, const char *want)
{
	char why[256] = "";
	struct tracker *t = NULL;
	pid_t pid = spawn(pol);

	CHECK(pid > 0, "%s: spawn", name);
	int r = tracker_attach(pid, NULL, &t, why, sizeof(why));
	CHECK((r == 0) == expect_attach, "%s: attach gave %d (%s)", name, r, why);
	if (!expect_attach)
		CHECK(strstr(why, want) != NULL, "%s: reason lacks \"%s\": %s", name, want, why);
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

struct attach_arg {
	pid_t pid;
	int r;
	char why[256];
	struct tracker *t;
	atomic_bool done;
};

static void *attach_thread(void *arg)
{
	struct attach_arg *a = arg;

	a->r = tracker_attach(a->pid, NULL, &a->t, a->why, sizeof(a->why));
	atomic_store(&a->done, true);
	return NULL;
}

/* Is pid traced (by our attach)? */
static bool traced(pid_t pid)
{
	char path[64], *text = NULL, *p;
	bool t = false;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (read_full_file(path, &text, NULL) == 0 && (p = strstr(text, "TracerPid:")))
		t = strtol(p + 10, NULL, 10) != 0;
	free(text);
	return t;
}

/* A target that is not our child (as wpmigd's are not): a parent that
 * never reaps it holds it; *parent is that one. */
static pid_t spawn_grandchild(pid_t *parent)
{
	int p[2];
	pid_t t = -1;

	if (pipe(p) < 0)
		return -1;
	*parent = fork();
	if (*parent == 0) {
		pid_t c = fork();
		if (c == 0)
			for (;;)
				pause();
		(void)!write(p[1], &c, sizeof(c));
		for (;;)
			pause();
	}
	if (read(p[0], &t, sizeof(t)) != sizeof(t))
		t = -1;
	close(p[0]);
	close(p[1]);
	return t;
}

/* A target killed while the attach holds it: the attach says it died, of
 * what signal (not that it is "a zombie"). */
static void killed_during_attach(void)
{
	int caught = 0, tries = 0;
	uint64_t start = now_ns();

	/* A try that misses costs one attach, not a wait: on a loaded box
	 * the window is often missed, so try for up to 10 s. */
	for (; tries < 1000 && !caught && now_ns() - start < 10000000000ULL; tries++) {
		pid_t parent = -1;
		struct attach_arg a = { .pid = spawn_grandchild(&parent) };
		pthread_t th;

		CHECK(a.pid > 0 && pthread_create(&th, NULL, attach_thread, &a) == 0, "start");
		while (!atomic_load(&a.done) && !traced(a.pid))
			; /* spin: the attach holds it for well under a millisecond */
		kill(a.pid, SIGKILL);
		pthread_join(th, NULL);
		if (a.r < 0) {
			caught++;
			CHECK(strstr(a.why, "died during the attach: killed by signal 9"),
			      "killed during the attach: %s", a.why);
			fprintf(stderr, "  killed-in-attach attach=no %s (try %d)\n", a.why, tries + 1);
		}
		tracker_detach(a.t);
		kill(parent, SIGKILL); /* its zombie goes to init */
		waitpid(parent, NULL, 0);
	}
	if (!caught)
		SKIP("never caught an attach in progress in %d tries", tries);
}

int main(void)
{
	interpreter();
	one(ALLOW_ALL, true, "allow-all", NULL);
	one(KILL_UFFD, false, "kill-userfaultfd", "seccomp filter of process");
	one(ERRNO_UFFD, false, "errno-userfaultfd", "seccomp filter of process");
	one(TRAP_CLOSE_OF_3, false, "trap-close", "would send SIGSYS for close(4)");
	one(KILL_CLOSE_OF_4, false, "kill-close-of-4", "would kill the process for close(4)");
	killed_during_attach();
	return test_failures ? 1 : 0;
}
