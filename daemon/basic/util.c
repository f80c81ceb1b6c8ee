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

bool set_name_valid(const char *s)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				 "0123456789._+@:-";
	size_t n = s ? strlen(s) : 0;

	return n && n <= SET_NAME_MAX && s[0] != '.' && s[0] != '-' && strspn(s, ok) == n;
}

int parse_number(const char *s, uint64_t max, uint64_t *ret)
{
	size_t n = s ? strspn(s, "0123456789") : 0;
	unsigned long long v;

	if (!n || s[n] || (s[0] == '0' && n > 1))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, NULL, 10);
	if (errno)
		return -errno;
	if (v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

int parse_size(const char *s, uint64_t *ret)
{
	char digits[24];
	const char *end;
	uint64_t v;
	unsigned shift = 0;
	size_t n = s ? strspn(s, "0123456789") : 0;
	int r;

	if (!n)
		return -EINVAL;
	if (n >= sizeof(digits))
		return -ERANGE;
	memcpy(digits, s, n);
	digits[n] = 0;
	r = parse_number(digits, UINT64_MAX, &v);
	if (r < 0)
		return r;
	end = s + n;
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
	*ret = v << shift;
	return 0;
}

static bool host_ok(const char *h, size_t n, bool v6)
{
	const char *set = v6 ? "0123456789abcdefABCDEF:.%" :
			       "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._";

	for (size_t i = 0; i < n; i++)
		if (!strchr(set, h[i]))
			return false;
	return n > 0 && n < 256;
}

int check_addr_syntax(const char *addr)
{
	const char *colon = strrchr(addr, ':'), *port = NULL;
	uint64_t p;

	if (!strncmp(addr, "unix:", 5))
		return addr[5] == '/' && strlen(addr + 5) < 108 ? 0 : -EINVAL;
	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');

		if (!close || !host_ok(addr + 1, (size_t)(close - addr - 1), true) ||
		    (close[1] && close[1] != ':'))
			return -EINVAL;
		port = close[1] ? close + 2 : NULL;
	} else if (colon && strchr(addr, ':') != colon) {
		return host_ok(addr, strlen(addr), true) ? 0 : -EINVAL; /* bare IPv6 */
	} else {
		if (!host_ok(addr, colon ? (size_t)(colon - addr) : strlen(addr), false))
			return -EINVAL;
		port = colon ? colon + 1 : NULL;
	}
	if (port && (parse_number(port, 65535, &p) < 0 || p == 0))
		return -EINVAL;
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
