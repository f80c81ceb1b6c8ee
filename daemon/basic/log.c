// SPDX-License-Identifier: GPL-2.0-only
#include "basic/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* The one process-wide setting; written at start-up and on SIGHUP. */
static _Atomic int max_level = LOG_INFO;

void log_set_max_level(int level)
{
	max_level = level;
}

int log_get_max_level(void)
{
	return max_level;
}

int log_internal(int level, int err, const char *fmt, ...)
{
	static const char *const names[] = {
		"emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
	};
	/* Under journald (JOURNAL_STREAM set) use <N> priority prefixes. */
	static int journal = -1;
	va_list ap;
	int saved = errno;

	if (journal < 0)
		journal = getenv("JOURNAL_STREAM") != NULL;
	if (err < 0)
		err = -err;
	errno = err;
	flockfile(stderr);
	if (journal)
		fprintf(stderr, "<%d>", level & 7);
	else if (level <= LOG_WARNING)
		fprintf(stderr, "%s: ", names[level & 7]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	funlockfile(stderr);
	errno = saved;
	return -err;
}

bool log_limit_pass(struct log_limit *l, unsigned *quiet, bool *last)
{
	struct timespec ts;
	uint64_t now;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	*quiet = 0;
	if (!l->window_ns || now - l->window_ns >= l->interval_s * 1000000000ULL) {
		*quiet = l->quiet;
		l->window_ns = now;
		l->logged = l->quiet = 0;
	}
	if (l->logged >= l->burst) {
		l->quiet++;
		return false;
	}
	*last = ++l->logged == l->burst;
	return true;
}
