/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The receiver's worker threads: tasks run on a worker (decode, verify,
 * store) and complete on the event loop, in completion order.  Each worker
 * has a context of its own (a codec and buffers).
 */
#pragma once

#include <event2/event.h>
#include <stdbool.h>

struct wtask {
	void (*run)(struct wtask *t, void *worker_ctx); /* worker thread */
	void (*done)(struct wtask *t);                  /* loop thread; may free t */
	struct wtask *next;
};

struct wpool;

struct wpool *wpool_new(struct event_base *base, unsigned workers, void *(*ctx_new)(void *arg),
			void (*ctx_free)(void *ctx), void *arg);
void wpool_submit(struct wpool *p, struct wtask *t);
/* When no task is queued or running: trim(ctx) for every worker's
 * context, here, and true; else false. */
bool wpool_trim(struct wpool *p, void (*trim)(void *ctx));
/* Runs what is queued, joins the workers, then calls done() of every
 * finished task on this thread, and runs here what those queue. */
void wpool_free(struct wpool *p);
