/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Logging to stderr (journald takes it from there).  The *_errno variants
 * set errno for %m and return -|err|, so an error is logged once, where it
 * is finally handled:  return log_error_errno(r, "Failed to X: %m");
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

void log_set_max_level(int level);
int log_get_max_level(void);
int log_internal(int level, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_full_errno(level, err, ...)                                   \
	({                                                                \
		int _l = (level), _e = (err);                             \
		(log_get_max_level() >= _l) ? log_internal(_l, _e, __VA_ARGS__) \
					   : -(_e < 0 ? -_e : _e);        \
	})

#define log_debug(...) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, __VA_ARGS__)

/*
 * Events a client can cause by the thousand (refusals) are logged burst
 * lines per interval, the rest counted.  One per kind of event, used by
 * one thread.
 */
struct log_limit {
	unsigned interval_s, burst;
	uint64_t window_ns;
	unsigned logged, quiet;
};

/*
 * Should this event be logged?  When a new interval starts after some
 * went unlogged, *quiet is how many (else 0): say so.  *last is true for
 * the last line of a burst: say that more will only be counted.
 */
bool log_limit_pass(struct log_limit *l, unsigned *quiet, bool *last);
