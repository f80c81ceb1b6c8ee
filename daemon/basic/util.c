// SPDX-License-Identifier: GPL-2.0-only
#include "basic/util.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <fcntl.h>
#include <string.h>

int read_full_file(const char *path, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;

	if (fd < 0)
		return -errno;
	for (;;) {
		if (cap - len < 4096) {
			size_t ncap = cap ? cap * 2 : 16384;
			char *n = realloc(buf, ncap + 1);

			if (!n)
				return -ENOMEM;
			buf = n;
			cap = ncap;
		}
		ssize_t r = read(fd, buf + len, cap - len);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	if (!buf) {
		buf = malloc(1);
		if (!buf)
			return -ENOMEM;
	}
	buf[len] = 0;
	*ret = TAKE_PTR(buf);
	if (ret_len)
		*ret_len = len;
	return 0;
}

/* Decimal, or hex with 0x; no sign, no space, no octal. */
int parse_u64(const char *s, uint64_t *ret)
{
	bool hex = s && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
	const char *digits = hex ? s + 2 : s;
	char *end;
	unsigned long long v;

	if (!s || !(hex ? isxdigit((unsigned char)*digits) : isdigit((unsigned char)*digits)))
		return -EINVAL;
	errno = 0;
	v = strtoull(digits, &end, hex ? 16 : 10);
	if (errno)
		return -errno;
	if (*end)
		return -EINVAL;
	*ret = v;
	return 0;
}

int parse_size(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -errno;
	if (end == s)
		return -EINVAL;
	switch (*end) {
	case 0:
		break;
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	default:
		return -EINVAL;
	}
	if (*end && end[1] && strcmp(end + 1, "iB") && strcmp(end + 1, "B"))
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*ret = (uint64_t)v << shift;
	return 0;
}

/* The end of a procfs walk: 0, or why it stopped early (-ESRCH: the process went away). */
static int walk_end(int err)
{
	return err == ENOENT ? -ESRCH : -err;
}

int proc_fd_foreach(pid_t pid, int (*fn)(void *ud, const char *fd, const char *target),
		    void *ud)
{
	char dir[64], path[320], link[256];
	struct dirent *de;
	DIR *d;
	int r = 0;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while (r == 0) {
		ssize_t n;

		errno = 0;
		de = readdir(d);
		if (!de) {
			r = errno == ENOENT ? 0 : -errno;
			break;
		}
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n < 0)
			continue; /* closed meanwhile */
		link[n] = 0;
		r = fn(ud, de->d_name, link);
	}
	closedir(d);
	return r;
}

int proc_task_foreach(pid_t pid, int (*fn)(void *ud, pid_t tid), void *ud)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int r = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return walk_end(errno);
	while (r == 0) {
		errno = 0;
		de = readdir(d);
		if (!de) {
			r = errno ? walk_end(errno) : 0;
			break;
		}
		pid_t tid = (pid_t)atoi(de->d_name);

		if (tid > 0)
			r = fn(ud, tid);
	}
	closedir(d);
	return r;
}
