/* SPDX-License-Identifier: GPL-2.0-only */
/* A target before we touch it: may it be traced, and which thread to stop. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * Check the target can be traced (exists, not a zombie or kernel thread,
 * not in seccomp strict mode, not already traced) and fill a human reason
 * on failure.  Seccomp filters are evaluated later, at attach.
 */
int target_check(pid_t pid, char *why, size_t why_len);

/* State letter and PF_* flags of thread tid of pid, from procfs. */
int proc_task_stat(pid_t pid, pid_t tid, char *state, unsigned long *flags);

/*
 * Has thread tid of pid exited, or is it exiting (gone from procfs, a
 * zombie, or PF_EXITING)?  What tells a thread that simply ended from a
 * refusal when a ptrace request on it fails: a dying thread fails them
 * with ESRCH (gone), EPERM (PTRACE_SEIZE of an exited one), or an exit
 * where a stop was awaited.
 */
bool task_exiting(pid_t pid, pid_t tid);

/*
 * Thread tid of pid, alive, refused a ptrace request with err: the reason
 * for the user ("already traced by PID N" when it is).
 */
void target_refusal(pid_t pid, pid_t tid, int err, char *why, size_t why_len);

/* A field of /proc/PID/status (PID may be a thread id), whitespace trimmed. */
int proc_status_field(pid_t pid, const char *key, char *buf, size_t len);
/*
 * A thread that a stop disturbs least: one blocked in a restartable
 * syscall, else a running one; the main thread when none is seen.
 */
pid_t target_choose_thread(pid_t pid);
