// SPDX-License-Identifier: GPL-2.0-only
#include "track/settle.h"

#include <errno.h>
#include <time.h>

#include "basic/util.h"
#include "track/target.h"

/* Between looks at a thread that still runs.  There is no event for
 * "another process's thread went to sleep" short of tracing it (which
 * would stop it): short bounded sleeps instead. */
#define SETTLE_POLL_NS 200000ULL

static bool running(pid_t pid, pid_t tid)
{
	unsigned long flags;
	char state;

	return proc_task_stat(pid, tid, &state, &flags) == 0 && state == 'R';
}

static int mark_one(void *ud, pid_t tid)
{
	struct settle *s = ud;

	if (s->n == SETTLE_MAX_THREADS)
		return 1; /* enough: the rest are not looked at */
	s->tid[s->n] = tid;
	s->ran[s->n] = running(s->pid, tid);
	s->n++;
	return 0;
}

void settle_mark(pid_t pid, struct settle *s)
{
	*s = (struct settle){ .pid = pid };
	proc_task_foreach(pid, mark_one, s);
}

/* Threads asleep at the mark that run now; *waiting lists them. */
static unsigned woken(const struct settle *s, bool *waiting)
{
	unsigned n = 0;

	for (unsigned i = 0; i < s->n; i++) {
		waiting[i] = waiting[i] && running(s->pid, s->tid[i]);
		n += waiting[i];
	}
	return n;
}

void settle_wait(const struct settle *s, uint64_t max_ns, struct settle_result *res)
{
	bool waiting[SETTLE_MAX_THREADS];
	uint64_t t0 = now_ns(), t = t0;
	unsigned n;

	*res = (struct settle_result){ 0 };
	if (!max_ns)
		return;
	for (unsigned i = 0; i < s->n; i++)
		waiting[i] = !s->ran[i];
	n = res->threads = woken(s, waiting);
	/* A thread seen asleep again is not looked at again: its stall, if
	 * it had one, is behind it. */
	while (n && t - t0 < max_ns) {
		struct timespec ts = { 0, (long)MIN(SETTLE_POLL_NS, max_ns - (t - t0)) };

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		n = woken(s, waiting);
		t = now_ns();
	}
	res->ns = t - t0;
	res->timed_out = n > 0;
}
