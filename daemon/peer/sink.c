// SPDX-License-Identifier: GPL-2.0-only
#include "peer/sink.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"
#include "basic/sum.h"
#include "basic/util.h"
#include "peer/delta.h"
#include "peer/io.h"
#include "peer/regions.h"
#include "peer/wire.h"

/* A worker's buffers: taken for one chunk, then back to the list. */
struct pbuf {
	struct codec *codec; /* at the peer's level, not the pipeline's */
	struct enc_chunk enc; /* its payload points into the frame being built */
	struct delta_buf d;
	uint64_t *ext_skip;
	uint32_t *ext_pages, *ext_kind;
	size_t cap;
	struct pbuf *next;
};

struct psink {
	struct sink sink;
	struct peer_link *l;
	struct pcache *cache;
	int zstd_level;
	bool full;
	bool cache_pass1; /* a full generation's first pass may fill the cache */
	uint64_t generation, bytes0, t0_ns;
	pthread_mutex_t lock;
	struct pbuf *bufs;
	atomic_uint_least64_t chunks, zero_frames, data_pages, zero_pages, delta_pages;
	atomic_uint_least64_t section_frames;
	pthread_mutex_t section_lock; /* one section's pieces after another */
};

static void pbuf_free(struct pbuf *b)
{
	b->enc.payload = NULL; /* never ours: a frame's */
	enc_chunk_free(&b->enc);
	codec_free(b->codec);
	delta_buf_free(&b->d);
	free(b->ext_skip);
	free(b->ext_pages);
	free(b->ext_kind);
	free(b);
}

static struct pbuf *take_buf(struct psink *s)
{
	struct pbuf *b;

	pthread_mutex_lock(&s->lock);
	b = s->bufs;
	if (b)
		s->bufs = b->next;
	pthread_mutex_unlock(&s->lock);
	if (!b && (b = calloc(1, sizeof(*b))) && !(b->codec = codec_new(s->zstd_level))) {
		free(b);
		b = NULL;
	}
	return b;
}

static void put_buf(struct psink *s, struct pbuf *b)
{
	pthread_mutex_lock(&s->lock);
	b->next = s->bufs;
	s->bufs = b;
	pthread_mutex_unlock(&s->lock);
}

static int ext_arrays(struct pbuf *b, uint32_t n)
{
	if (n <= b->cap)
		return 0;
	free(b->ext_skip);
	free(b->ext_pages);
	free(b->ext_kind);
	b->ext_skip = malloc(n * sizeof(*b->ext_skip));
	b->ext_pages = malloc(n * sizeof(*b->ext_pages));
	b->ext_kind = malloc(n * sizeof(*b->ext_kind));
	b->cap = b->ext_skip && b->ext_pages && b->ext_kind ? n : 0;
	return b->cap ? 0 : -ENOMEM;
}

/* The chunk's message; arrays in b. */
static int chunk_msg(const struct enc_chunk *e, struct pbuf *b, const struct delta_stats *st,
		     Wpmig__Peer__Chunk *m)
{
	uint64_t end = 0;
	int r = ext_arrays(b, e->n_ext);

	if (r < 0)
		return r;
	for (uint32_t i = 0; i < e->n_ext; i++) {
		uint64_t page = e->ext[i].addr / PAGE_SIZE_4K;

		b->ext_skip[i] = page - end; /* extents are in increasing order */
		end = page + e->ext[i].pages;
		b->ext_pages[i] = e->ext[i].pages;
		b->ext_kind[i] = e->ext[i].kind;
	}
	m->seq = e->seq;
	m->n_ext_skip = m->n_ext_pages = m->n_ext_kind = e->n_ext;
	m->ext_skip = b->ext_skip;
	m->ext_pages = b->ext_pages;
	m->ext_kind = b->ext_kind;
	m->data_pages = e->n_data_pages;
	m->n_page_sum = e->n_data_pages;
	m->page_sum = e->page_sums;
	m->encoding = e->encoding;
	m->payload_len = e->payload_len;
	m->payload_sum = e->payload_sum;
	if (st->delta_pages) {
		m->n_base_slot = e->n_data_pages;
		m->base_slot = b->d.base;
	}
	if (st->stored_pages) {
		m->n_store_slot = e->n_data_pages;
		m->store_slot = b->d.store;
	}
	return 0;
}

/* An encoded chunk from elsewhere (put_chunk): its payload is copied. */
static int send_chunk(struct psink *s, const struct enc_chunk *e, struct pbuf *b,
		      const struct delta_stats *st)
{
	Wpmig__Peer__Chunk m = WPMIG__PEER__CHUNK__INIT;
	int r = chunk_msg(e, b, st, &m);

	return r < 0 ? r : peer_link_send(s->l, PEER_CHUNK, &m.base, e->payload, e->payload_len);
}

/* Compress straight into the frame: the payload is never copied. */
static int encode_send(struct psink *s, struct pbuf *b, uint64_t seq, const uint64_t *addrs,
		       size_t n, const uint8_t *buf, struct delta_stats *st)
{
	Wpmig__Peer__Chunk m = WPMIG__PEER__CHUNK__INIT;
	size_t room = codec_payload_bound((uint32_t)n);
	uint8_t *mem = peer_link_frame_mem(s->l, PEER_TAIL_OFF + room + FRAME_MAC_SIZE), *start;
	size_t len;
	int r;

	if (!mem)
		return -ENOMEM;
	b->enc.payload = mem + PEER_TAIL_OFF;
	b->enc.payload_cap = room; /* the codec never needs more: no realloc */
	/* An increment may replace older copies; a full generation only
	 * fills free slots (most of what it sends is never written again), and
	 * with its first pass only when the whole process fits (see
	 * peer_sink_begin). */
	struct pcache *cache = s->full && seq == 1 && !s->cache_pass1 ? NULL : s->cache;

	r = delta_encode(b->codec, cache, !s->full, seq, addrs, n, buf, &b->enc, &b->d, st);
	if (r == 0 && b->enc.payload != mem + PEER_TAIL_OFF)
		r = -EFAULT;
	b->enc.payload = NULL;
	b->enc.payload_cap = 0;
	if (r == 0)
		r = chunk_msg(&b->enc, b, st, &m);
	if (r == 0)
		r = peer_frame_around(PEER_CHUNK, &m.base, mem, b->enc.payload_len, true, &start, &len);
	if (r < 0) {
		peer_link_frame_mem_free(s->l, mem);
		return r;
	}
	return peer_link_send_frame(s->l, mem, start, len);
}

static int p_put_pages(struct sink *sk, struct codec *c, uint64_t seq, const uint64_t *addrs,
		       size_t n, const uint8_t *buf, struct enc_chunk *out)
{
	struct psink *s = (struct psink *)sk;
	struct pbuf *b = take_buf(s);
	struct delta_stats st;
	int r;

	if (!b)
		return -ENOMEM;
	r = encode_send(s, b, seq, addrs, n, buf, &st);
	/* What the pipeline counts (it does not look at the rest). */
	out->n_data_pages = b->enc.n_data_pages;
	out->payload_len = b->enc.payload_len;
	put_buf(s, b);
	if (r < 0)
		return r;
	atomic_fetch_add(&s->chunks, 1);
	atomic_fetch_add(&s->data_pages, out->n_data_pages);
	atomic_fetch_add(&s->zero_pages, n - out->n_data_pages);
	atomic_fetch_add(&s->delta_pages, st.delta_pages);
	return 0;
}

static int p_put_chunk(struct sink *sk, const struct enc_chunk *e)
{
	struct psink *s = (struct psink *)sk;
	struct pbuf *b = take_buf(s);
	struct delta_stats st = { 0 };
	int r;

	if (!b)
		return -ENOMEM;
	r = send_chunk(s, e, b, &st);
	put_buf(s, b);
	if (r == 0) {
		atomic_fetch_add(&s->chunks, 1);
		atomic_fetch_add(&s->data_pages, e->n_data_pages);
	}
	return r;
}

static int p_put_zero(struct sink *sk, uint64_t seq, const struct range_set *zero)
{
	struct psink *s = (struct psink *)sk;
	int r = 0;

	for (size_t i = 0; r == 0 && i < zero->n; i += PEER_MAX_ZERO_RANGES) {
		Wpmig__Peer__Zero m = WPMIG__PEER__ZERO__INIT;
		size_t k = MIN(zero->n - i, (size_t)PEER_MAX_ZERO_RANGES);
		_cleanup_free_ uint64_t *st = malloc(k * sizeof(*st)), *en = malloc(k * sizeof(*en));

		if (!st || !en)
			return -ENOMEM;
		for (size_t j = 0; j < k; j++) {
			st[j] = zero->r[i + j].start;
			en[j] = zero->r[i + j].end;
			atomic_fetch_add(&s->zero_pages, (en[j] - st[j]) / PAGE_SIZE_4K);
		}
		m.seq = seq;
		m.n_start = m.n_end = k;
		m.start = st;
		m.end = en;
		r = peer_link_send(s->l, PEER_ZERO, &m.base, NULL, 0);
		if (r == 0)
			atomic_fetch_add(&s->zero_frames, 1);
	}
	return r;
}

/* A section in pieces of at most PEER_MAX_SECTION_PIECE; the receiver
 * checks the whole against sum. */
static int p_put_section(struct sink *sk, const char *name, uint32_t type, const void *data,
			 size_t len)
{
	struct psink *s = (struct psink *)sk;
	Wpmig__Peer__Section m = WPMIG__PEER__SECTION__INIT;
	size_t off = 0;
	int r = 0;

	if (!section_name_valid(name) || !type || (len && !data))
		return -EINVAL;
	if (len > SECTION_MAX_BYTES)
		return -E2BIG;
	m.name = (char *)name;
	m.type = type;
	m.length = len;
	m.sum = XXH3_64bits(data, len);
	pthread_mutex_lock(&s->section_lock);
	do {
		uint32_t piece = (uint32_t)MIN(len - off, (size_t)PEER_MAX_SECTION_PIECE);

		m.offset = off;
		r = peer_link_send(s->l, PEER_SECTION, &m.base, (const uint8_t *)data + off, piece);
		if (r == 0)
			atomic_fetch_add(&s->section_frames, 1);
		off += piece;
	} while (r == 0 && off < len);
	pthread_mutex_unlock(&s->section_lock);
	return r;
}

static int send_regions(struct psink *s, const struct pass_region *regions, size_t n)
{
	struct peer_committed *pc = peer_link_committed(s->l);
	Wpmig__Peer__RegionChanges m;
	int r = regions_diff(s->full ? NULL : pc->regions, s->full ? 0 : pc->n_regions, regions,
			     n, &m);

	if (r == 0)
		r = peer_link_send(s->l, PEER_REGIONS, &m.base, NULL, 0);
	regions_changes_free(&m);
	return r;
}

/* The receiver committed: remember what it holds, for the next increment. */
static int remember(struct psink *s, const Wpmig__Peer__CommitResult *res,
		    const struct pass_region *regions, size_t n)
{
	struct peer_committed *pc = peer_link_committed(s->l);
	struct pass_region *copy;
	int r = regions_copy(regions, n, &copy);

	regions_free(pc->regions, pc->n_regions);
	*pc = (struct peer_committed){ 0 };
	if (r < 0)
		return r; /* the next generation will be full */
	*pc = (struct peer_committed){ .generation = res->generation,
				       .created_ns = res->created_ns, .regions = copy,
				       .n_regions = n };
	return 0;
}

static int p_commit(struct sink *sk, const struct pass_region *regions, size_t n,
		    struct gen_summary *out)
{
	struct psink *s = (struct psink *)sk;
	Wpmig__Peer__Commit m = WPMIG__PEER__COMMIT__INIT;
	Wpmig__Peer__CommitResult *res = NULL;
	uint64_t t1 = now_ns();
	int r = send_regions(s, regions, n);

	m.chunks = atomic_load(&s->chunks);
	m.zero_frames = atomic_load(&s->zero_frames);
	m.section_frames = atomic_load(&s->section_frames);
	if (r == 0)
		r = peer_link_call(s->l, PEER_COMMIT, &m.base, PEER_COMMIT_RESULT,
				   (ProtobufCMessage **)&res);
	if (r == 0 && res->error < 0) {
		r = res->error;
		peer_link_note(s->l, "%s refused the generation: %s", peer_link_addr(s->l),
			       res->message);
	}
	if (r == 0) {
		if (s->cache)
			pcache_commit(s->cache);
		remember(s, res, regions, n);
		*out = (struct gen_summary){
			.generation = res->generation, .parent = res->parent,
			.data_pages = atomic_load(&s->data_pages),
			.zero_pages = atomic_load(&s->zero_pages),
			.held_data_pages = res->held_data_pages,
			.held_zero_pages = res->held_zero_pages,
			.bytes_stored = peer_link_bytes_sent(s->l) - s->bytes0,
			.raw_bytes = atomic_load(&s->data_pages) * PAGE_SIZE_4K,
		};
		peer_link_account(s->l, out->raw_bytes, out->bytes_stored, now_ns() - s->t0_ns);
		log_info("peer %s: generation %llu committed, %llu of %llu data pages as deltas; "
			 "sent in %.0f ms, commit took %.0f ms", peer_link_addr(s->l),
			 (unsigned long long)res->generation,
			 (unsigned long long)atomic_load(&s->delta_pages),
			 (unsigned long long)out->data_pages, ns_to_ms(t1 - s->t0_ns),
			 ns_to_ms(now_ns() - t1));
	}
	peer_msg_free(res ? &res->base : NULL);
	return r;
}

static void psink_free(struct psink *s)
{
	struct pbuf *b, *next;

	for (b = s->bufs; b; b = next) {
		next = b->next;
		pbuf_free(b);
	}
	/* the generation's frames are written: idle, the link holds no memory */
	if (s->l)
		peer_link_frames_idle(s->l);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->section_lock);
	free(s);
}

static void p_abort(struct sink *sk)
{
	struct psink *s = (struct psink *)sk;
	Wpmig__Peer__Abort m = WPMIG__PEER__ABORT__INIT;

	/* Best effort: a receiver that is gone has dropped it already. */
	m.reason = (char *)"the source dropped the generation";
	if (peer_link_send(s->l, PEER_ABORT, &m.base, NULL, 0) < 0)
		peer_link_reset(s->l);
	if (s->cache)
		pcache_abort(s->cache);
	psink_free(s);
}

static void p_close(struct sink *sk)
{
	psink_free((struct psink *)sk);
}

static const struct sink_ops psink_ops = {
	.put_chunk = p_put_chunk,
	.put_pages = p_put_pages,
	.put_zero = p_put_zero,
	.put_section = p_put_section,
	.commit = p_commit,
	.abort = p_abort,
	.close = p_close,
};

static int open_generation(struct peer_link *l, const char *set, pid_t pid, bool full,
			   const Wpmig__Peer__MigrateTarget *mig, Wpmig__Peer__OpenResult **res)
{
	const struct peer_committed *pc = peer_link_committed(l);
	Wpmig__Peer__Open m = WPMIG__PEER__OPEN__INIT;

	m.set = (char *)set;
	m.pid = pid;
	m.full = full;
	if (!full) {
		m.parent = pc->generation;
		m.parent_created_ns = pc->created_ns;
		m.parent_regions = (uint32_t)pc->n_regions;
		m.parent_table_sum = regions_table_sum(pc->regions, pc->n_regions);
	}
	m.proposed = pc->generation + 1;
	m.session = peer_link_session(l);
	m.migrate = (Wpmig__Peer__MigrateTarget *)mig;
	return peer_link_call(l, PEER_OPEN, &m.base, PEER_OPEN_RESULT, (ProtobufCMessage **)res);
}

/*
 * May the first pass of a full generation fill the delta cache?  When the
 * whole process fits the room the cache has (the slots it holds and what
 * the daemon's budget for all links has left), yes: the next increment
 * finds every page it changed.
 * When it does not, which pages the first pass would keep is an accident
 * of their addresses, and filling costs both ends a decode and a copy of
 * each (the receiver decodes every chunk holding one): later passes of the
 * generation (pages written while it was sent) and the increments fill it
 * with pages that are being written instead.
 */
static bool fits_cache(pid_t pid, const struct pcache *cache)
{
	unsigned long long size, resident;
	_cleanup_free_ char *text = NULL;
	char path[64];

	if (!cache)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	return read_full_file(path, &text, NULL) == 0 &&
	       sscanf(text, "%llu %llu", &size, &resident) == 2 &&
	       resident <= pcache_room(cache);
}

static int begin(struct peer_link *l, const char *set, pid_t pid, bool full, int zstd_level,
		 const Wpmig__Peer__MigrateTarget *mig, struct sink **ret, uint64_t *generation,
		 char *why, size_t why_len)
{
	Wpmig__Peer__OpenResult *res = NULL;
	uint64_t bytes0 = peer_link_bytes_sent(l);
	struct psink *s;
	int r;

	if (!full && !peer_link_committed(l)->generation)
		return -ESTALE;
	r = peer_link_up(l, why, why_len);
	if (r < 0)
		return r;
	r = open_generation(l, set, pid, full, mig, &res);
	if (r < 0) {
		peer_link_why(l, why, why_len);
		return r;
	}
	r = res->error;
	if (r == -ESTALE)
		log_notice("peer %s: its newest generation of %s is %llu, not %llu: sending a "
			   "full generation", peer_link_addr(l), set,
			   (unsigned long long)res->newest,
			   (unsigned long long)peer_link_committed(l)->generation);
	else if (r < 0)
		snprintf(why, why_len, "%s: %s", peer_link_addr(l), res->message);
	*generation = res->generation;
	peer_msg_free(&res->base);
	if (r < 0)
		return r;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	*s = (struct psink){ .sink.ops = &psink_ops, .l = l, .cache = peer_link_cache(l),
			     .full = full, .generation = *generation, .bytes0 = bytes0,
			     .cache_pass1 = full && fits_cache(pid, peer_link_cache(l)),
			     .zstd_level = zstd_level,
			     .t0_ns = now_ns() };
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->section_lock, NULL);
	*ret = &s->sink;
	return 0;
}

int peer_sink_begin(struct peer_link *l, const char *set, pid_t pid, bool full, int zstd_level,
		    struct sink **ret, uint64_t *generation, char *why, size_t why_len)
{
	return begin(l, set, pid, full, zstd_level, NULL, ret, generation, why, why_len);
}

int peer_sink_begin_migrate(struct peer_link *l, const char *set, pid_t pid, bool full,
			    int zstd_level, const Wpmig__Peer__MigrateTarget *mig,
			    struct sink **ret, uint64_t *generation, char *why, size_t why_len)
{
	return begin(l, set, pid, full, zstd_level, mig, ret, generation, why, why_len);
}

int peer_migrate_finish(struct peer_link *l, const char *set,
			const Wpmig__Peer__MigrateTarget *mig, int64_t *resumed_us,
			int64_t *incoming_us, char *why, size_t why_len)
{
	Wpmig__Peer__MigrateTarget fin = *mig;
	Wpmig__Peer__OpenResult *res = NULL;
	int r;

	fin.finish = true;
	r = open_generation(l, set, 0, true, &fin, &res);
	if (r < 0) {
		peer_link_why(l, why, why_len);
		return r;
	}
	r = res->error;
	if (r < 0)
		snprintf(why, why_len, "%s", res->message);
	*resumed_us = res->resumed_us;
	*incoming_us = res->incoming_us;
	peer_msg_free(&res->base);
	return r;
}
