// SPDX-License-Identifier: GPL-2.0-only
#include "peer/pool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "basic/util.h"

struct worker {
	struct wpool *p;
	pthread_t thread;
	void *ctx;
};

struct wpool {
	pthread_mutex_t lock;
	pthread_cond_t work;
	struct wtask *q_head, *q_tail;     /* waiting to run */
	struct wtask *done_head, *done_tail; /* finished, for the loop */
	struct event *done_ev;
	bool stop;
	unsigned running;
	unsigned n;
	struct worker *w;
	void (*ctx_free)(void *ctx);
};

static void push(struct wtask **head, struct wtask **tail, struct wtask *t)
{
	t->next = NULL;
	if (*tail)
		(*tail)->next = t;
	else
		*head = t;
	*tail = t;
}

static struct wtask *pop(struct wtask **head, struct wtask **tail)
{
	struct wtask *t = *head;

	if (t) {
		*head = t->next;
		if (!*head)
			*tail = NULL;
	}
	return t;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct wpool *p = w->p;
	struct wtask *t;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->q_head && !p->stop)
			pthread_cond_wait(&p->work, &p->lock);
		t = pop(&p->q_head, &p->q_tail);
		if (!t)
			break; /* stopping and nothing left */
		p->running++;
		pthread_mutex_unlock(&p->lock);
		t->run(t, w->ctx);
		pthread_mutex_lock(&p->lock);
		p->running--;
		push(&p->done_head, &p->done_tail, t);
		if (p->done_ev)
			event_active(p->done_ev, 0, 0);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void run_done(struct wpool *p)
{
	struct wtask *t;

	pthread_mutex_lock(&p->lock);
	t = p->done_head;
	p->done_head = p->done_tail = NULL;
	pthread_mutex_unlock(&p->lock);
	while (t) {
		struct wtask *next = t->next;
		t->done(t);
		t = next;
	}
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	run_done(arg);
}

struct wpool *wpool_new(struct event_base *base, unsigned workers, void *(*ctx_new)(void *arg),
			void (*ctx_free)(void *ctx), void *arg)
{
	struct wpool *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	p->ctx_free = ctx_free;
	p->done_ev = event_new(base, -1, 0, on_done, p);
	p->w = calloc(MAX(workers, 1u), sizeof(*p->w));
	if (!p->done_ev || !p->w) {
		wpool_free(p);
		return NULL;
	}
	for (unsigned i = 0; i < MAX(workers, 1u); i++) {
		p->w[i].p = p;
		p->w[i].ctx = ctx_new(arg);
		if (!p->w[i].ctx || pthread_create(&p->w[i].thread, NULL, worker_main, &p->w[i])) {
			if (p->w[i].ctx)
				ctx_free(p->w[i].ctx);
			wpool_free(p);
			return NULL;
		}
		p->n = i + 1;
	}
	return p;
}

void wpool_submit(struct wpool *p, struct wtask *t)
{
	pthread_mutex_lock(&p->lock);
	push(&p->q_head, &p->q_tail, t);
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
}

bool wpool_trim(struct wpool *p, void (*trim)(void *ctx))
{
	bool idle;

	pthread_mutex_lock(&p->lock);
	idle = !p->q_head && !p->running;
	for (unsigned i = 0; idle && i < p->n; i++)
		trim(p->w[i].ctx);
	pthread_mutex_unlock(&p->lock);
	return idle;
}

void wpool_free(struct wpool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->n; i++)
		pthread_join(p->w[i].thread, NULL);
	/* done() may queue more (a closing connection drops its generation):
	 * run it here, with the first worker's context. */
	for (;;) {
		struct wtask *t;

		run_done(p);
		if (!(t = pop(&p->q_head, &p->q_tail)))
			break;
		t->run(t, p->n ? p->w[0].ctx : NULL);
		push(&p->done_head, &p->done_tail, t);
	}
	for (unsigned i = 0; i < p->n; i++)
		p->ctx_free(p->w[i].ctx);
	if (p->done_ev)
		event_free(p->done_ev);
	free(p->w);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->work);
	free(p);
}
