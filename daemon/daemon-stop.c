// SPDX-License-Identifier: GPL-2.0-only
/*
 * A stop that always ends.  SIGTERM detaches every idle session at once on
 * the loop and asks running jobs to stop; a job stuck in a call that does
 * not heed cancellation (a hung file system, a device) would hold the
 * daemon forever.  So the stop also starts a watchdog thread: if the
 * daemon has not finished stop_timeout seconds later, it says what is
 * still running and exits.  Exiting is itself a detach for whatever the
 * stuck jobs held: closing our userfaultfds makes the kernel unregister
 * their ranges and clear write-protection, and our ptrace stops end with
 * us (inside the injection window, PTRACE_O_EXITKILL ends the target
 * rather than leave it on our registers).
 */
#include "daemon.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "basic/log.h"

struct stop_deadline {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct timespec until; /* CLOCK_MONOTONIC */
	bool done;
	unsigned timeout_s;
	struct job_pool *jobs;
};

static void *stop_watchdog(void *arg)
{
	struct stop_deadline *w = arg;
	unsigned running = 0, queued = 0;
	char names[256];
	bool done;
	int r = 0;

	pthread_mutex_lock(&w->lock);
	while (!w->done && r != ETIMEDOUT)
		r = pthread_cond_timedwait(&w->cond, &w->lock, &w->until);
	done = w->done;
	pthread_mutex_unlock(&w->lock);
	if (done)
		return NULL;
	job_pool_counts(w->jobs, &running, &queued);
	job_pool_running_names(w->jobs, names, sizeof(names));
	log_error("Not stopped within stop_timeout=%us: %u job(s) still running (%s); exiting "
		  "now: the kernel unregisters what our userfaultfds still track and ends our "
		  "ptrace stops", w->timeout_s, running, names[0] ? names : "none");
	sd_notify(0, "STATUS=Stop timed out: exiting");
	_exit(1);
}

int daemon_stop_deadline_start(struct daemon *d)
{
	struct stop_deadline *w = calloc(1, sizeof(*w));
	pthread_condattr_t ca;
	sigset_t all, old;
	int r;

	if (!w)
		return -ENOMEM;
	*w = (struct stop_deadline){ .timeout_s = d->cfg.stop_timeout, .jobs = d->jobs };
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	clock_gettime(CLOCK_MONOTONIC, &w->until);
	w->until.tv_sec += (time_t)w->timeout_s;
	/* Signals stay with the loop thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = -pthread_create(&w->thread, NULL, stop_watchdog, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0) {
		free(w);
		return r;
	}
	d->stop_deadline = w;
	return 0;
}

void daemon_stop_deadline_end(struct daemon *d)
{
	struct stop_deadline *w = d->stop_deadline;

	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->done = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
	d->stop_deadline = NULL;
}
