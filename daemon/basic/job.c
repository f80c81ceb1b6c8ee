// SPDX-License-Identifier: GPL-2.0-only
#include "basic/job.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "basic/log.h"
#include "basic/util.h"

/* DROPPED: cancelled while queued; on no list, done() pending. */
enum job_phase { JOB_QUEUED, JOB_RUNNING, JOB_FINISHED, JOB_DROPPED };

struct job {
	struct job_pool *pool;
	const struct job_ops *ops;
	void *userdata;
	struct event *done_ev, *progress_ev;
	enum job_phase phase;    /* under pool->lock */
	bool cancel;             /* under pool->lock */
	int result;
	struct job_progress prog; /* under pool->lock */
	TAILQ_ENTRY(job) link;   /* queue while queued, else the running list */
};

TAILQ_HEAD(job_list, job);

struct job_pool {
	struct event_base *base;
	pthread_mutex_t lock;
	pthread_cond_t wake;   /* workers: a job was queued, or quit */
	pthread_cond_t cancel; /* job_wait_cancel() sleepers */
	struct job_list queue, running;
	unsigned n_queued, n_running;
	bool quit;
	pthread_t *threads;
	unsigned n_threads;
};

static void job_free(struct job *j)
{
	if (j->progress_ev)
		event_free(j->progress_ev);
	if (j->done_ev)
		event_free(j->done_ev);
	free(j);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	struct job_pool *p = j->pool;

	pthread_mutex_lock(&p->lock);
	if (j->phase == JOB_FINISHED) {
		TAILQ_REMOVE(&p->running, j, link);
		p->n_running--;
	}
	pthread_mutex_unlock(&p->lock);
	/* No progress after done: drop one that may still be pending. */
	event_del(j->progress_ev);
	j->ops->done(j, j->result, j->userdata);
	job_free(j);
}

static void on_progress(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	struct job_progress copy;

	pthread_mutex_lock(&j->pool->lock);
	copy = j->prog;
	pthread_mutex_unlock(&j->pool->lock);
	if (j->ops->progress)
		j->ops->progress(j, &copy, j->userdata);
}

static void *worker(void *arg)
{
	struct job_pool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct job *j = TAILQ_FIRST(&p->queue);

		if (!j) {
			if (p->quit)
				break;
			pthread_cond_wait(&p->wake, &p->lock);
			continue;
		}
		TAILQ_REMOVE(&p->queue, j, link);
		p->n_queued--;
		TAILQ_INSERT_TAIL(&p->running, j, link);
		p->n_running++;
		j->phase = JOB_RUNNING;
		pthread_mutex_unlock(&p->lock);
		int r = j->ops->run(j, j->userdata);
		pthread_mutex_lock(&p->lock);
		j->result = r;
		j->phase = JOB_FINISHED;
		event_active(j->done_ev, 0, 0);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static int start_threads(struct job_pool *p, unsigned n)
{
	sigset_t all, old;
	int r = 0;

	/* Signals belong to the loop thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (; p->n_threads < n; p->n_threads++) {
		r = -pthread_create(&p->threads[p->n_threads], NULL, worker, p);
		if (r < 0)
			break;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

struct job_pool *job_pool_new(struct event_base *base, unsigned workers)
{
	struct job_pool *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->base = base;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	pthread_cond_init(&p->cancel, NULL);
	TAILQ_INIT(&p->queue);
	TAILQ_INIT(&p->running);
	p->threads = calloc(workers, sizeof(*p->threads));
	if (!p->threads || start_threads(p, workers) < 0) {
		log_error("Cannot start %u worker threads", workers);
		job_pool_free(p);
		return NULL;
	}
	return p;
}

void job_pool_free(struct job_pool *p)
{
	struct job *j;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->quit = true;
	TAILQ_FOREACH(j, &p->running, link)
		j->cancel = true;
	pthread_cond_broadcast(&p->wake);
	pthread_cond_broadcast(&p->cancel);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	/* Whatever is left never reaches done(): free it quietly. */
	while ((j = TAILQ_FIRST(&p->queue))) {
		TAILQ_REMOVE(&p->queue, j, link);
		job_free(j);
	}
	while ((j = TAILQ_FIRST(&p->running))) {
		TAILQ_REMOVE(&p->running, j, link);
		job_free(j);
	}
	pthread_cond_destroy(&p->cancel);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p->threads);
	free(p);
}

int job_submit(struct job_pool *p, const struct job_ops *ops, void *userdata, struct job **ret)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j)
		return -ENOMEM;
	*j = (struct job){ .pool = p, .ops = ops, .userdata = userdata };
	j->done_ev = event_new(p->base, -1, 0, on_done, j);
	j->progress_ev = event_new(p->base, -1, 0, on_progress, j);
	if (!j->done_ev || !j->progress_ev) {
		job_free(j);
		return -ENOMEM;
	}
	pthread_mutex_lock(&p->lock);
	TAILQ_INSERT_TAIL(&p->queue, j, link);
	p->n_queued++;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	if (ret)
		*ret = j;
	return 0;
}

/* Called with the lock held. */
static void cancel_locked(struct job *j)
{
	struct job_pool *p = j->pool;

	j->cancel = true;
	if (j->phase == JOB_QUEUED) {
		TAILQ_REMOVE(&p->queue, j, link);
		p->n_queued--;
		j->phase = JOB_DROPPED;
		j->result = -ECANCELED;
		event_active(j->done_ev, 0, 0);
	}
	pthread_cond_broadcast(&p->cancel);
}

void job_cancel(struct job *j)
{
	pthread_mutex_lock(&j->pool->lock);
	cancel_locked(j);
	pthread_mutex_unlock(&j->pool->lock);
}

void job_pool_cancel_all(struct job_pool *p)
{
	struct job *j, *next;

	pthread_mutex_lock(&p->lock);
	for (j = TAILQ_FIRST(&p->queue); j; j = next) {
		next = TAILQ_NEXT(j, link);
		cancel_locked(j);
	}
	TAILQ_FOREACH(j, &p->running, link)
		cancel_locked(j);
	pthread_mutex_unlock(&p->lock);
}

bool job_cancelled(struct job *j)
{
	bool c;

	pthread_mutex_lock(&j->pool->lock);
	c = j->cancel;
	pthread_mutex_unlock(&j->pool->lock);
	return c;
}

void job_post_progress(struct job *j, const struct job_progress *prog)
{
	pthread_mutex_lock(&j->pool->lock);
	j->prog = *prog;
	pthread_mutex_unlock(&j->pool->lock);
	event_active(j->progress_ev, 0, 0);
}

int job_wait_cancel(struct job *j, unsigned ms)
{
	struct job_pool *p = j->pool;
	struct timespec until;
	int r = 0;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&p->lock);
	while (!j->cancel && r != ETIMEDOUT)
		r = pthread_cond_timedwait(&p->cancel, &p->lock, &until);
	r = j->cancel ? -ECANCELED : 0;
	pthread_mutex_unlock(&p->lock);
	return r;
}

void job_pool_counts(struct job_pool *p, unsigned *running, unsigned *queued)
{
	pthread_mutex_lock(&p->lock);
	*running = p->n_running;
	*queued = p->n_queued;
	pthread_mutex_unlock(&p->lock);
}

void job_pool_running_names(struct job_pool *p, char *buf, size_t len)
{
	struct job *j;
	size_t at = 0;

	if (!len)
		return;
	buf[0] = 0;
	pthread_mutex_lock(&p->lock);
	TAILQ_FOREACH(j, &p->running, link) {
		int n = snprintf(buf + at, len - at, "%s%s", at ? ", " : "", j->ops->name);

		if (n < 0 || (size_t)n >= len - at)
			break;
		at += (size_t)n;
	}
	pthread_mutex_unlock(&p->lock);
}

const char *job_name(const struct job *j)
{
	return j->ops->name;
}
