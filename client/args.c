// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "basic/util.h"

/* Plain decimal digits only: no sign, no 0x, no octal, no spaces. */
static int parse_dec(const char *s, uint64_t *ret)
{
	size_t n = strlen(s);

	if (n == 0 || n > 19 || strspn(s, "0123456789") != n)
		return -EINVAL;
	*ret = strtoull(s, NULL, 10);
	return 0;
}

int parse_pid_arg(const char *s, pid_t *ret)
{
	uint64_t n;

	if (parse_dec(s, &n) < 0 || n == 0 || n > INT_MAX)
		return -EINVAL;
	*ret = (pid_t)n;
	return 0;
}

int check_set_name(const char *s)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				 "0123456789._-";
	size_t n = strlen(s);

	if (n == 0 || n > 64 || s[0] == '.' || s[0] == '-' || strspn(s, ok) != n)
		return -EINVAL;
	return 0;
}

/* SET or SET/GEN; GEN a positive decimal. */
int parse_set_gen(const char *s, bool gen_required, char **set, uint64_t *gen)
{
	const char *slash = strchr(s, '/');
	_cleanup_free_ char *name = strndup(s, slash ? (size_t)(slash - s) : strlen(s));
	uint64_t g = 0;

	if (!name)
		return -ENOMEM;
	if (check_set_name(name) < 0)
		return -EINVAL;
	if (slash && (parse_dec(slash + 1, &g) < 0 || g == 0))
		return -EINVAL;
	if (gen_required && !slash)
		return -EINVAL;
	*set = TAKE_PTR(name);
	*gen = g;
	return 0;
}

/* HOST:PORT, [V6]:PORT, HOST (the default port) or unix:/PATH */
int check_addr(const char *s)
{
	const char *colon = strrchr(s, ':');
	uint64_t port;

	if (!strncmp(s, "unix:", 5))
		return s[5] == '/' && strlen(s + 5) < 108 ? 0 : -EINVAL;
	if (!*s || colon == s)
		return -EINVAL;
	/* HOST alone, [V6] or a bare IPv6 address: the default peer port */
	if (!colon || s[strlen(s) - 1] == ']' || (s[0] != '[' && strchr(s, ':') != colon))
		return 0;
	if (parse_dec(colon + 1, &port) < 0 || port == 0 || port > 65535)
		return -EINVAL;
	return 0;
}

/* Bytes per second with an optional K/M/G/T suffix; 0 means unlimited. */
int parse_rate(const char *s, uint64_t *ret)
{
	if (!*s || *s == '-')
		return -EINVAL;
	return parse_size(s, ret);
}
