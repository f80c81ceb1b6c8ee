// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "basic/util.h"

/* Numbers: the daemon's config syntax (parse_number: decimal, no sign, no
 * 0x, no leading zero). */
int parse_pid_arg(const char *s, int64_t *ret)
{
	uint64_t n;

	if (parse_number(s, INT_MAX, &n) < 0 || n == 0)
		return -EINVAL;
	*ret = (int64_t)n;
	return 0;
}

/* The daemon's rule (set_name_valid): a set it holds can be named here. */
int check_set_name(const char *s)
{
	return set_name_valid(s) ? 0 : -EINVAL;
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
	if (slash && (parse_number(slash + 1, UINT64_MAX, &g) < 0 || g == 0))
		return -EINVAL;
	if (gen_required && !slash)
		return -EINVAL;
	*set = TAKE_PTR(name);
	*gen = g;
	return 0;
}

/* HOST:PORT, [V6]:PORT, HOST (the default port) or unix:/PATH, as the
 * daemon's listen takes it */
int check_addr(const char *s)
{
	return check_addr_syntax(s);
}

/* Bytes per second with an optional K/M/G/T suffix; 0 means unlimited. */
int parse_rate(const char *s, uint64_t *ret)
{
	if (!*s || *s == '-')
		return -EINVAL;
	return parse_size(s, ret);
}
