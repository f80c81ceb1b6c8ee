// SPDX-License-Identifier: GPL-2.0-only
/*
 * In-process figures of bench-peer: what a delta could be made of (the
 * choice in docs/protocol.md), and what the per-frame MAC costs beside
 * compression, on the same pages in the same run.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "pagegen.h"
#include "basic/util.h"
#include "peer/auth.h"
#include "peer/delta.h"
#include "pipeline/codec.h"

#define PG PAGE_SIZE_4K
#define CHUNK 256 /* pages: the pipeline's 1 MiB chunks */

void bench_encodings(unsigned pages, bool quick);

struct pages {
	uint8_t *old, *cur, *x; /* before, after one word changed, XOR of both */
	unsigned n;
};

static void make(struct pages *p, unsigned n)
{
	uint64_t s = 0x5eed;

	p->n = n;
	p->old = malloc((size_t)n * PG);
	p->cur = malloc((size_t)n * PG);
	p->x = malloc((size_t)n * PG);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *o = p->old + (size_t)i * PG, *c = p->cur + (size_t)i * PG;
		uint64_t v = pg_rand(&s) | 1;

		pg_fill(o, (int)(i / 7 % PG_KINDS), &s); /* runs of each kind */
		memcpy(c, o, PG);
		memcpy(c + (v % (PG / 8)) * 8, &v, 8);
		memcpy(p->x + (size_t)i * PG, c, PG);
		page_xor(p->x + (size_t)i * PG, o);
	}
}

/* Chunks of data through codec_pack: bytes out. */
static uint64_t pack_all(struct codec *c, const uint8_t *data, unsigned n, uint64_t *ns)
{
	struct enc_chunk e = { 0 };
	uint64_t bytes = 0, t0 = now_ns();

	for (unsigned i = 0; i < n; i += CHUNK) {
		e.n_data_pages = MIN(CHUNK, n - i);
		codec_pack(c, data + (size_t)i * PG, &e);
		bytes += e.payload_len + 8u * e.n_data_pages; /* payload and page sums */
	}
	*ns = now_ns() - t0;
	enc_chunk_free(&e);
	return bytes;
}

/* zstd of each page with its previous copy as the prefix (a dictionary). */
static uint64_t prefix_all(const struct pages *p, uint64_t *ns)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();
	size_t cap = ZSTD_compressBound(PG);
	uint8_t *out = malloc(cap);
	uint64_t bytes = 0, t0 = now_ns();

	ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 1);
	for (unsigned i = 0; i < p->n; i++) {
		ZSTD_CCtx_refPrefix(c, p->old + (size_t)i * PG, PG);
		size_t z = ZSTD_compress2(c, out, cap, p->cur + (size_t)i * PG, PG);
		bytes += (ZSTD_isError(z) ? PG : z) + 8;
	}
	*ns = now_ns() - t0;
	ZSTD_freeCCtx(c);
	free(out);
	return bytes;
}

static void encodings(unsigned n)
{
	struct codec *c = codec_new(-1);
	struct pages p;
	uint64_t ns[3], b[3];

	make(&p, n);
	b[0] = pack_all(c, p.cur, n, &ns[0]);
	b[1] = pack_all(c, p.x, n, &ns[1]);
	b[2] = prefix_all(&p, &ns[2]);
	printf("Encodings of %u pages (mixed) after one word each changed, zstd level -1:\n", n);
	printf("  pages as they are (reference): %8.1f bytes/page, %7.1f us/MiB\n",
	       (double)b[0] / n, ns[0] / 1e3 / (n / 256.0));
	printf("  XOR with the old copy + zstd:  %8.1f bytes/page, %7.1f us/MiB  (%.0fx fewer)\n",
	       (double)b[1] / n, ns[1] / 1e3 / (n / 256.0), (double)b[0] / b[1]);
	printf("  zstd, old copy as prefix:      %8.1f bytes/page, %7.1f us/MiB  (%.0fx fewer)\n",
	       (double)b[2] / n, ns[2] / 1e3 / (n / 256.0), (double)b[0] / b[2]);
	codec_free(c);
	free(p.old);
	free(p.cur);
	free(p.x);
}

/* The MAC over what goes on the wire, beside compressing it. */
static void mac_cost(unsigned mib)
{
	unsigned n = mib * 256;
	struct codec *c = codec_new(-1);
	struct peer_key k = { (uint8_t *)"0123456789abcdef0123456789abcdef", 32 };
	uint8_t t[PEER_HASH_SIZE] = { 0 }, tag[16];
	struct enc_chunk e = { 0 };
	struct peer_mac m;
	uint64_t s = 7, zns = 0, mns = 0, wire = 0;
	uint8_t *data = malloc((size_t)n * PG);

	for (unsigned i = 0; i < n; i++)
		pg_fill(data + (size_t)i * PG, (int)(i / 5 % PG_KINDS), &s);
	peer_mac_init(&m, &k, PEER_LABEL_SOURCE, t);
	for (unsigned i = 0; i < n; i += CHUNK) {
		uint64_t t0 = now_ns();
		e.n_data_pages = CHUNK;
		codec_pack(c, data + (size_t)i * PG, &e);
		uint64_t t1 = now_ns();
		struct iovec iov = { e.payload, e.payload_len };
		peer_mac_seal(&m, &iov, 1, tag);
		mns += now_ns() - t1;
		zns += t1 - t0;
		wire += e.payload_len;
	}
	printf("Per-frame MAC (AES-256-GMAC) over %u MiB of mixed pages, %.0f MiB on the wire:\n",
	       mib, wire / 1048576.0);
	printf("  zstd -1 (reference) %.2f GB/s of pages; MAC %.2f GB/s of wire bytes: %.1f %% of "
	       "the compression time\n", (double)n * PG / zns, (double)wire / mns,
	       100.0 * (double)mns / (double)zns);
	peer_mac_free(&m);
	enc_chunk_free(&e);
	codec_free(c);
	free(data);
}

void bench_encodings(unsigned pages, bool quick)
{
	encodings(pages);
	mac_cost(quick ? 16 : 256);
}
