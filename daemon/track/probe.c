// SPDX-License-Identifier: GPL-2.0-only
#include "track/probe.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "basic/uapi.h"
#include "basic/util.h"

typedef bool (*probe_fn)(char *detail, size_t len);

static int open_uffd(char *detail, size_t len)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);

	if (fd >= 0) {
		snprintf(detail, len, "userfaultfd(2)");
		return fd;
	}
	int e = errno;
	_cleanup_close_ int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		if (fd >= 0) {
			snprintf(detail, len, "/dev/userfaultfd");
			return fd;
		}
	}
	snprintf(detail, len, "userfaultfd: %s", strerror(e));
	return -1;
}

static bool api_features(uint64_t want, char *detail, size_t len)
{
	_cleanup_close_ int fd = open_uffd(detail, len);
	struct uffdio_api api = { .api = UFFD_API, .features = want };

	if (fd < 0)
		return false;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		snprintf(detail, len, "UFFDIO_API rejects it (%s): Linux 6.7+ needed",
			 strerror(errno));
		return false;
	}
	snprintf(detail, len, "features 0x%llx", (unsigned long long)api.features);
	return true;
}

static bool p_userfaultfd(char *d, size_t l)
{
	_cleanup_close_ int fd = open_uffd(d, l);
	return fd >= 0;
}

static bool p_wp_async(char *d, size_t l)
{
	return api_features(UFFD_FEATURE_WP_ASYNC, d, l);
}

static bool p_wp_unpopulated(char *d, size_t l)
{
	return api_features(UFFD_FEATURE_WP_UNPOPULATED, d, l);
}

static bool p_events(char *d, size_t l)
{
	return api_features(UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |
				    UFFD_FEATURE_EVENT_REMAP, d, l);
}

/* End to end in our own mm: register, write, scan, expect exactly 1 page. */
static bool p_pagemap_scan(char *d, size_t l)
{
	_cleanup_close_ int uffd = open_uffd(d, l);
	_cleanup_close_ int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED };
	struct page_region vec[8];
	bool ok = false;
	char *mem;

	if (uffd < 0 || pm < 0 || ioctl(uffd, UFFDIO_API, &api) < 0) {
		snprintf(d, l, "needs userfaultfd WP_ASYNC first");
		return false;
	}
	mem = mmap(NULL, 4 * PAGE_SIZE_4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	if (mem == MAP_FAILED)
		return false;
	struct uffdio_register reg = { .range = { (uint64_t)mem, 4 * PAGE_SIZE_4K },
				       .mode = UFFDIO_REGISTER_MODE_WP };
	struct pm_scan_arg arg = {
		.size = sizeof(arg), .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
		.start = (uint64_t)mem, .end = (uint64_t)mem + 4 * PAGE_SIZE_4K,
		.vec = (uint64_t)vec, .vec_len = 8, .category_mask = PAGE_IS_WRITTEN,
		.return_mask = PAGE_IS_WRITTEN | PAGE_IS_PFNZERO,
	};
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
		snprintf(d, l, "UFFDIO_REGISTER(WP): %s", strerror(errno));
		goto out;
	}
	mem[0] = 1;
	long n = ioctl(pm, PAGEMAP_SCAN, &arg); /* collects and protects page 0 */
	mem[2 * PAGE_SIZE_4K] = 1;
	long m = n >= 0 ? ioctl(pm, PAGEMAP_SCAN, &arg) : -1;
	if (n < 0 || m < 0) {
		snprintf(d, l, "PAGEMAP_SCAN: %s (Linux 6.7+ needed)", strerror(errno));
		goto out;
	}
	ok = n == 1 && m == 1 && vec[0].start == (uint64_t)mem + 2 * PAGE_SIZE_4K &&
	     vec[0].end == vec[0].start + PAGE_SIZE_4K;
	snprintf(d, l, ok ? "get-and-re-protect reports exactly the written page"
			  : "unexpected result (%ld, %ld regions)", n, m);
out:
	munmap(mem, 4 * PAGE_SIZE_4K);
	return ok;
}

static pid_t spawn_sleeper(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		for (;;)
			pause();
	}
	return pid;
}

static void reap(pid_t pid)
{
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
		;
}

static bool p_pidfd_getfd(char *d, size_t l)
{
	pid_t pid = spawn_sleeper();
	bool ok = false;

	if (pid < 0)
		return false;
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		snprintf(d, l, "pidfd_open: %s", strerror(errno));
	} else {
		int fd = (int)syscall(SYS_pidfd_getfd, pidfd, 0, 0);
		ok = fd >= 0;
		snprintf(d, l, ok ? "pidfd_open + pidfd_getfd" : "pidfd_getfd: %s",
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		close(pidfd);
	}
	reap(pid);
	return ok;
}

static bool p_ptrace(char *d, size_t l)
{
	pid_t pid = spawn_sleeper();
	bool ok;

	if (pid < 0)
		return false;
	ok = ptrace(PTRACE_SEIZE, pid, NULL, NULL) == 0;
	snprintf(d, l, ok ? "PTRACE_SEIZE allowed" : "PTRACE_SEIZE: %s (CAP_SYS_PTRACE?)",
		 strerror(errno));
	reap(pid);
	return ok;
}

static bool p_vm_readv(char *d, size_t l)
{
	char src[64] = "wpmig", dst[64] = { 0 };
	struct iovec lio = { dst, sizeof(dst) }, rio = { src, sizeof(src) };
	bool ok = process_vm_readv(getpid(), &lio, 1, &rio, 1, 0) == sizeof(src) &&
		  !strcmp(dst, "wpmig");

	snprintf(d, l, ok ? "process_vm_readv" : "process_vm_readv: %s", strerror(errno));
	return ok;
}

static const struct {
	const char *name;
	probe_fn fn;
} probes[] = {
	{ "userfaultfd", p_userfaultfd },
	{ "uffd-wp-async", p_wp_async },
	{ "uffd-wp-unpopulated", p_wp_unpopulated },
	{ "uffd-events", p_events },
	{ "pagemap-scan", p_pagemap_scan },
	{ "pidfd-getfd", p_pidfd_getfd },
	{ "ptrace", p_ptrace },
	{ "process-vm-readv", p_vm_readv },
};

int probe_run(struct probe_result *res)
{
	struct utsname u;
	int n = 0;

	for (size_t i = 0; i < ARRAY_SIZE(probes) && n < PROBE_MAX; i++, n++) {
		res[n] = (struct probe_result){ .name = probes[i].name };
		res[n].ok = probes[i].fn(res[n].detail, sizeof(res[n].detail));
	}
	if (uname(&u) == 0 && n < PROBE_MAX) {
		res[n] = (struct probe_result){ .name = "kernel", .ok = true };
		snprintf(res[n].detail, sizeof(res[n].detail), "%s %s", u.sysname, u.release);
		n++;
	}
	return n;
}

bool probe_all_ok(const struct probe_result *res, int n)
{
	for (int i = 0; i < n; i++)
		if (!res[i].ok)
			return false;
	return true;
}
