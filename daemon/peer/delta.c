// SPDX-License-Identifier: GPL-2.0-only
#include "peer/delta.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "basic/sum.h"
#include "basic/util.h"
#include "peer/wire.h"

void delta_buf_free(struct delta_buf *b)
{
	free(b->pages);
	free(b->daddr);
	free(b->base);
	free(b->store);
	free(b->data_idx);
	*b = (struct delta_buf){ 0 };
}

void page_xor(uint8_t *dst, const uint8_t *src)
{
	uint64_t *d = (uint64_t *)(void *)dst;
	const uint64_t *s = (const uint64_t *)(const void *)src;

	for (size_t i = 0; i < PAGE_SIZE_4K / 8; i++)
		d[i] ^= s[i];
}

static int grow(void **p, size_t *cap, size_t want)
{
	void *n;

	if (want <= *cap)
		return 0;
	n = realloc(*p, want);
	if (!n)
		return -ENOMEM;
	*p = n;
	*cap = want;
	return 0;
}

/* Room for n pages in every per-page array. */
static int reserve(struct enc_chunk *out, struct delta_buf *b, size_t n)
{
	size_t cap = b->daddr_cap;

	if (n > cap) {
		uint64_t *a = realloc(b->daddr, n * sizeof(*a));
		uint32_t *x = realloc(b->base, n * sizeof(*x)), *y = realloc(b->store, n * sizeof(*y));
		uint32_t *z = realloc(b->data_idx, n * sizeof(*z));

		b->daddr = a ? a : b->daddr;
		b->base = x ? x : b->base;
		b->store = y ? y : b->store;
		b->data_idx = z ? z : b->data_idx;
		if (!a || !x || !y || !z)
			return -ENOMEM;
		b->daddr_cap = n;
	}
	if (grow((void **)&out->ext, &out->ext_cap, n * sizeof(struct ext)) < 0 ||
	    grow((void **)&out->page_sums, &out->sums_cap, n * sizeof(uint64_t)) < 0)
		return -ENOMEM;
	return 0;
}

static void push_ext(struct enc_chunk *out, uint64_t addr, uint32_t kind)
{
	struct ext *last = out->n_ext ? &out->ext[out->n_ext - 1] : NULL;

	if (last && last->kind == kind && last->addr + (uint64_t)last->pages * PAGE_SIZE_4K == addr)
		last->pages++;
	else
		out->ext[out->n_ext++] = (struct ext){ .addr = addr, .pages = 1, .kind = kind };
}

/* Extents, the data pages' addresses, buffer indices and sums. */
static int classify(const uint64_t *addrs, size_t n, const uint8_t *buf, struct enc_chunk *out,
		    struct delta_buf *b)
{
	uint32_t d = 0;

	out->n_ext = 0;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *pg = buf + i * PAGE_SIZE_4K;
		bool zero = page_is_zero(pg);

		if ((addrs[i] & (PAGE_SIZE_4K - 1)) || (i && addrs[i] <= addrs[i - 1]))
			return -EINVAL;
		push_ext(out, addrs[i], zero ? EXT_ZERO : EXT_DATA);
		if (zero)
			continue;
		b->daddr[d] = addrs[i];
		b->data_idx[d] = (uint32_t)i;
		out->page_sums[d++] = XXH3_64bits(pg, PAGE_SIZE_4K);
	}
	out->n_data_pages = d;
	return 0;
}

/* The data pages as the payload will hold them: in place when nothing
 * needs changing, else gathered with the bases XOR'ed in. */
static const uint8_t *payload_pages(struct pcache *cache, const uint8_t *buf,
				    struct delta_buf *b, uint32_t d, bool delta)
{
	uint8_t *dst;

	if (!delta && b->data_idx[d - 1] - b->data_idx[0] + 1 == d)
		return buf + (size_t)b->data_idx[0] * PAGE_SIZE_4K;
	if (grow((void **)&b->pages, &b->pages_cap, (size_t)d * PAGE_SIZE_4K) < 0)
		return NULL;
	dst = b->pages;
	for (uint32_t j = 0; j < d; j++, dst += PAGE_SIZE_4K) {
		memcpy(dst, buf + (size_t)b->data_idx[j] * PAGE_SIZE_4K, PAGE_SIZE_4K);
		if (delta && b->base[j])
			page_xor(dst, pcache_page(cache, b->base[j] - 1));
	}
	return b->pages;
}

int delta_encode(struct codec *c, struct pcache *cache, bool evict, uint64_t seq,
		 const uint64_t *addrs, size_t n, const uint8_t *buf, struct enc_chunk *out,
		 struct delta_buf *b, struct delta_stats *st)
{
	uint32_t d, hits = 0;
	const uint8_t *data;
	int r;

	*st = (struct delta_stats){ 0 };
	if (n > PEER_MAX_CHUNK_PAGES)
		return -E2BIG;
	r = reserve(out, b, n ? n : 1);
	if (r == 0)
		r = classify(addrs, n, buf, out, b);
	if (r < 0)
		return r;
	out->seq = seq;
	d = out->n_data_pages;
	st->data_pages = d;
	if (d && cache)
		hits = pcache_plan(cache, seq, b->daddr, d, evict, b->base, b->store);
	st->delta_pages = hits;
	data = d ? payload_pages(cache, buf, b, d, hits > 0) : NULL;
	if (d && !data)
		return -ENOMEM;
	r = codec_pack(c, data, out);
	if (r < 0)
		return r;
	for (uint32_t j = 0; cache && j < d; j++) {
		if (!b->store[j])
			continue;
		memcpy(pcache_page(cache, b->store[j] - 1),
		       buf + (size_t)b->data_idx[j] * PAGE_SIZE_4K, PAGE_SIZE_4K);
		st->stored_pages++;
	}
	return 0;
}

int delta_decode(struct codec *c, struct rcache *cache, const struct enc_chunk *in,
		 const uint32_t *base, const uint32_t *store, uint8_t *dst, int64_t *bad_page)
{
	*bad_page = -1;
	if (!in->n_data_pages)
		return 0;
	if (codec_unpack(c, in, dst) < 0)
		return -EBADMSG;
	for (uint32_t j = 0; j < in->n_data_pages; j++) {
		uint8_t *pg = dst + (size_t)j * PAGE_SIZE_4K;

		if (base && base[j])
			page_xor(pg, rcache_page(cache, base[j] - 1));
		if (XXH3_64bits(pg, PAGE_SIZE_4K) != in->page_sums[j]) {
			*bad_page = j;
			return -EBADMSG;
		}
	}
	for (uint32_t j = 0; store && j < in->n_data_pages; j++)
		if (store[j])
			memcpy(rcache_page(cache, store[j] - 1), dst + (size_t)j * PAGE_SIZE_4K,
			       PAGE_SIZE_4K);
	return 0;
}
