// SPDX-License-Identifier: GPL-2.0-only
/*
 * What we learn about a target before touching it: whether it may be
 * traced at all (target_check) and which of its threads a stop disturbs
 * least (target_choose_thread).
 */
#include "track/target.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "basic/util.h"

#define PF_EXITING 0x00000004
#define PF_KTHREAD 0x00200000

/*
 * Syscalls that fail with EINTR instead of restarting when the thread is
 * stopped and resumed (signal(7), "Interruption of system calls ... by stop
 * signals"); socket calls are listed because a timeout may be set.  A thread
 * blocked in one of these is only chosen when no other thread is.
 */
static const long eintr_on_stop[] = {
	SYS_epoll_wait, SYS_epoll_pwait, 441 /* epoll_pwait2 */, SYS_semop,
	SYS_semtimedop, SYS_rt_sigtimedwait, SYS_accept, SYS_accept4,
	SYS_recvfrom, SYS_recvmsg, SYS_recvmmsg, SYS_connect, SYS_sendto,
	SYS_sendmsg, SYS_sendmmsg, SYS_io_getevents,
};

int proc_status_field(pid_t pid, const char *key, char *buf, size_t len)
{
	char path[64];
	_cleanup_free_ char *text = NULL;
	size_t klen = strlen(key);
	int r;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	r = read_full_file(path, &text, NULL);
	if (r < 0)
		return r;
	for (char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (strncmp(l, key, klen) || l[klen] != ':')
			continue;
		l += klen + 1;
		l += strspn(l, " \t");
		size_t n = strcspn(l, "\n");
		if (n >= len)
			n = len - 1;
		memcpy(buf, l, n);
		buf[n] = 0;
		return 0;
	}
	return -ENOENT;
}

static unsigned long proc_stat_flags(pid_t pid)
{
	unsigned long flags = 0;
	char state;

	return proc_task_stat(pid, pid, &state, &flags) == 0 ? flags : 0;
}

int proc_task_stat(pid_t pid, pid_t tid, char *state, unsigned long *flags)
{
	char path[96];
	_cleanup_free_ char *text = NULL;
	int r;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
	r = read_full_file(path, &text, NULL);
	if (r < 0)
		return r == -ENOENT ? -ESRCH : r;
	/* comm may hold spaces and parentheses: parse after the last ')'. */
	char *p = strrchr(text, ')');
	if (!p || sscanf(p + 2, "%c %*d %*d %*d %*d %*d %lu", state, flags) != 2)
		return -EIO;
	return 0;
}

bool task_exiting(pid_t pid, pid_t tid)
{
	unsigned long flags;
	char state;

	if (proc_task_stat(pid, tid, &state, &flags) < 0)
		return true;
	return state == 'Z' || state == 'X' || (flags & PF_EXITING);
}

int target_check(pid_t pid, char *why, size_t why_len)
{
	char v[64];
	int r;

	if (pid <= 0) {
		snprintf(why, why_len, "invalid PID %d", (int)pid);
		return -EINVAL;
	}
	if (pid == 1 || pid == getpid()) {
		snprintf(why, why_len, "refusing to track PID %d (%s)", (int)pid,
			 pid == 1 ? "init" : "wpmig itself");
		return -EPERM;
	}
	r = proc_status_field(pid, "State", v, sizeof(v));
	if (r < 0) {
		snprintf(why, why_len, "no such process: %d", (int)pid);
		return -ESRCH;
	}
	if (v[0] == 'Z' || v[0] == 'X') {
		snprintf(why, why_len, "process %d is a zombie (exited, not reaped)", (int)pid);
		return -ESRCH;
	}
	unsigned long flags = proc_stat_flags(pid);
	if (flags & PF_EXITING) {
		snprintf(why, why_len, "process %d is exiting", (int)pid);
		return -ESRCH;
	}
	if (flags & PF_KTHREAD) {
		snprintf(why, why_len, "process %d is a kernel thread (no user memory)", (int)pid);
		return -EINVAL;
	}
	/* Strict mode kills for any syscall but read/write/exit; filters are
	 * evaluated at attach (seccomp_check). */
	if (proc_status_field(pid, "Seccomp", v, sizeof(v)) == 0 && !strcmp(v, "1")) {
		snprintf(why, why_len,
			 "process %d runs in seccomp strict mode; injecting userfaultfd() would kill it",
			 (int)pid);
		return -EPERM;
	}
	if (proc_status_field(pid, "TracerPid", v, sizeof(v)) == 0 && strcmp(v, "0")) {
		snprintf(why, why_len, "process %d is already traced by PID %s", (int)pid, v);
		return -EBUSY;
	}
	return 0;
}

enum stop_cost { STOP_UNSAFE, STOP_RUNNING, STOP_BLOCKED };

/*
 * What a stop costs thread tid: nothing when it is running or blocked in a
 * syscall that restarts; an EINTR it may not expect otherwise.  A thread
 * that is gone or exiting cannot be stopped at all.
 */
static enum stop_cost stop_cost(pid_t pid, pid_t tid)
{
	char path[96];
	_cleanup_free_ char *text = NULL;
	long nr;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", (int)pid, (int)tid);
	if (read_full_file(path, &text, NULL) < 0)
		return STOP_UNSAFE;
	if (!strncmp(text, "running", 7))
		return STOP_RUNNING;
	if (sscanf(text, "%ld", &nr) != 1)
		return STOP_UNSAFE;
	if (nr == SYS_exit || nr == SYS_exit_group)
		return STOP_UNSAFE; /* ending (or a zombie): it will never stop */
	for (size_t i = 0; i < ARRAY_SIZE(eintr_on_stop); i++)
		if (nr == eintr_on_stop[i])
			return STOP_UNSAFE;
	return STOP_BLOCKED;
}

struct choice {
	pid_t pid, running, blocked;
};

static int consider_thread(void *ud, pid_t tid)
{
	struct choice *c = ud;

	switch (stop_cost(c->pid, tid)) {
	case STOP_BLOCKED:
		c->blocked = tid;
		return 1; /* the best there is */
	case STOP_RUNNING:
		if (!c->running)
			c->running = tid;
		return 0;
	default:
		return 0;
	}
}

/*
 * A thread blocked in a restartable syscall, else a running one, or 0.
 * Blocked first: a running thread may be a short-lived one about to exit
 * (a pool's worker finishing), a blocked one waits for work.
 */
static pid_t find_safe_thread(pid_t pid)
{
	struct choice c = { .pid = pid };

	proc_task_foreach(pid, consider_thread, &c);
	return c.blocked ? c.blocked : c.running;
}

/*
 * Prefer a thread that a stop does not disturb.  Threads come and go (one
 * that just exited, or has not started, shows no syscall state): look a
 * few times before settling for the main thread, whatever it is doing.
 */
pid_t target_choose_thread(pid_t pid)
{
	for (int i = 0; i < 64; i++) {
		pid_t tid = find_safe_thread(pid);

		if (tid)
			return tid;
		sched_yield();
	}
	return pid;
}

void target_refusal(pid_t pid, pid_t tid, int err, char *why, size_t why_len)
{
	char tracer[16];

	if (proc_status_field(tid, "TracerPid", tracer, sizeof(tracer)) == 0 && strcmp(tracer, "0"))
		snprintf(why, why_len, "thread %d of process %d is already traced by PID %s",
			 (int)tid, (int)pid, tracer);
	else
		snprintf(why, why_len, "cannot trace thread %d of process %d: %s", (int)tid,
			 (int)pid, strerror(-err));
}
