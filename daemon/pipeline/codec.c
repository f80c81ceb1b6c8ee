// SPDX-License-Identifier: GPL-2.0-only
/*
 * Page encoding.  One codec per worker thread: it owns a zstd compression
 * and decompression context and a gather buffer, so workers share nothing.
 */
#include "pipeline/codec.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "basic/sum.h"
#include "basic/util.h"

struct codec {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	uint8_t *gather; /* data pages made contiguous when zero pages split them */
	size_t gather_cap;
};

/*
 * OR 64 bytes at a time and test once per block: the loop stays branch-light
 * and vectorises, and a page with data early in it leaves after one block.
 */
int page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)(const void *)p;

	for (size_t i = 0; i < PAGE_SIZE_4K / 8; i += 8) {
		uint64_t acc = w[i] | w[i + 1] | w[i + 2] | w[i + 3] |
			       w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
		if (acc)
			return 0;
	}
	return 1;
}

struct codec *codec_new(int zstd_level)
{
	struct codec *c;

	if (zstd_level == 0)
		zstd_level = CODEC_DEFAULT_LEVEL;
	if (zstd_level < ZSTD_minCLevel() || zstd_level > ZSTD_maxCLevel()) {
		errno = EINVAL;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->cctx = ZSTD_createCCtx();
	c->dctx = ZSTD_createDCtx();
	if (!c->cctx || !c->dctx ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, zstd_level)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_checksumFlag, 0))) {
		codec_free(c);
		errno = ENOMEM;
		return NULL;
	}
	return c;
}

void codec_free(struct codec *c)
{
	if (!c)
		return;
	ZSTD_freeCCtx(c->cctx);
	ZSTD_freeDCtx(c->dctx);
	free(c->gather);
	free(c);
}

void enc_chunk_free(struct enc_chunk *ch)
{
	if (!ch)
		return;
	free(ch->ext);
	free(ch->page_sums);
	free(ch->payload);
	*ch = (struct enc_chunk){ 0 };
}

static int grow(void **buf, size_t *cap, size_t want)
{
	void *n;

	if (want <= *cap)
		return 0;
	want = MAX(want, *cap + *cap / 2);
	n = realloc(*buf, want);
	if (!n)
		return -ENOMEM;
	*buf = n;
	*cap = want;
	return 0;
}

static int push_ext(struct enc_chunk *out, uint64_t addr, uint32_t kind)
{
	struct ext *last = out->n_ext ? &out->ext[out->n_ext - 1] : NULL;

	if (last && last->kind == kind && last->addr + (uint64_t)last->pages * PAGE_SIZE_4K == addr) {
		last->pages++;
		return 0;
	}
	if (grow((void **)&out->ext, &out->ext_cap, (out->n_ext + 1) * sizeof(*out->ext)) < 0)
		return -ENOMEM;
	out->ext[out->n_ext++] = (struct ext){ .addr = addr, .pages = 1, .kind = kind };
	return 0;
}

/*
 * Classify the pages into extents and sum the data pages.  *first and *last
 * get the buffer indices of the first and last data page, so the caller can
 * tell whether the data pages are contiguous in buf.
 */
static int classify(const uint64_t *addrs, size_t n, const uint8_t *buf,
		    struct enc_chunk *out, size_t *first, size_t *last)
{
	out->n_ext = 0;
	out->n_data_pages = 0;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *pg = buf + i * PAGE_SIZE_4K;
		bool zero = page_is_zero(pg);

		if ((addrs[i] & (PAGE_SIZE_4K - 1)) || (i && addrs[i] <= addrs[i - 1]))
			return -EINVAL;
		if (push_ext(out, addrs[i], zero ? EXT_ZERO : EXT_DATA) < 0)
			return -ENOMEM;
		if (zero)
			continue;
		if (!out->n_data_pages)
			*first = i;
		*last = i;
		if (grow((void **)&out->page_sums, &out->sums_cap,
			 (out->n_data_pages + 1) * sizeof(uint64_t)) < 0)
			return -ENOMEM;
		out->page_sums[out->n_data_pages++] = XXH3_64bits(pg, PAGE_SIZE_4K);
	}
	return 0;
}

/*
 * The data pages as one contiguous run: in place, or gathered.  Extents
 * follow the buffer order, so each one is a run of consecutive buffer pages.
 */
static const uint8_t *data_pages(struct codec *c, const uint8_t *buf, size_t first, size_t last,
				 const struct enc_chunk *out)
{
	size_t idx = 0, bytes = (size_t)out->n_data_pages * PAGE_SIZE_4K;
	uint8_t *dst;

	if (last - first + 1 == out->n_data_pages)
		return buf + first * PAGE_SIZE_4K;
	if (grow((void **)&c->gather, &c->gather_cap, bytes) < 0)
		return NULL;
	dst = c->gather;
	for (uint32_t e = 0; e < out->n_ext; e++) {
		size_t len = (size_t)out->ext[e].pages * PAGE_SIZE_4K;

		if (out->ext[e].kind == EXT_DATA) {
			memcpy(dst, buf + idx * PAGE_SIZE_4K, len);
			dst += len;
		}
		idx += out->ext[e].pages;
	}
	return c->gather;
}

static int compress(struct codec *c, const uint8_t *data, size_t bytes, struct enc_chunk *out)
{
	size_t bound = ZSTD_compressBound(bytes), z;

	if (grow((void **)&out->payload, &out->payload_cap, MAX(bound, bytes)) < 0)
		return -ENOMEM;
	z = ZSTD_compress2(c->cctx, out->payload, bound, data, bytes);
	if (!ZSTD_isError(z) && z < bytes) {
		out->encoding = ENC_ZSTD;
		out->payload_len = (uint32_t)z;
		return 0;
	}
	/* Incompressible (or zstd refused): store the pages as they are. */
	ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_only);
	memcpy(out->payload, data, bytes);
	out->encoding = ENC_RAW;
	out->payload_len = (uint32_t)bytes;
	return 0;
}

int codec_encode(struct codec *c, uint64_t seq, const uint64_t *addrs, size_t n,
		 const uint8_t *buf, struct enc_chunk *out)
{
	size_t first = 0, last = 0;
	const uint8_t *data;
	int r;

	if (n > CODEC_MAX_PAGES)
		return -E2BIG;
	out->seq = seq;
	r = classify(addrs, n, buf, out, &first, &last);
	if (r < 0)
		return r;
	out->encoding = ENC_RAW;
	out->payload_len = 0;
	if (out->n_data_pages) {
		data = data_pages(c, buf, first, last, out);
		if (!data)
			return -ENOMEM;
		r = compress(c, data, (size_t)out->n_data_pages * PAGE_SIZE_4K, out);
		if (r < 0)
			return r;
	}
	out->payload_sum = XXH3_64bits(out->payload, out->payload_len);
	return 0;
}

int codec_pack(struct codec *c, const uint8_t *data, struct enc_chunk *out)
{
	int r = 0;

	out->encoding = ENC_RAW;
	out->payload_len = 0;
	if (out->n_data_pages)
		r = compress(c, data, (size_t)out->n_data_pages * PAGE_SIZE_4K, out);
	if (r == 0)
		out->payload_sum = XXH3_64bits(out->payload, out->payload_len);
	return r;
}

size_t codec_payload_bound(uint32_t n_data_pages)
{
	size_t bytes = (size_t)n_data_pages * PAGE_SIZE_4K;

	return MAX(bytes, ZSTD_compressBound(bytes));
}

int codec_check(const struct enc_chunk *ch)
{
	uint64_t next = 0, data = 0, pages = 0;

	if (ch->n_data_pages > CODEC_MAX_PAGES || ch->n_ext > CODEC_MAX_PAGES)
		return -EBADMSG;
	for (uint32_t i = 0; i < ch->n_ext; i++) {
		const struct ext *e = &ch->ext[i];

		if ((e->addr & (PAGE_SIZE_4K - 1)) || e->addr < next || !e->pages ||
		    e->pages > CODEC_MAX_PAGES || e->kind > EXT_ZERO ||
		    e->addr > UINT64_MAX - (uint64_t)e->pages * PAGE_SIZE_4K)
			return -EBADMSG;
		next = e->addr + (uint64_t)e->pages * PAGE_SIZE_4K;
		pages += e->pages;
		if (e->kind == EXT_DATA)
			data += e->pages;
	}
	if (pages > CODEC_MAX_PAGES || data != ch->n_data_pages)
		return -EBADMSG;
	if (ch->encoding == ENC_RAW)
		return ch->payload_len == data * PAGE_SIZE_4K ? 0 : -EBADMSG;
	if (ch->encoding != ENC_ZSTD || !data || ch->payload_len > codec_payload_bound(ch->n_data_pages))
		return -EBADMSG;
	return 0;
}

/* First data page in [0, n) whose sum does not match, or -1. */
static int64_t first_bad_page(const struct enc_chunk *in, const uint8_t *dst, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (XXH3_64bits(dst + (size_t)i * PAGE_SIZE_4K, PAGE_SIZE_4K) != in->page_sums[i])
			return i;
	return -1;
}

uint32_t codec_salvage(struct codec *c, const struct enc_chunk *in, uint8_t *dst)
{
	size_t bytes = (size_t)in->n_data_pages * PAGE_SIZE_4K;
	ZSTD_outBuffer ob = { dst, bytes, 0 };
	ZSTD_inBuffer ib = { in->payload, in->payload_len, 0 };

	if (in->encoding == ENC_RAW) {
		if (bytes) /* a chunk of zero pages only has no payload: NULL */
			memcpy(dst, in->payload, bytes);
		return in->n_data_pages;
	}
	ZSTD_DCtx_reset(c->dctx, ZSTD_reset_session_only);
	while (ob.pos < ob.size) {
		size_t z = ZSTD_decompressStream(c->dctx, &ob, &ib);

		if (ZSTD_isError(z) || z == 0 || ib.pos == ib.size)
			break;
	}
	ZSTD_DCtx_reset(c->dctx, ZSTD_reset_session_only);
	return (uint32_t)(ob.pos / PAGE_SIZE_4K);
}

/*
 * The payload is damaged: name the first page that does not come out
 * intact.  For zstd, pages after the point where decoding stopped cannot
 * be vouched for; the first of them is named.
 */
static int64_t locate_damage(struct codec *c, const struct enc_chunk *in, uint8_t *dst)
{
	uint32_t n = codec_salvage(c, in, dst);
	int64_t bad = first_bad_page(in, dst, n);

	return bad < 0 && n < in->n_data_pages ? (int64_t)n : bad;
}

static int decompress(struct codec *c, const struct enc_chunk *in, uint8_t *dst)
{
	size_t bytes = (size_t)in->n_data_pages * PAGE_SIZE_4K, z;

	if (in->encoding == ENC_RAW) {
		if (bytes)
			memcpy(dst, in->payload, bytes);
		return 0;
	}
	z = ZSTD_decompressDCtx(c->dctx, dst, bytes, in->payload, in->payload_len);
	if (ZSTD_isError(z) || z != bytes) {
		ZSTD_DCtx_reset(c->dctx, ZSTD_reset_session_only);
		return -EBADMSG;
	}
	return 0;
}

bool codec_payload_intact(const struct enc_chunk *in)
{
	return XXH3_64bits(in->payload, in->payload_len) == in->payload_sum;
}

int codec_unpack(struct codec *c, const struct enc_chunk *in, uint8_t *dst)
{
	if (!codec_payload_intact(in))
		return -EBADMSG;
	return decompress(c, in, dst);
}

int codec_decode(struct codec *c, const struct enc_chunk *in, uint8_t *dst, int64_t *bad_page)
{
	int64_t bad;

	*bad_page = -1;
	if (codec_check(in) < 0)
		return -EBADMSG;
	if (!codec_payload_intact(in)) {
		*bad_page = locate_damage(c, in, dst);
		return -EBADMSG;
	}
	if (decompress(c, in, dst) < 0) {
		*bad_page = locate_damage(c, in, dst);
		return -EBADMSG;
	}
	bad = first_bad_page(in, dst, in->n_data_pages);
	if (bad >= 0) {
		*bad_page = bad;
		return -EBADMSG;
	}
	return 0;
}
