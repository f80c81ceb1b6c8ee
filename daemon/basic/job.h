/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Heavy work off the event loop.  A job's run() executes on one worker
 * thread of a fixed pool, start to end (ptrace work must stay on one
 * thread); progress and completion come back to the loop thread through
 * libevent events activated from the worker (libevent's pthreads support
 * is enabled before the base is created).  Loop-side callbacks: progress()
 * any number of times, coalesced, then done() exactly once; the job is
 * freed after done() returns.
 */
#pragma once

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct job;
struct job_pool;

struct job_progress {
	char phase[32];
	uint64_t done, total; /* pages; total 0: unknown */
	uint64_t bytes;
	double rate; /* bytes per second */
	double dirty_rate, expect_ms; /* migrate: a pre-copy pass */
};

struct job_ops {
	const char *name;
	/* Worker thread.  Returns 0 or a negative errno. */
	int (*run)(struct job *j, void *userdata);
	/* Loop thread.  r is run()'s result, or -ECANCELED if it never ran. */
	void (*done)(struct job *j, int r, void *userdata);
	/* Loop thread, optional. */
	void (*progress)(struct job *j, const struct job_progress *p, void *userdata);
};

struct job_pool *job_pool_new(struct event_base *base, unsigned workers);
/* Cancels queued jobs (their done() runs with -ECANCELED), waits for the
 * running ones' run() to return, joins the threads.  Call with no running
 * job, or accept that their done() never runs. */
void job_pool_free(struct job_pool *p);

int job_submit(struct job_pool *p, const struct job_ops *ops, void *userdata,
	       struct job **ret);
/* Queued: done() is called from the loop soon with -ECANCELED.
 * Running: job_cancelled() turns true; run() decides when to stop. */
void job_cancel(struct job *j);
void job_pool_cancel_all(struct job_pool *p);

/* Worker side. */
bool job_cancelled(struct job *j);
void job_post_progress(struct job *j, const struct job_progress *p);
/* Sleep up to ms, waking early on cancel; -ECANCELED if cancelled. */
int job_wait_cancel(struct job *j, unsigned ms);

void job_pool_counts(struct job_pool *p, unsigned *running, unsigned *queued);
/* Names of the running jobs, ", "-separated, cut to len (any thread). */
void job_pool_running_names(struct job_pool *p, char *buf, size_t len);
const char *job_name(const struct job *j);
