// SPDX-License-Identifier: GPL-2.0-only
#include "track/threads.h"

#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include "basic/util.h"

/* The section's layout (docs/image-format.md, "Thread state"). */
#define THREADS_VERSION 1
#define THREADS_MACHINE 62 /* EM_X86_64 */

struct threads_header {
	char magic[8];       /* "WPTHREAD" */
	uint32_t version;
	uint32_t n_threads;
	uint32_t machine;
	uint32_t regs_len;   /* sizeof(struct user_regs_struct): 216 */
	uint32_t xstate_len; /* per thread */
	uint32_t reserved;
};
_Static_assert(sizeof(struct threads_header) == 32, "threads header layout");

struct thread_record {
	uint32_t tid;
	uint32_t flags;
	uint32_t stop_sig;
	uint32_t reserved;
	uint64_t sigmask;
	/* struct user_regs_struct regs; uint8_t xstate[xstate_len]; padding to 8 */
};
_Static_assert(sizeof(struct thread_record) == 24, "thread record layout");
_Static_assert(sizeof(struct user_regs_struct) == 216, "x86-64 registers");

#define USER_CS_64 0x33

static size_t pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

static size_t record_len(uint32_t xstate_len)
{
	return sizeof(struct thread_record) + sizeof(struct user_regs_struct) + pad8(xstate_len);
}

void threads_free(struct thread_states *ts)
{
	if (!ts)
		return;
	free(ts->t);
	free(ts->xstate_buf);
	*ts = (struct thread_states){ 0 };
}

static int threads_alloc(struct thread_states *ts, size_t n, uint32_t xstate_len)
{
	*ts = (struct thread_states){ .n = n, .xstate_len = xstate_len };
	ts->t = calloc(n ? n : 1, sizeof(*ts->t));
	ts->xstate_buf = calloc(n ? n : 1, xstate_len ? xstate_len : 1);
	if (!ts->t || !ts->xstate_buf) {
		threads_free(ts);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		ts->t[i].xstate = ts->xstate_buf + i * xstate_len;
	return 0;
}

static int get_regset(pid_t tid, int type, void *buf, size_t *len)
{
	struct iovec iov = { buf, *len };

	if (ptrace(PTRACE_GETREGSET, tid, (void *)(long)type, &iov) < 0)
		return -errno;
	*len = iov.iov_len;
	return 0;
}

/* Size of the extended state the kernel hands out for this thread. */
static int xstate_size(pid_t tid, uint32_t *ret)
{
	_cleanup_free_ uint8_t *buf = malloc(THREADS_XSTATE_MAX);
	size_t len = THREADS_XSTATE_MAX;
	int r;

	if (!buf)
		return -ENOMEM;
	r = get_regset(tid, NT_X86_XSTATE, buf, &len);
	if (r < 0)
		return r;
	*ret = (uint32_t)len;
	return 0;
}

static int capture_one(const struct frozen_thread *ft, uint32_t xstate_len, struct thread_state *t)
{
	size_t len = sizeof(t->regs);
	int r = get_regset(ft->tid, NT_PRSTATUS, &t->regs, &len);

	if (r == 0 && len != sizeof(t->regs))
		r = -EPROTO;
	len = xstate_len;
	if (r == 0)
		r = get_regset(ft->tid, NT_X86_XSTATE, t->xstate, &len);
	if (r == 0 && len != xstate_len)
		r = -EPROTO; /* threads of one process share one layout */
	if (r == 0 && ptrace(PTRACE_GETSIGMASK, ft->tid, (void *)sizeof(t->sigmask), &t->sigmask) < 0)
		r = -errno;
	if (r < 0)
		return r;
	t->tid = ft->tid;
	t->stop_sig = (uint32_t)ft->sig;
	t->flags = (long long)t->regs.orig_rax >= 0 ? THREAD_IN_SYSCALL : 0;
	return 0;
}

int threads_capture(const struct freeze *f, struct thread_states *out)
{
	uint32_t xlen = 0;
	int r = f->n ? xstate_size(f->t[0].tid, &xlen) : 0;

	if (r == 0)
		r = threads_alloc(out, f->n, xlen);
	for (size_t i = 0; r == 0 && i < f->n; i++)
		r = capture_one(&f->t[i], xlen, &out->t[i]);
	if (r < 0)
		threads_free(out);
	return r;
}

int threads_encode(const struct thread_states *ts, uint8_t **ret, size_t *ret_len)
{
	size_t rec = record_len(ts->xstate_len), len = sizeof(struct threads_header) + ts->n * rec;
	struct threads_header h = { .magic = "WPTHREAD", .version = THREADS_VERSION,
				    .n_threads = (uint32_t)ts->n, .machine = THREADS_MACHINE,
				    .regs_len = sizeof(struct user_regs_struct),
				    .xstate_len = ts->xstate_len };
	uint8_t *buf = calloc(1, len), *p;

	if (!buf)
		return -ENOMEM;
	p = mempcpy(buf, &h, sizeof(h));
	for (size_t i = 0; i < ts->n; i++, p += rec) {
		const struct thread_state *t = &ts->t[i];
		struct thread_record r = { .tid = (uint32_t)t->tid, .flags = t->flags,
					   .stop_sig = t->stop_sig, .sigmask = t->sigmask };
		uint8_t *q = mempcpy(p, &r, sizeof(r));

		q = mempcpy(q, &t->regs, sizeof(t->regs));
		memcpy(q, t->xstate, ts->xstate_len);
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

static bool record_ok(const struct thread_record *r)
{
	return r->tid && r->tid <= INT32_MAX && !(r->flags & ~THREAD_IN_SYSCALL) &&
	       r->stop_sig < 65 && !r->reserved;
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return x < y ? -1 : x > y;
}

/* No thread listed twice (sorted copy: hostile input stays O(n log n)). */
static bool tids_unique(const struct thread_states *ts)
{
	_cleanup_free_ pid_t *v = malloc((ts->n + 1) * sizeof(*v));

	if (!v)
		return false;
	for (size_t i = 0; i < ts->n; i++)
		v[i] = ts->t[i].tid;
	qsort(v, ts->n, sizeof(*v), cmp_pid);
	for (size_t i = 1; i < ts->n; i++)
		if (v[i] == v[i - 1])
			return false;
	return true;
}

int threads_decode(const void *buf, size_t len, struct thread_states *out)
{
	const uint8_t *p = buf;
	struct threads_header h;
	size_t rec;
	int r;

	*out = (struct thread_states){ 0 };
	if (len < sizeof(h))
		return -EBADMSG;
	memcpy(&h, p, sizeof(h));
	if (memcmp(h.magic, "WPTHREAD", 8) || h.version != THREADS_VERSION ||
	    h.machine != THREADS_MACHINE || h.regs_len != sizeof(struct user_regs_struct) ||
	    h.xstate_len > THREADS_XSTATE_MAX || h.n_threads > THREADS_MAX || h.reserved)
		return -EBADMSG;
	rec = record_len(h.xstate_len);
	if ((len - sizeof(h)) / rec != h.n_threads || (len - sizeof(h)) % rec)
		return -EBADMSG;
	r = threads_alloc(out, h.n_threads, h.xstate_len);
	if (r < 0)
		return r;
	p += sizeof(h);
	for (size_t i = 0; i < h.n_threads; i++, p += rec) {
		struct thread_state *t = &out->t[i];
		struct thread_record tr;

		memcpy(&tr, p, sizeof(tr));
		if (!record_ok(&tr)) {
			threads_free(out);
			return -EBADMSG;
		}
		*t = (struct thread_state){ .tid = (pid_t)tr.tid, .flags = tr.flags,
					    .stop_sig = tr.stop_sig, .sigmask = tr.sigmask,
					    .xstate = t->xstate };
		memcpy(&t->regs, p + sizeof(tr), sizeof(t->regs));
		memcpy(t->xstate, p + sizeof(tr) + sizeof(t->regs), h.xstate_len);
	}
	if (!tids_unique(out)) {
		threads_free(out);
		return -EBADMSG;
	}
	return 0;
}

static bool frozen_has(const struct freeze *f, pid_t tid)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->t[i].tid == tid)
			return true;
	return false;
}

struct tids {
	pid_t *v;
	size_t n, cap;
};

static bool tids_have(const struct tids *t, pid_t tid)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i] == tid)
			return true;
	return false;
}

static int tids_add(void *ud, pid_t tid)
{
	struct tids *t = ud;

	if (t->n == t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 64;
		pid_t *n = reallocarray(t->v, ncap, sizeof(*n));

		if (!n)
			return -ENOMEM;
		t->v = n;
		t->cap = ncap;
	}
	t->v[t->n++] = tid;
	return 0;
}

/* "a, b, c, d and 4 more": the tids of from that other lacks. */
static size_t list_missing(char *buf, size_t len, const struct tids *from,
			   const struct tids *other)
{
	size_t found = 0, at = 0;

	buf[0] = 0;
	for (size_t i = 0; i < from->n; i++) {
		if (tids_have(other, from->v[i]))
			continue;
		if (found++ < 4 && at < len)
			at += (size_t)snprintf(buf + at, len - at, "%s%d", found > 1 ? ", " : "",
					       (int)from->v[i]);
	}
	if (found > 4 && at < len)
		snprintf(buf + at, len - at, " and %zu more", found - 4);
	return found;
}

/* The same thread ids then and now? */
static int check_ids(const struct thread_states *ts, pid_t pid, struct tids *now, char *why,
		     size_t why_len)
{
	struct tids then = { calloc(ts->n + 1, sizeof(pid_t)), ts->n, ts->n };
	char gone[96], born[96];

	if (!then.v)
		return -ENOMEM;
	for (size_t i = 0; i < ts->n; i++)
		then.v[i] = ts->t[i].tid;
	size_t n_gone = list_missing(gone, sizeof(gone), &then, now);
	size_t n_born = list_missing(born, sizeof(born), now, &then);
	free(then.v);
	if (!n_gone && !n_born)
		return 0;
	snprintf(why, why_len, "the threads of process %d differ from the checkpoint's:%s%s%s%s%s; "
		 "nothing was changed", (int)pid, n_gone ? " exited since: " : "", gone,
		 n_gone && n_born ? ";" : "", n_born ? " created since: " : "", born);
	return -ESTALE;
}

int threads_check_live(const struct thread_states *ts, pid_t pid, char *why, size_t why_len)
{
	struct tids now = { 0 };
	int r = proc_task_foreach(pid, tids_add, &now);

	if (r == 0)
		r = check_ids(ts, pid, &now, why, why_len);
	else
		snprintf(why, why_len, "cannot list the threads of process %d: %s", (int)pid,
			 strerror(-r));
	free(now.v);
	return r;
}

int threads_check(const struct thread_states *ts, const struct freeze *f, char *why,
		  size_t why_len)
{
	struct tids now = { calloc(f->n + 1, sizeof(pid_t)), f->n, f->n };
	uint32_t xlen = 0;
	int r;

	if (!now.v)
		return -ENOMEM;
	for (size_t i = 0; i < f->n; i++)
		now.v[i] = f->t[i].tid;
	r = check_ids(ts, f->pid, &now, why, why_len);
	free(now.v);
	if (r < 0)
		return r;
	for (size_t i = 0; i < ts->n; i++)
		if (ts->t[i].regs.cs != USER_CS_64) {
			snprintf(why, why_len, "thread %d was not running 64-bit code at the checkpoint",
				 (int)ts->t[i].tid);
			return -EPROTONOSUPPORT;
		}
	r = f->n ? xstate_size(f->t[0].tid, &xlen) : 0;
	if (r < 0) {
		snprintf(why, why_len, "cannot read the FPU state of thread %d: %s", (int)f->t[0].tid,
			 strerror(-r));
		return r;
	}
	if (ts->n && xlen != ts->xstate_len) {
		snprintf(why, why_len, "the extended CPU state is %u bytes here, %u in the checkpoint "
			 "(another CPU or kernel)", xlen, ts->xstate_len);
		return -EPROTONOSUPPORT;
	}
	return 0;
}

void thread_resume_regs(const struct thread_state *t, struct user_regs_struct *out)
{
	*out = t->regs;
	/* The restart block is the kernel's, per thread, and no longer this
	 * call's: have the call issued again, as -ERESTARTNOHAND does (EINTR
	 * instead when a handler runs, as for the restart block). */
	if ((long long)out->orig_rax >= 0 &&
	    (long long)out->rax == -(long long)KERNEL_ERESTART_RESTARTBLOCK)
		out->rax = (uint64_t)-(long long)KERNEL_ERESTARTNOHAND;
}

static int apply_one(const struct thread_state *t, uint32_t xstate_len)
{
	struct user_regs_struct regs;
	struct iovec iov = { &regs, sizeof(regs) };

	thread_resume_regs(t, &regs);
	if (ptrace(PTRACE_SETREGSET, t->tid, (void *)NT_PRSTATUS, &iov) < 0)
		return -errno;
	iov = (struct iovec){ t->xstate, xstate_len };
	if (xstate_len && ptrace(PTRACE_SETREGSET, t->tid, (void *)NT_X86_XSTATE, &iov) < 0)
		return -errno;
	if (ptrace(PTRACE_SETSIGMASK, t->tid, (void *)sizeof(t->sigmask), &t->sigmask) < 0)
		return -errno;
	return 0;
}

int threads_apply(const struct thread_states *ts, const struct freeze *f, pid_t *failed_tid)
{
	for (size_t i = 0; i < ts->n; i++) {
		int r = frozen_has(f, ts->t[i].tid) ? apply_one(&ts->t[i], ts->xstate_len) : -ESRCH;

		if (r < 0) {
			*failed_tid = ts->t[i].tid;
			return r;
		}
	}
	return 0;
}

const char *thread_syscall_name(long nr)
{
	static const struct {
		long nr;
		const char *name;
	} names[] = {
		{ SYS_read, "read" }, { SYS_write, "write" }, { SYS_readv, "readv" },
		{ SYS_writev, "writev" }, { SYS_pread64, "pread64" }, { SYS_poll, "poll" },
		{ SYS_ppoll, "ppoll" }, { SYS_select, "select" }, { SYS_pselect6, "pselect6" },
		{ SYS_nanosleep, "nanosleep" }, { SYS_clock_nanosleep, "clock_nanosleep" },
		{ SYS_futex, "futex" }, { SYS_epoll_wait, "epoll_wait" },
		{ SYS_epoll_pwait, "epoll_pwait" }, { SYS_epoll_pwait2, "epoll_pwait2" },
		{ SYS_wait4, "wait4" }, { SYS_waitid, "waitid" }, { SYS_accept, "accept" },
		{ SYS_accept4, "accept4" }, { SYS_connect, "connect" }, { SYS_recvfrom, "recvfrom" },
		{ SYS_recvmsg, "recvmsg" }, { SYS_sendto, "sendto" }, { SYS_sendmsg, "sendmsg" },
		{ SYS_pause, "pause" }, { SYS_rt_sigsuspend, "rt_sigsuspend" },
		{ SYS_rt_sigtimedwait, "rt_sigtimedwait" }, { SYS_restart_syscall, "restart_syscall" },
		{ SYS_sched_yield, "sched_yield" }, { SYS_ioctl, "ioctl" }, { SYS_openat, "openat" },
		{ SYS_mmap, "mmap" }, { SYS_munmap, "munmap" }, { SYS_madvise, "madvise" },
		{ SYS_clone, "clone" }, { SYS_clone3, "clone3" }, { SYS_exit, "exit" },
		{ SYS_io_uring_enter, "io_uring_enter" }, { SYS_msgrcv, "msgrcv" },
		{ SYS_semtimedop, "semtimedop" }, { SYS_getrandom, "getrandom" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (names[i].nr == nr)
			return names[i].name;
	return NULL;
}

const char *thread_resume_how(const struct thread_state *t)
{
	if (!(t->flags & THREAD_IN_SYSCALL))
		return "running";
	switch (-(long long)t->regs.rax) {
	case KERNEL_ERESTARTSYS:
		return "restarts (EINTR if a handler without SA_RESTART runs)";
	case KERNEL_ERESTARTNOINTR:
		return "restarts";
	case KERNEL_ERESTARTNOHAND:
		return "restarts (EINTR if a handler runs)";
	case KERNEL_ERESTART_RESTARTBLOCK:
		return "issued again, timeout afresh (EINTR if a handler runs)";
	default:
		return "returns";
	}
}
