// SPDX-License-Identifier: GPL-2.0-only
/*
 * The receiver's generations.  Frames of a generation become tasks run by
 * worker threads (the loop never decodes, verifies or writes): Open begins
 * a generation in the local store, chunks are checked (payload sum, or
 * every page decoded: see check_chunk) before the store gets them, Commit
 * rebuilds the region table and
 * commits.  Open, Commit and Abort are barriers: they run alone, after
 * everything before them.  Work queued or running is bounded by the
 * window: past it the connection is not read.
 */
#include "server-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "basic/log.h"
#include "basic/sum.h"
#include "basic/util.h"
#include "peer/delta.h"
#include "peer/regions.h"

/* What a worker decodes with: made on first use, freed when idle. */
struct recv_ctx {
	int zstd_level;
	struct codec *codec;
	uint8_t *pages;      /* a chunk's data pages, decoded */
	struct enc_chunk re; /* a delta chunk re-encoded for the store */
};

void *recv_ctx_new(void *arg)
{
	struct peer_server *s = arg;
	struct recv_ctx *c = calloc(1, sizeof(*c));

	if (c)
		c->zstd_level = s->o.zstd_level;
	return c;
}

#define CTX_PAGES_BYTES ((size_t)PEER_MAX_CHUNK_PAGES * PAGE_SIZE_4K)

static int recv_ctx_ready(struct recv_ctx *c)
{
	if (!c->codec)
		c->codec = codec_new(c->zstd_level);
	if (!c->pages) { /* mapped: a thread's malloc arena keeps its top resident */
		c->pages = mmap(NULL, CTX_PAGES_BYTES, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (c->pages == MAP_FAILED)
			c->pages = NULL;
	}
	return c->codec && c->pages ? 0 : -ENOMEM;
}

void recv_ctx_trim(void *ctx)
{
	struct recv_ctx *c = ctx;

	codec_free(c->codec);
	if (c->pages)
		munmap(c->pages, CTX_PAGES_BYTES);
	free(c->re.payload);
	*c = (struct recv_ctx){ .zstd_level = c->zstd_level };
}

void recv_ctx_free(void *ctx)
{
	if (!ctx)
		return;
	recv_ctx_trim(ctx);
	free(ctx);
}

void recv_task_free(struct rtask *t)
{
	free(t->section.buf);
	peer_chunk_view_free(&t->view);
	peer_frame_clear(&t->f);
	regions_free(t->parent_regions, t->n_parent_regions);
	free(t);
}

void recv_drop_generation(struct rconn *rc)
{
	if (rc->sink) {
		log_info("peer conn %llu (%s): generation %llu of %s dropped",
			 (unsigned long long)rc->id, rc->name, (unsigned long long)rc->generation,
			 rc->set);
		rc->sink->ops->abort(rc->sink);
		rc->sink = NULL;
	}
	regions_free(rc->parent_regions, rc->n_parent_regions);
	rc->parent_regions = NULL;
	rc->n_parent_regions = 0;
	peer_msg_free(rc->changes);
	rc->changes = NULL;
	free(rc->section.buf);
	rc->section = (struct rsection){ 0 };
	free(rc->section_names);
	rc->section_names = NULL;
	rc->n_sections = 0;
}

/* ---- worker side ---- */

/* Address of data page idx of a chunk, for messages. */
static uint64_t data_page_addr(const struct enc_chunk *c, int64_t idx)
{
	for (uint32_t i = 0; i < c->n_ext; i++) {
		if (c->ext[i].kind != EXT_DATA)
			continue;
		if (idx < c->ext[i].pages)
			return c->ext[i].addr + (uint64_t)idx * PAGE_SIZE_4K;
		idx -= c->ext[i].pages;
	}
	return 0;
}

/* A chunk not decoded here is stored as it came, once its payload has the
 * sum it was sent with (the frame's MAC proved the rest); its page sums are
 * checked whenever its pages are next decoded (verify, export, restore). */
static int check_chunk(struct rtask *t, struct recv_ctx *ctx, int64_t *bad)
{
	const Wpmig__Peer__Chunk *m = (const Wpmig__Peer__Chunk *)t->f.m;

	*bad = -1;
	if (!t->decode)
		return codec_payload_intact(&t->view) ? 0 : -EBADMSG;
	if (recv_ctx_ready(ctx) < 0)
		return -ENOMEM;
	return delta_decode(ctx->codec, t->rc->cache, &t->view, m->n_base_slot ? m->base_slot : NULL,
			    m->n_store_slot ? m->store_slot : NULL, ctx->pages, bad);
}

static void run_chunk(struct rtask *t, struct recv_ctx *ctx)
{
	const Wpmig__Peer__Chunk *m = (const Wpmig__Peer__Chunk *)t->f.m;
	struct sink *sink = t->rc->sink;
	int64_t bad;

	if (sink->ops->put_decoded)
		t->decode = true; /* it takes pages, not chunks */
	t->r = check_chunk(t, ctx, &bad);
	if (t->r < 0) {
		if (t->r == -ENOMEM)
			snprintf(t->why, sizeof(t->why), "out of memory for decoding");
		else if (bad >= 0)
			snprintf(t->why, sizeof(t->why), "page %#llx (pass %llu) failed its checksum: "
				 "corrupted in transit", (unsigned long long)data_page_addr(&t->view, bad),
				 (unsigned long long)m->seq);
		else
			snprintf(t->why, sizeof(t->why), "a chunk of pass %llu failed its payload "
				 "checksum: corrupted in transit", (unsigned long long)m->seq);
		return;
	}
	t->raw_bytes = (uint64_t)m->data_pages * PAGE_SIZE_4K;
	if (sink->ops->put_decoded) {
		t->r = sink->ops->put_decoded(sink, &t->view, ctx->pages);
	} else if (!m->n_base_slot) {
		t->r = sink->ops->put_chunk(sink, &t->view); /* stored as it came */
	} else {
		/* The store keeps pages, not deltas: compress them again. */
		struct enc_chunk *re = &ctx->re;

		re->seq = t->view.seq;
		re->ext = t->view.ext;
		re->n_ext = t->view.n_ext;
		re->n_data_pages = t->view.n_data_pages;
		re->page_sums = t->view.page_sums;
		t->r = codec_pack(ctx->codec, ctx->pages, re);
		if (t->r == 0)
			t->r = sink->ops->put_chunk(sink, re);
		re->ext = NULL;
		re->page_sums = NULL;
	}
	if (t->r < 0)
		snprintf(t->why, sizeof(t->why), "cannot store a chunk: %s", strerror(-t->r));
}

static void run_zero(struct rtask *t)
{
	const Wpmig__Peer__Zero *m = (const Wpmig__Peer__Zero *)t->f.m;
	struct range_set set = { 0 };

	for (size_t i = 0; t->r == 0 && i < m->n_start; i++)
		t->r = range_set_add(&set, m->start[i], m->end[i]);
	if (t->r == 0)
		t->r = t->rc->sink->ops->put_zero(t->rc->sink, m->seq, &set);
	if (t->r < 0)
		snprintf(t->why, sizeof(t->why), "cannot store zero ranges: %s", strerror(-t->r));
	range_set_free(&set);
}

/* A whole section: its bytes must have the sum the source sent. */
static void run_section(struct rtask *t)
{
	const struct rsection *sec = &t->section;

	if (XXH3_64bits(sec->buf, sec->length) != sec->sum) {
		t->r = -EBADMSG;
		snprintf(t->why, sizeof(t->why), "section %s failed its checksum: corrupted in "
			 "transit", sec->name);
		return;
	}
	t->r = t->rc->sink->ops->put_section(t->rc->sink, sec->name, sec->type, sec->buf,
					     sec->length);
	if (t->r < 0)
		snprintf(t->why, sizeof(t->why), "cannot store section %s: %s", sec->name,
			 strerror(-t->r));
}

/* Under the store lock: may this increment follow what the set holds? */
static int check_parent(struct rtask *t, struct store *st, const Wpmig__Peer__Open *m)
{
	struct store_gen_info *g = NULL;
	struct store_image *img = NULL;
	size_t n = 0, nr = 0;
	int r = store_list_generations(st, m->set, &g, &n);

	if (r == 0 && n) {
		t->newest = g[n - 1].generation;
		t->newest_created_ns = g[n - 1].created_ns;
	}
	free(g);
	if (r < 0 && r != -ENOENT)
		return r;
	if (m->full)
		return 0;
	if (!t->newest || t->newest != m->parent || t->newest_created_ns != m->parent_created_ns)
		return -ESTALE;
	r = store_image_open(st, m->set, m->parent, &img);
	if (r < 0)
		return -ESTALE;
	const struct pass_region *reg = store_image_regions(img, &nr);
	r = regions_copy(reg, nr, &t->parent_regions);
	store_image_close(img);
	if (r < 0)
		return r;
	t->n_parent_regions = nr;
	if (nr != m->parent_regions || regions_table_sum(t->parent_regions, nr) != m->parent_table_sum)
		return -ESTALE;
	return 0;
}

/* A migration's Open: its pages go to a QEMU, not the store. */
static void run_open_target(struct rtask *t, const Wpmig__Peer__Open *m)
{
	const struct peer_server_opts *o = &t->rc->srv->o;
	struct peer_target_open out = { 0 };

	if (!o->targets) {
		t->r = -EOPNOTSUPP;
		snprintf(t->why, sizeof(t->why), "this daemon takes no migrations");
		return;
	}
	t->r = o->targets->open(o->targets_ud, m->session, m, &out, t->why, sizeof(t->why));
	if (t->r < 0)
		return;
	t->sink = out.sink;
	t->generation = out.generation;
	t->newest = out.newest;
	t->newest_created_ns = out.newest_created_ns;
	t->parent_regions = out.parent_regions;
	t->n_parent_regions = out.n_parent_regions;
	t->resumed_us = out.resumed_us;
	t->incoming_us = out.incoming_us;
}

static void run_open(struct rtask *t)
{
	const Wpmig__Peer__Open *m = (const Wpmig__Peer__Open *)t->f.m;
	struct peer_server *s = t->rc->srv;

	/* A migration's set names no directory, but goes into logs and
	 * status all the same: one rule for every set name. */
	if (!store_set_name_valid(m->set)) {
		t->r = -EINVAL;
		snprintf(t->why, sizeof(t->why), "invalid set name");
		return;
	}
	if (m->migrate) {
		run_open_target(t, m);
		return;
	}
	pthread_mutex_lock(s->o.store_lock);
	t->r = check_parent(t, s->o.store, m);
	if (t->r == 0)
		t->r = store_begin(s->o.store, m->set, m->pid, m->full, m->parent, &t->sink,
				   &t->generation);
	pthread_mutex_unlock(s->o.store_lock);
	if (t->r == -ESTALE)
		snprintf(t->why, sizeof(t->why), "generation %llu is not the newest of %s here "
			 "(newest: %llu)", (unsigned long long)m->parent, m->set,
			 (unsigned long long)t->newest);
	else if (t->r < 0)
		snprintf(t->why, sizeof(t->why), "cannot begin a generation of %s: %s", m->set,
			 t->r == -EBUSY ? "another writer holds the set" : strerror(-t->r));
}

static int64_t created_of(struct peer_server *s, const char *set, uint64_t generation)
{
	struct store_gen_info *g = NULL;
	size_t n = 0;
	int64_t created = 0;

	pthread_mutex_lock(s->o.store_lock);
	if (store_list_generations(s->o.store, set, &g, &n) == 0)
		for (size_t i = 0; i < n; i++)
			if (g[i].generation == generation)
				created = g[i].created_ns;
	pthread_mutex_unlock(s->o.store_lock);
	free(g);
	return created;
}

static void run_commit(struct rtask *t)
{
	struct rconn *rc = t->rc;
	struct pass_region *table = NULL;
	size_t n = 0;
	const char *why = NULL;

	t->r = regions_apply(rc->parent_regions, rc->n_parent_regions,
			     (const Wpmig__Peer__RegionChanges *)rc->changes, &table, &n, &why);
	if (t->r < 0)
		snprintf(t->why, sizeof(t->why), "%s", why);
	if (t->r == 0) {
		uint64_t t0 = now_ns();
		t->r = rc->sink->ops->commit(rc->sink, table, n, &t->sum);
		log_debug("peer conn %llu: store commit took %.0f ms", (unsigned long long)rc->id,
			  ns_to_ms(now_ns() - t0));
		if (t->r < 0)
			snprintf(t->why, sizeof(t->why), "commit failed: %s", strerror(-t->r));
	}
	regions_free(table, n);
	if (t->r < 0) {
		rc->sink->ops->abort(rc->sink);
	} else {
		rc->sink->ops->close(rc->sink);
		/* A migration target names its generations by their number. */
		t->newest_created_ns = rc->target ? (int64_t)t->sum.generation
						  : created_of(rc->srv, rc->set, t->sum.generation);
	}
	rc->sink = NULL;
}

void recv_task_run(struct wtask *w, void *ctx)
{
	struct rtask *t = (struct rtask *)w;

	switch (t->kind) {
	case RT_OPEN:
		run_open(t);
		break;
	case RT_CHUNK:
		run_chunk(t, ctx);
		break;
	case RT_ZERO:
		run_zero(t);
		break;
	case RT_SECTION:
		run_section(t);
		break;
	case RT_COMMIT:
		run_commit(t);
		break;
	case RT_ABORT:
		t->rc->sink->ops->abort(t->rc->sink);
		t->rc->sink = NULL;
		break;
	}
}
