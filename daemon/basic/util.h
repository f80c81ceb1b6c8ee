/* SPDX-License-Identifier: GPL-2.0-only */
/* Small helpers shared by daemon, client and tests: cleanup, sizes, time. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define PAGE_SIZE_4K 4096UL
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

static inline void freep(void *p)
{
	free(*(void **)p);
}

static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/* Hand a cleanup-owned value to the caller. */
#define TAKE_PTR(p)                          \
	({                                   \
		__typeof__(p) _tp = (p);     \
		(p) = NULL;                  \
		_tp;                         \
	})
#define TAKE_FD(fd)                          \
	({                                   \
		int _tf = (fd);              \
		(fd) = -1;                   \
		_tf;                         \
	})

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static inline double ns_to_ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

/* Read a whole small file (procfs) into a NUL-terminated buffer. */
int read_full_file(const char *path, char **ret, size_t *ret_len);
/* Parse an unsigned decimal or 0x-hex number; 0 or -EINVAL/-ERANGE. */
int parse_u64(const char *s, uint64_t *ret);
/* Parse a size with optional K/M/G/T suffix (powers of 1024), optionally
 * followed by B or iB; the number as parse_number() reads it. */
int parse_size(const char *s, uint64_t *ret);
/*
 * An image set's name: one rule for the daemon (its store) and the client.
 * 1 to SET_NAME_MAX of [A-Za-z0-9._+@:-], not starting with '.' (a hidden
 * or relative name) nor '-' (it would read as an option of wpmig-ctl).
 */
#define SET_NAME_MAX 128
bool set_name_valid(const char *s);
/*
 * The one number syntax of the config file and of wpmig-ctl's arguments:
 * decimal digits only, no sign, no space, no 0x, and no leading zero
 * ("010" would be 8 to some readers, 10 to others).  0, -EINVAL, or
 * -ERANGE when above max.
 */
int parse_number(const char *s, uint64_t max, uint64_t *ret);
/*
 * A peer address, syntax only: HOST:PORT, [IPv6]:PORT, HOST or a bare IPv6
 * address (the default port), or unix:/PATH.  HOST: letters, digits, '-',
 * '.' and '_'; PORT: 1..65535 as parse_number() reads it.
 */
int check_addr_syntax(const char *addr);

/*
 * Call fn for every open fd of pid with what /proc/PID/fd/N points at;
 * a non-zero return of fn stops the walk and is returned.  An fd closed
 * during the walk is skipped; 0 when the process is gone (nothing to
 * walk), -errno when its fds cannot be listed (EACCES: not ours to see).
 */
int proc_fd_foreach(pid_t pid, int (*fn)(void *ud, const char *fd, const char *target),
		    void *ud);

/*
 * Call fn for every thread id listed in /proc/PID/task; a non-zero return
 * of fn stops the walk and is returned.  -ESRCH when the process is gone
 * (before or during the walk).  Threads that exit during a walk can make
 * it miss others (procfs resumes the listing by position): a caller that
 * must see every thread walks again until a walk sees no change.
 */
int proc_task_foreach(pid_t pid, int (*fn)(void *ud, pid_t tid), void *ud);
