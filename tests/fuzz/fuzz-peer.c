// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target: the peer protocol's decoder, as a receiver meets it.
 * The input is a byte stream of frames; it is walked twice, as before and
 * as after the handshake (MAC flag expected; the tag itself is what the
 * daemon checks first and is skipped here, so the fuzzer reaches the
 * message decoder).  Frames that decode go on as the receiver takes them:
 * chunks are checked, their cache slots claimed and their pages decoded
 * and verified (zstd on hostile payloads), region tables applied to a
 * parent table.  Build and run: tests/fuzz/build-and-run.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "peer/cache.h"
#include "peer/delta.h"
#include "peer/regions.h"
#include "peer/wire.h"

#define SLOTS 8

struct state {
	struct codec *codec;
	struct rcache *cache;
	uint8_t *pages;
	struct enc_chunk view;
};

static void chunk(struct state *s, const Wpmig__Peer__Chunk *m, const uint8_t *tail,
		  uint32_t tail_len)
{
	const uint32_t *base, *store;
	const char *why;
	int64_t bad;

	if (peer_chunk_view(m, tail, tail_len, SLOTS, &s->view, &why) < 0)
		return;
	base = m->n_base_slot ? m->base_slot : NULL;
	store = m->n_store_slot ? m->store_slot : NULL;
	if ((base || store) && rcache_claim(s->cache, base, store, m->data_pages, &why) < 0) {
		rcache_abort(s->cache);
		return;
	}
	delta_decode(s->codec, s->cache, &s->view, base, store, s->pages, &bad);
	rcache_commit(s->cache);
}

static void regions(const Wpmig__Peer__RegionChanges *m)
{
	static const struct pass_region parent[] = {
		{ .start = 0x10000, .end = 0x20000, .backing = -1, .path = (char *)"" },
		{ .start = 0x40000, .end = 0x48000, .backing = -1, .path = (char *)"/x", .prot = 3 },
	};
	struct pass_region *out = NULL;
	size_t n = 0;
	const char *why;

	if (regions_apply(parent, 2, m, &out, &n, &why) == 0)
		regions_free(out, n);
}

static void walk(struct state *s, const uint8_t *data, size_t size, bool authed)
{
	while (size >= FRAME_HEADER_SIZE) {
		struct frame_header h;
		ProtobufCMessage *m = NULL;
		const char *why;
		size_t total;

		if (frame_header_decode(data, &peer_frame_limits, &h, &why) < 0 ||
		    peer_frame_check(&h, authed, &why) < 0)
			return;
		total = peer_frame_size(&h);
		if (total > size)
			return;
		const uint8_t *msg = data + FRAME_HEADER_SIZE, *tail = msg + h.length;
		if (peer_msg_unpack(h.type, msg, h.length, &m, &why) == 0) {
			if (h.type == PEER_CHUNK)
				chunk(s, (const Wpmig__Peer__Chunk *)m, tail, h.tail_length);
			else if (h.type == PEER_REGIONS)
				regions((const Wpmig__Peer__RegionChanges *)m);
			peer_msg_free(m);
		}
		data += total;
		size -= total;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The codec and the page buffer outlive inputs (they hold no state an
	 * input could leave behind); the cache is made afresh for each. */
	static struct state s;
	static const uint32_t fill[SLOTS] = { 1, 2, 3, 4, 5, 6, 7, 8 };

	if (!s.codec && !(s.codec = codec_new(1)))
		abort();
	if (!s.pages && !(s.pages = malloc((size_t)PEER_MAX_CHUNK_PAGES * 4096)))
		abort();
	s.cache = rcache_new(SLOTS);
	if (!s.cache)
		abort();
	/* committed slots, so deltas against them reach the decoder */
	for (int i = 0; i < SLOTS; i++)
		memset(rcache_page(s.cache, (uint32_t)i), 0x11 * i, 4096);
	rcache_claim(s.cache, NULL, fill, SLOTS, &(const char *){ NULL });
	rcache_commit(s.cache);
	walk(&s, data, size, false);
	walk(&s, data, size, true);
	rcache_free(s.cache);
	s.cache = NULL;
	return 0;
}
