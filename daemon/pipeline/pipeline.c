// SPDX-License-Identifier: GPL-2.0-only
#include "pipeline/pipeline.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <time.h>

#include "basic/util.h"
#include "pipeline/codec.h"

enum job_kind {
	JOB_READ_ENCODE, /* live pass: read, encode, sink */
	JOB_ENCODE,      /* after thaw: encode the capture, sink */
};

struct job {
	enum job_kind kind;
	struct tracker *t;
	const struct pass *p;
	const struct read_plan *plan;
	struct sink *sink;
	uint64_t seq;
	uint8_t *capture;        /* JOB_ENCODE */
	const uint64_t *offset;  /* byte offset of each chunk in capture */
	atomic_size_t next;
	atomic_uint_least64_t pages, zero_pages, unreadable, bytes_out;
	atomic_int err;
};

struct worker {
	struct pipeline *pl;
	pthread_t thread;
	struct codec *codec;
	uint8_t *buf;
	uint64_t *addrs;
	struct enc_chunk enc;
};

struct pipeline {
	pthread_mutex_t run_lock; /* one job on the pool at a time */
	unsigned n;
	uint64_t chunk_bytes;
	struct worker *w;
	pthread_mutex_t lock;
	pthread_cond_t work, done;
	struct job *job;
	uint64_t job_no;
	unsigned busy;
	bool stop;
};

struct capture {
	struct tracker *t;
	struct pass pass;     /* regions, zero set: owned */
	struct read_plan plan;
	uint8_t *buf;
	struct capture_arena own; /* mapped here when the caller's arena was short */
	uint64_t *offset;
};

static void chunk_addrs(const struct read_plan *plan, const struct chunk *c, uint64_t *addrs)
{
	size_t k = 0;

	for (size_t i = 0; i < c->n_segs; i++) {
		const struct range *g = &plan->segs[c->first_seg + i];
		for (uint64_t a = g->start; a < g->end; a += PAGE_SIZE_4K)
			addrs[k++] = a;
	}
}

static int encode_put(struct worker *w, struct job *j, const struct chunk *c, const uint8_t *src)
{
	size_t n = c->bytes / PAGE_SIZE_4K;
	int r;

	chunk_addrs(j->plan, c, w->addrs);
	if (j->sink->ops->put_pages) {
		r = j->sink->ops->put_pages(j->sink, w->codec, j->seq, w->addrs, n, src, &w->enc);
	} else {
		r = codec_encode(w->codec, j->seq, w->addrs, n, src, &w->enc);
		if (r == 0)
			r = j->sink->ops->put_chunk(j->sink, &w->enc);
	}
	if (r < 0)
		return r;
	atomic_fetch_add(&j->zero_pages, n - w->enc.n_data_pages);
	atomic_fetch_add(&j->bytes_out, w->enc.payload_len);
	return 0;
}

static int do_chunk(struct worker *w, struct job *j, size_t i)
{
	const struct chunk *c = &j->plan->chunks[i];
	uint64_t unreadable = 0;
	int r = 0;

	switch (j->kind) {
	case JOB_READ_ENCODE:
		r = read_chunk(j->t, j->p, j->plan, c, w->buf, &unreadable);
		if (r == 0)
			r = encode_put(w, j, c, w->buf);
		break;
	case JOB_ENCODE:
		r = encode_put(w, j, c, j->capture + j->offset[i]);
		break;
	}
	atomic_fetch_add(&j->unreadable, unreadable);
	if (j->kind != JOB_ENCODE || r == 0)
		atomic_fetch_add(&j->pages, c->bytes / PAGE_SIZE_4K);
	return r;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct pipeline *pl = w->pl;
	uint64_t seen = 0;

	pthread_mutex_lock(&pl->lock);
	for (;;) {
		while (!pl->stop && (!pl->job || pl->job_no == seen))
			pthread_cond_wait(&pl->work, &pl->lock);
		if (pl->stop)
			break;
		struct job *j = pl->job;
		seen = pl->job_no;
		pl->busy++;
		pthread_mutex_unlock(&pl->lock);
		for (;;) {
			size_t i = atomic_fetch_add(&j->next, 1);
			if (i >= j->plan->n_chunks || atomic_load(&j->err))
				break;
			int r = do_chunk(w, j, i);
			if (r < 0) {
				int zero = 0;
				atomic_compare_exchange_strong(&j->err, &zero, r);
			}
		}
		pthread_mutex_lock(&pl->lock);
		if (--pl->busy == 0)
			pthread_cond_broadcast(&pl->done);
	}
	pthread_mutex_unlock(&pl->lock);
	return NULL;
}

int pipeline_new(const struct pipeline_opts *opts, struct pipeline **ret)
{
	struct pipeline *pl = calloc(1, sizeof(*pl));
	unsigned n = opts && opts->workers ? opts->workers : (unsigned)get_nprocs();

	if (!pl)
		return -ENOMEM;
	pl->n = MIN(MAX(n, 1u), 8u);
	pl->chunk_bytes = opts && opts->chunk_bytes ? opts->chunk_bytes : (1 << 20);
	pl->chunk_bytes = MAX(pl->chunk_bytes & ~(PAGE_SIZE_4K - 1), PAGE_SIZE_4K);
	pthread_mutex_init(&pl->lock, NULL);
	pthread_mutex_init(&pl->run_lock, NULL);
	pthread_cond_init(&pl->work, NULL);
	pthread_cond_init(&pl->done, NULL);
	pl->w = calloc(pl->n, sizeof(*pl->w));
	if (!pl->w)
		goto fail;
	for (unsigned i = 0; i < pl->n; i++) {
		struct worker *w = &pl->w[i];

		w->pl = pl;
		w->codec = codec_new(opts ? opts->zstd_level : 1);
		w->buf = malloc(pl->chunk_bytes);
		w->addrs = malloc(pl->chunk_bytes / PAGE_SIZE_4K * sizeof(*w->addrs));
		if (!w->codec || !w->buf || !w->addrs ||
		    pthread_create(&w->thread, NULL, worker_main, w)) {
			codec_free(w->codec);
			free(w->buf);
			free(w->addrs);
			w->codec = NULL;
			pl->n = i;
			goto fail;
		}
	}
	*ret = pl;
	return 0;
fail:
	pipeline_free(pl);
	return -ENOMEM;
}

void pipeline_free(struct pipeline *pl)
{
	if (!pl)
		return;
	pthread_mutex_lock(&pl->lock);
	pl->stop = true;
	pthread_cond_broadcast(&pl->work);
	pthread_mutex_unlock(&pl->lock);
	for (unsigned i = 0; pl->w && i < pl->n; i++) {
		pthread_join(pl->w[i].thread, NULL);
		codec_free(pl->w[i].codec);
		enc_chunk_free(&pl->w[i].enc);
		free(pl->w[i].buf);
		free(pl->w[i].addrs);
	}
	free(pl->w);
	pthread_mutex_destroy(&pl->lock);
	pthread_mutex_destroy(&pl->run_lock);
	pthread_cond_destroy(&pl->work);
	pthread_cond_destroy(&pl->done);
	free(pl);
}

/* Hand j to the workers and wait, reporting progress every 100 ms. */
static int run_job(struct pipeline *pl, struct job *j, pipeline_progress_fn progress, void *ud,
		   struct pipeline_stats *st)
{
	uint64_t t0 = now_ns(), total = j->plan->bytes / PAGE_SIZE_4K;

	pthread_mutex_lock(&pl->run_lock);
	pthread_mutex_lock(&pl->lock);
	pl->job = j;
	pl->job_no++;
	pthread_cond_broadcast(&pl->work);
	/* Wait until every worker has taken and finished this job. */
	for (;;) {
		bool exhausted = atomic_load(&j->next) >= j->plan->n_chunks ||
				 atomic_load(&j->err);
		if (exhausted && pl->busy == 0)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&pl->done, &pl->lock, &ts);
		if (progress) {
			pthread_mutex_unlock(&pl->lock);
			progress(ud, atomic_load(&j->pages), total, atomic_load(&j->bytes_out));
			pthread_mutex_lock(&pl->lock);
		}
	}
	pl->job = NULL;
	pthread_mutex_unlock(&pl->lock);
	pthread_mutex_unlock(&pl->run_lock);
	if (st) {
		st->pages += atomic_load(&j->pages);
		st->zero_pages += atomic_load(&j->zero_pages);
		st->unreadable += atomic_load(&j->unreadable);
		st->bytes_out += atomic_load(&j->bytes_out);
		st->ns += now_ns() - t0;
	}
	return atomic_load(&j->err);
}

int pipeline_run(struct pipeline *pl, struct tracker *t, const struct pass *p, uint64_t seq,
		 struct sink *s, pipeline_progress_fn progress, void *ud,
		 struct pipeline_stats *st)
{
	struct read_plan plan;
	int r;

	if (p->zero.n && (r = s->ops->put_zero(s, seq, &p->zero)) < 0)
		return r;
	r = read_plan_build(p, pl->chunk_bytes, &plan);
	if (r < 0)
		return r;
	struct job j = { .kind = JOB_READ_ENCODE, .t = t, .p = p, .plan = &plan, .sink = s,
			 .seq = seq };
	r = run_job(pl, &j, progress, ud, st);
	read_plan_free(&plan);
	return r;
}

void capture_free(struct capture *c)
{
	if (!c)
		return;
	pass_free(&c->pass);
	read_plan_free(&c->plan);
	capture_arena_free(&c->own);
	free(c->offset);
	free(c);
}

int capture_arena_new(size_t len, struct capture_arena *a)
{
	*a = (struct capture_arena){ 0 };
	if (!len)
		return 0;
	len = (len + PAGE_SIZE_4K - 1) & ~(PAGE_SIZE_4K - 1);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	*a = (struct capture_arena){ p, len };
	return 0;
}

void capture_arena_free(struct capture_arena *a)
{
	if (a->buf)
		munmap(a->buf, a->len);
	*a = (struct capture_arena){ 0 };
}

int pipeline_capture(struct pipeline *pl, struct tracker *t, const struct pass *p,
		     const struct capture_arena *arena, struct capture **ret,
		     struct pipeline_stats *st)
{
	struct capture *c = calloc(1, sizeof(*c));
	int r;

	if (!c)
		return -ENOMEM;
	c->t = t;
	r = read_plan_build(p, pl->chunk_bytes, &c->plan);
	if (r < 0)
		goto fail;
	if (arena && arena->len >= c->plan.bytes) {
		c->buf = arena->buf;
	} else {
		r = capture_arena_new(c->plan.bytes, &c->own);
		if (r < 0)
			goto fail;
		c->buf = c->own.buf;
	}
	c->offset = calloc(c->plan.n_chunks ? c->plan.n_chunks : 1, sizeof(*c->offset));
	r = -ENOMEM;
	if (!c->offset)
		goto fail;
	r = 0;
	for (size_t i = 1; i < c->plan.n_chunks; i++)
		c->offset[i] = c->offset[i - 1] + c->plan.chunks[i - 1].bytes;
	/* On this thread, not the pool: a frozen target must never wait
	 * behind another session's job. */
	uint64_t t0 = now_ns(), unreadable = 0;
	for (size_t i = 0; r == 0 && i < c->plan.n_chunks; i++)
		r = read_chunk(t, p, &c->plan, &c->plan.chunks[i], c->buf + c->offset[i],
			       &unreadable);
	if (st) {
		st->pages += c->plan.bytes / PAGE_SIZE_4K;
		st->unreadable += unreadable;
		st->ns += now_ns() - t0;
	}
	if (r < 0)
		goto fail;
	/* Keep what the flush needs after the caller's pass is gone. */
	r = range_set_clip(&p->zero, 0, UINT64_MAX, &c->pass.zero);
	if (r < 0)
		goto fail;
	*ret = c;
	return 0;
fail:
	capture_free(c);
	return r;
}

int pipeline_flush(struct pipeline *pl, struct capture *c, uint64_t seq, struct sink *s,
		   pipeline_progress_fn progress, void *ud, struct pipeline_stats *st)
{
	int r = 0;

	if (c->pass.zero.n)
		r = s->ops->put_zero(s, seq, &c->pass.zero);
	if (r == 0) {
		struct job j = { .kind = JOB_ENCODE, .t = c->t, .plan = &c->plan, .sink = s,
				 .seq = seq, .capture = c->buf, .offset = c->offset };
		r = run_job(pl, &j, progress, ud, st);
	}
	capture_free(c);
	return r;
}
