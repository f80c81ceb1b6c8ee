// SPDX-License-Identifier: GPL-2.0-only
/*
 * Preloaded into wpmigd when tests/ci/valgrind.sh runs it under memcheck.
 *
 * Debian 12's valgrind (3.19) does not know four system calls the daemon
 * needs and fails them with ENOSYS: userfaultfd, pidfd_send_signal,
 * pidfd_open and pidfd_getfd (newer valgrinds handle them).  None of the
 * four reads or writes memory the way we call them (scalars in, an fd or
 * 0 out), so this shim runs exactly those four natively, outside the
 * simulated CPU (VALGRIND_NON_SIMD_CALL1), and passes every other call on
 * to valgrind unchanged.
 *
 * And valgrind treats the PAGEMAP_SCAN ioctl generically (its struct is
 * read and written) but cannot know the kernel also filled the result
 * vector the struct points to: the shim marks the entries the call
 * returned as defined, as valgrind's own handler would.
 *
 * Outside valgrind the shim only forwards.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>

#include "basic/uapi.h"

struct native_call {
	long nr, a[6];
};

/* Runs on the real CPU: no libc (errno would land in valgrind's TLS).
 * These four calls take at most three arguments. */
static long native_syscall(long tid, long arg)
{
	const struct native_call *c = (const struct native_call *)arg;
	long ret;

	(void)tid;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(c->nr), "D"(c->a[0]), "S"(c->a[1]), "d"(c->a[2])
			 : "rcx", "r11", "memory");
	return ret;
}

static bool unknown_to_valgrind(long nr)
{
	return nr == SYS_userfaultfd || nr == SYS_pidfd_send_signal || nr == SYS_pidfd_open ||
	       nr == SYS_pidfd_getfd;
}

long syscall(long nr, ...);
long syscall(long nr, ...)
{
	static long (*real)(long, ...);
	struct native_call c = { .nr = nr };
	va_list ap;

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		c.a[i] = va_arg(ap, long);
	va_end(ap);
	if (RUNNING_ON_VALGRIND && unknown_to_valgrind(nr)) {
		long r = (long)VALGRIND_NON_SIMD_CALL1(native_syscall, &c);
		if (r < 0 && r > -4096) {
			errno = (int)-r;
			return -1;
		}
		return r;
	}
	if (!real)
		real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
	return real(nr, c.a[0], c.a[1], c.a[2], c.a[3], c.a[4], c.a[5]);
}

int ioctl(int fd, unsigned long request, ...);
int ioctl(int fd, unsigned long request, ...)
{
	static int (*real)(int, unsigned long, ...);
	va_list ap;
	void *arg;
	int r;

	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!real)
		real = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
	r = real(fd, request, arg);
	if (r > 0 && request == PAGEMAP_SCAN) {
		const struct pm_scan_arg *a = arg;
		VALGRIND_MAKE_MEM_DEFINED((void *)(uintptr_t)a->vec,
					  (size_t)r * sizeof(struct page_region));
	}
	return r;
}
