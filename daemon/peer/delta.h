/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Chunks of the peer protocol: zero pages as extents, data pages XOR'ed
 * with the copy sent last time when the delta cache holds one, then one
 * zstd frame (codec_pack).  Page sums are always those of the pages as
 * they are in memory, so the receiver checks the result, not the delta.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "peer/cache.h"
#include "pipeline/codec.h"

/* Per-thread buffers, reused between chunks. */
struct delta_buf {
	uint8_t *pages;   /* gathered / XOR'ed data pages */
	size_t pages_cap;
	uint64_t *daddr;  /* addresses of the data pages */
	uint32_t *base, *store;
	size_t daddr_cap;
	uint32_t *data_idx; /* buffer index of each data page */
};

void delta_buf_free(struct delta_buf *b);

struct delta_stats {
	uint32_t data_pages, delta_pages, stored_pages;
};

/*
 * Encode n pages (addrs increasing, page i at buf + i * 4096) of pass seq
 * into out; with cache (may be NULL) data pages are planned against it
 * (evict: an incremental generation may replace older copies) and
 * b->base / b->store hold the slots of each data page, or are unused when
 * *st says no page has one.
 */
int delta_encode(struct codec *c, struct pcache *cache, bool evict, uint64_t seq,
		 const uint64_t *addrs, size_t n, const uint8_t *buf, struct enc_chunk *out,
		 struct delta_buf *b, struct delta_stats *st);

/*
 * Decode a checked chunk into dst (n_data_pages pages): payload sum,
 * zstd, XOR with the bases (base may be NULL), every page sum; then keep
 * the pages in their store slots (store may be NULL).  -EBADMSG with the
 * index of the first bad data page in *bad_page (-1: the payload).
 */
int delta_decode(struct codec *c, struct rcache *cache, const struct enc_chunk *in,
		 const uint32_t *base, const uint32_t *store, uint8_t *dst, int64_t *bad_page);

/* dst ^= src, one page. */
void page_xor(uint8_t *dst, const uint8_t *src);
