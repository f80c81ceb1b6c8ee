// SPDX-License-Identifier: GPL-2.0-only
#include "track/inject.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "basic/uapi.h"
#include "basic/util.h"
#include "track/maps.h"
#include "track/seccomp.h"
static long pidfd_open_(pid_t pid)
{
	return syscall(SYS_pidfd_open, pid, 0);
}
static int find_vdso_syscall(pid_t pid, uint64_t *ret)
{
	struct vma_list maps = { 0 };
	int r = maps_read(pid, &maps);

	if (r < 0)
		return r;
	r = -ENOENT;
	for (size_t i = 0; i < maps.n; i++) {
		const struct vma *v = &maps.v[i];
		size_t len = v->end - v->start;

		if (strcmp(v->path, "[vdso]") || len > (1 << 20))
			continue;
		_cleanup_free_ uint8_t *buf = malloc(len);
		if (!buf) {
			r = -ENOMEM;
			break;
		}
		struct iovec lio = { buf, len }, rio = { (void *)v->start, len };
		if (process_vm_readv(pid, &lio, 1, &rio, 1, 0) != (ssize_t)len) {
			r = -errno;
			break;
		}
		for (size_t o = 0; o + 1 < len; o++)
			if (buf[o] == 0x0f && buf[o + 1] == 0x05) {
				*ret = v->start + o;
				r = 0;
				break;
			}
		break;
	}
	vma_list_free(&maps);
	return r;
}

static bool is_syscall_insn(pid_t tid, uint64_t ip)
{
	errno = 0;
	long word = ptrace(PTRACE_PEEKTEXT, tid, (void *)ip, NULL);

	return errno == 0 && (word & 0xffff) == 0x050f;
}

/* Wait for tid to stop; returns 0 with *status, or -ESRCH if it is gone. */
static int wait_stop(pid_t tid, int *status)
{
	for (;;) {
		pid_t w = waitpid(tid, status, __WALL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (WIFEXITED(*status) || WIFSIGNALED(*status))
			return -ESRCH;
		if (WIFSTOPPED(*status))
			return 0;
	}
}

static bool is_event_stop(int status)
{
	return (status >> 16) == PTRACE_EVENT_STOP;
}

/*
 * Bring the seized thread to a PTRACE_EVENT_STOP.  Signals that arrive
 * first are delivered on (the target sees them exactly once).
 */
static int interrupt_to_event_stop(struct inject *in, int resume_sig, bool resume,
				   bool drop_sigtrap)
{
	int status, r;

	if (ptrace(PTRACE_INTERRUPT, in->tid, NULL, NULL) < 0)
		return -errno;
	if (resume && ptrace(PTRACE_CONT, in->tid, NULL, (void *)(long)resume_sig) < 0)
		return -errno;
	for (;;) {
		r = wait_stop(in->tid, &status);
		if (r < 0)
			return r;
		if (is_event_stop(status))
			return 0;
		/* Signal-delivery-stop: pass the signal on, ask again.  The
		 * trap our own single step queued is dropped, once. */
		int sig = WSTOPSIG(status);
		if (sig == SIGTRAP && drop_sigtrap) {
			drop_sigtrap = false;
			sig = 0;
		} else {
			in->signals_redelivered++;
		}
		if (ptrace(PTRACE_INTERRUPT, in->tid, NULL, NULL) < 0 ||
		    ptrace(PTRACE_CONT, in->tid, NULL, (void *)(long)sig) < 0)
			return -errno;
	}
}

/* A thread in an rseq critical section restarts at its abort handler. */
static void rseq_fixup(struct inject *in)
{
	struct wpmig_rseq_configuration conf = { 0 };
	uint64_t cs_ptr, cs[4];
	struct iovec lio, rio;

	if (ptrace((enum __ptrace_request)PTRACE_GET_RSEQ_CONFIGURATION, in->tid, (void *)sizeof(conf), &conf) <= 0 ||
	    !conf.rseq_abi_pointer)
		return;
	lio = (struct iovec){ &cs_ptr, sizeof(cs_ptr) };
	rio = (struct iovec){ (void *)(conf.rseq_abi_pointer + 8), sizeof(cs_ptr) };
	if (process_vm_readv(in->pid, &lio, 1, &rio, 1, 0) != sizeof(cs_ptr) || !cs_ptr)
		return;
	/* struct rseq_cs: u32 version, u32 flags, u64 start_ip, post_commit_offset, abort_ip */
	lio = (struct iovec){ cs, sizeof(cs) };
	rio = (struct iovec){ (void *)cs_ptr, sizeof(cs) };
	if (process_vm_readv(in->pid, &lio, 1, &rio, 1, 0) != sizeof(cs))
		return;
	if (in->saved.rip - cs[1] < cs[2])
		in->saved.rip = cs[3];
}

void ptrace_let_go(pid_t tid, int sig)
{
	for (;;) {
		int status;
		pid_t w;

		if (ptrace(PTRACE_DETACH, tid, NULL, (void *)(long)sig) == 0 || errno != ESRCH)
			return;
		/* Not in a ptrace stop: make sure one comes (a no-op for a
		 * thread that exited), then take it or the exit. */
		ptrace(PTRACE_INTERRUPT, tid, NULL, NULL);
		while ((w = waitpid(tid, &status, __WALL)) < 0 && errno == EINTR)
			;
		if (w < 0 || !WIFSTOPPED(status))
			return;
		if ((status >> 16) == 0)
			sig = WSTOPSIG(status); /* a signal-delivery-stop: pass it on */
	}
}

/* Seize tid and bring it to an event stop; on failure it is let go. */
static int seize_thread(struct inject *in, pid_t tid)
{
	int r;

	in->tid = tid;
	if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) < 0)
		return -errno;
	in->seized = true;
	r = interrupt_to_event_stop(in, 0, false, false);
	if (r < 0) {
		ptrace_let_go(tid, 0);
		in->seized = false;
	}
	return r;
}

/*
 * Borrow a thread of pid, stopped.  The thread chosen may exit before it
 * stops -- any error then (ESRCH or EPERM from the seize, ESRCH from a
 * later request, an exit where a stop was awaited) only means it ended:
 * choose again while the process lives.  After INJECT_EXITS_BEFORE_MAIN
 * such exits (every candidate is a thread living microseconds) take the
 * main thread, whatever it is doing: it stays until the process exits.
 */
static int borrow_thread(struct inject *in, pid_t pid)
{
	for (;;) {
		pid_t tid = in->threads_exited < INJECT_EXITS_BEFORE_MAIN ? target_choose_thread(pid)
									   : pid;
		int r = seize_thread(in, tid);

		if (r == 0)
			return 0;
		if (task_exiting(pid, pid))
			return -ESRCH;
		if (tid == pid || !task_exiting(pid, tid))
			return r; /* a refusal, not an exit */
		in->threads_exited++;
	}
}

int inject_attach(struct inject *in, pid_t pid)
{
	int r;

	*in = (struct inject){ .pid = pid, .pidfd = -1 };
	in->pidfd = (int)pidfd_open_(pid);
	if (in->pidfd < 0)
		return -errno;
	r = borrow_thread(in, pid);
	if (r < 0)
		goto fail;
	if (ptrace(PTRACE_GETREGS, in->tid, NULL, &in->saved) < 0) {
		r = -errno;
		goto fail;
	}
	if (in->saved.cs != 0x33) { /* not a 64-bit thread */
		r = -EPROTONOSUPPORT;
		goto fail;
	}
	/* Look for the vDSO only now: an exec before the stop moves it. */
	r = find_vdso_syscall(pid, &in->syscall_ip);
	if (r < 0 && r != -ENOENT)
		goto fail;
	rseq_fixup(in);
	return 0;
fail:
	inject_detach(in);
	return r;
}

int inject_detach(struct inject *in)
{
	int r = 0;

	if (in->seized) {
		if (ptrace(PTRACE_DETACH, in->tid, NULL, NULL) < 0) {
			r = -errno;
			/* Gone: reap the tracee so its real parent is not left waiting. */
			ptrace_let_go(in->tid, 0);
		}
		in->seized = false;
	}
	if (in->pidfd >= 0)
		close(in->pidfd);
	in->pidfd = -1;
	return r;
}

static uint64_t pick_syscall_ip(struct inject *in)
{
	if (in->syscall_ip && is_syscall_insn(in->tid, in->syscall_ip))
		return in->syscall_ip;
	/* No vDSO (or it changed under an exec): the insn the thread sits after. */
	if ((long long)in->saved.orig_rax >= 0 && is_syscall_insn(in->tid, in->saved.rip - 2))
		return in->saved.rip - 2;
	return 0;
}

/*
 * One attempt.  Returns 0 when the syscall ran, -EAGAIN when a signal came
 * first (registers restored, signal delivered, thread at an event stop
 * again with fresh saved registers), other negative on failure.
 */
static int try_syscall(struct inject *in, long nr, const long a[6], long *ret)
{
	struct user_regs_struct regs = in->saved;
	uint64_t ip = pick_syscall_ip(in);
	int status, r;

	if (!ip)
		return -ENOEXEC;
	regs.rip = ip;
	regs.rax = (uint64_t)nr;
	regs.orig_rax = (uint64_t)-1; /* no restart logic for our syscall */
	regs.rdi = (uint64_t)a[0];
	regs.rsi = (uint64_t)a[1];
	regs.rdx = (uint64_t)a[2];
	regs.r10 = (uint64_t)a[3];
	regs.r8 = (uint64_t)a[4];
	regs.r9 = (uint64_t)a[5];

	/* The window: from here until the registers are back, a dying tracer
	 * must take the target with it rather than leave it running wrong. */
	if (ptrace(PTRACE_SETOPTIONS, in->tid, NULL, (void *)PTRACE_O_EXITKILL) < 0)
		return -errno;
	if (ptrace(PTRACE_SETREGS, in->tid, NULL, &regs) < 0)
		return -errno;
	if (ptrace(PTRACE_SINGLESTEP, in->tid, NULL, NULL) < 0) {
		r = -errno;
		ptrace(PTRACE_SETREGS, in->tid, NULL, &in->saved); /* never leave ours */
		return r;
	}
	r = wait_stop(in->tid, &status);
	if (r < 0)
		return r; /* gone: EXITKILL or its own death */
	if (ptrace(PTRACE_GETREGS, in->tid, NULL, &regs) < 0) {
		r = -errno;
		ptrace(PTRACE_SETREGS, in->tid, NULL, &in->saved);
		return r;
	}
	bool ran = regs.rip == ip + 2;
	int sig = is_event_stop(status) ? 0 : WSTOPSIG(status);
	if (ptrace(PTRACE_SETREGS, in->tid, NULL, &in->saved) < 0)
		return -errno;
	if (ran)
		*ret = (long)regs.rax;
	/* Leave single-step mode at a clean event stop; a foreign signal that
	 * stopped us is delivered now (a stale SIGTRAP of ours is dropped). */
	bool trap_pending = ran && sig != SIGTRAP;
	if (sig == SIGTRAP && ran)
		sig = 0;
	if (sig)
		in->signals_redelivered++;
	r = interrupt_to_event_stop(in, sig, true, trap_pending);
	if (r < 0)
		return r;
	if (ptrace(PTRACE_SETOPTIONS, in->tid, NULL, NULL) < 0)
		return -errno;
	if (ptrace(PTRACE_GETREGS, in->tid, NULL, &in->saved) < 0)
		return -errno;
	rseq_fixup(in);
	return ran ? 0 : -EAGAIN;
}

int inject_syscall(struct inject *in, long nr, const long a[6], long *ret)
{
	for (int attempt = 0; attempt < 64; attempt++) {
		int r = try_syscall(in, nr, a, ret);

		if (r != -EAGAIN)
			return r;
	}
	return -EAGAIN;
}

static int close_in_target(struct inject *in, int target_fd, int our_fd)
{
	long args[6] = { target_fd }, ret;

	/* Another thread may have closed or dup2()ed over it meanwhile. */
	if (syscall(SYS_kcmp, in->pid, getpid(), KCMP_FILE, target_fd, our_fd) != 0)
		return -ESTALE;
	int r = inject_syscall(in, SYS_close, args, &ret);
	if (r < 0)
		return r;
	return ret < 0 ? (int)ret : 0;
}

/* Without our own copy kcmp cannot vouch for it: check what the fd is. */
static int close_uffd_blind(struct inject *in, int target_fd)
{
	char path[64], link[64];
	long args[6] = { target_fd }, ret;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)in->pid, target_fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return -ESTALE;
	link[n] = 0;
	if (strcmp(link, "anon_inode:[userfaultfd]"))
		return -ESTALE;
	return inject_syscall(in, SYS_close, args, &ret);
}

/*
 * A seccomp filter of the chosen thread must let both syscalls we inject
 * run: one that kills, traps or defers would hurt the target, one that
 * fails close() would leave our fd behind.
 */
static int seccomp_allows(struct inject *in, long nr, long arg0, char *why, size_t why_len)
{
	/* exactly as try_syscall() runs it: from the instruction it picks,
	 * with the unused arguments 0 */
	struct seccomp_call c = { .nr = (int)nr, .ip = pick_syscall_ip(in) + 2,
				  .args = { (uint64_t)arg0 } };
	uint32_t action;
	char v[16];
	int r;

	if (proc_status_field(in->tid, "Seccomp", v, sizeof(v)) < 0 || strcmp(v, "2"))
		return 0;
	r = seccomp_evaluate(in->tid, &c, &action);
	if (r < 0) {
		snprintf(why, why_len, "process %d runs under a seccomp filter that cannot be "
			 "evaluated (%s); refusing to inject syscalls", (int)in->pid,
			 r == -EACCES ? "reading it needs CAP_SYS_ADMIN" : strerror(-r));
		return -EPERM;
	}
	if (!seccomp_action_allows(action)) {
		if (nr == SYS_close)
			snprintf(why, why_len, "the seccomp filter of process %d would %s for close(%ld)",
				 (int)in->pid, seccomp_action_name(action), arg0);
		else
			snprintf(why, why_len, "the seccomp filter of process %d would %s for "
				 "userfaultfd()", (int)in->pid, seccomp_action_name(action));
		return -EPERM;
	}
	return 0;
}

static int note_fd(void *ud, const char *fd, const char *target)
{
	uint64_t *used = ud;
	int n = atoi(fd);

	if (n >= 0 && n < 1024)
		used[n / 64] |= 1ULL << (n % 64);
	return 0;
}

/* The fd userfaultfd() will return in the target: its lowest free one
 * (a thread opening one meanwhile makes it another: checked again). */
static int lowest_free_fd(pid_t pid)
{
	uint64_t used[1024 / 64] = { 0 };

	proc_fd_foreach(pid, note_fd, used);
	for (int i = 0; i < 1024; i++)
		if (!(used[i / 64] & (1ULL << (i % 64))))
			return i;
	return 1024;
}

/*
 * A seccomp filter of the chosen thread must let both syscalls we inject
 * run: one that kills, traps or defers would hurt the target, one that
 * fails close() would leave our fd behind.  Evaluated as they will run:
 * userfaultfd(flags), and close() of the fd it will return.
 */
static int seccomp_check(struct inject *in, int uffd_flags, int fd, char *why, size_t why_len)
{
	int r = seccomp_allows(in, SYS_userfaultfd, uffd_flags, why, why_len);

	return r < 0 ? r : seccomp_allows(in, SYS_close, fd, why, why_len);
}

static void attach_why(const struct inject *in, int r, char *why, size_t why_len)
{
	if (r == -ESRCH)
		snprintf(why, why_len, "process %d exited while a thread was being stopped",
			 (int)in->pid);
	else if (in->tid && r == -EPERM)
		target_refusal(in->pid, in->tid, r, why, why_len);
	else
		snprintf(why, why_len, "cannot stop a thread of process %d: %s", (int)in->pid,
			 strerror(-r));
}

int inject_acquire_uffd(pid_t pid, int uffd_flags, struct uffd_grab *ret, char *why,
			size_t why_len)
{
	struct inject in;
	long args[6] = { uffd_flags }, tfd;
	int r, fd = -1, expect_fd;

	r = inject_attach(&in, pid);
	ret->threads_exited = in.threads_exited;
	if (r < 0) {
		attach_why(&in, r, why, why_len);
		return r;
	}
	expect_fd = lowest_free_fd(pid);
	r = seccomp_check(&in, uffd_flags, expect_fd, why, why_len);
	if (r < 0) {
		inject_detach(&in);
		return r;
	}
	r = inject_syscall(&in, SYS_userfaultfd, args, &tfd);
	if (r == 0 && tfd < 0)
		r = (int)tfd;
	if (r < 0) {
		snprintf(why, why_len, "userfaultfd() in process %d failed: %s", (int)pid,
			 strerror(-r));
		goto out;
	}
	/* Another thread took the fd we checked: check the one we got. */
	if (tfd != expect_fd && (r = seccomp_allows(&in, SYS_close, tfd, why, why_len)) < 0) {
		snprintf(why + strlen(why), why_len - strlen(why), "; process %d keeps the "
			 "userfaultfd it made as fd %ld (no range registered)", (int)pid, tfd);
		goto out;
	}
	fd = (int)syscall(SYS_pidfd_getfd, in.pidfd, (int)tfd, 0);
	if (fd < 0)
		r = -errno;
	/* Close the target's copy even if taking it failed. */
	int rc = fd >= 0 ? close_in_target(&in, (int)tfd, fd) : close_uffd_blind(&in, (int)tfd);
	if (r == 0 && rc < 0 && rc != -ESTALE)
		r = rc;
out:
	if (r == 0) {
		ret->pidfd = in.pidfd;
		in.pidfd = -1;
	}
	inject_detach(&in);
	if (r < 0) {
		if (fd >= 0)
			close(fd);
		return r;
	}
	ret->fd = fd;
	return 0;
}
