// SPDX-License-Identifier: GPL-2.0-only
/*
 * The page codec on real data and real zstd: mixed chunks round-trip byte
 * for byte with the extents they must have, random data falls back to raw,
 * and damage to the payload or to a page sum is caught with the page named.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "harness.h"
#include "pagegen.h"
#include "basic/util.h"
#include "pipeline/codec.h"

#define PG PAGE_SIZE_4K

/* A chunk of pages: kinds[i] at addrs[i]; gaps in the addresses are allowed. */
struct sample {
	size_t n;
	uint64_t *addrs;
	uint8_t *buf;
	int *kinds;
};

static void sample_make(struct sample *s, size_t n, const int *pattern, size_t plen, uint64_t seed)
{
	uint64_t a = 0x7f0000000000ULL;

	s->n = n;
	s->addrs = calloc(n, sizeof(*s->addrs));
	s->kinds = calloc(n, sizeof(*s->kinds));
	s->buf = aligned_alloc(PG, n * PG);
	for (size_t i = 0; i < n; i++) {
		s->kinds[i] = pattern[i % plen];
		pg_fill(s->buf + i * PG, s->kinds[i], &seed);
		/* a hole after every 7th page: extents must split on address gaps */
		a += (i % 7 == 6) ? 3 * PG : PG;
		s->addrs[i] = a;
	}
}

static void sample_free(struct sample *s)
{
	free(s->addrs);
	free(s->buf);
	free(s->kinds);
}

/* The extents a correct encoder must produce, built the slow way. */
static size_t expected_extents(const struct sample *s, struct ext *out)
{
	size_t n = 0;

	for (size_t i = 0; i < s->n; i++) {
		uint32_t kind = s->kinds[i] == PG_ZERO ? EXT_ZERO : EXT_DATA;

		if (n && out[n - 1].kind == kind && out[n - 1].addr + out[n - 1].pages * PG == s->addrs[i])
			out[n - 1].pages++;
		else
			out[n++] = (struct ext){ s->addrs[i], 1, kind };
	}
	return n;
}

static void check_roundtrip(struct codec *c, const struct sample *s, struct enc_chunk *ch)
{
	struct ext *want = calloc(s->n, sizeof(*want));
	size_t n_want = expected_extents(s, want), data = 0;
	uint8_t *dec = malloc(s->n * PG);
	int64_t bad;
	int r;

	CHECK(ch->n_ext == n_want, "extents %u want %zu", ch->n_ext, n_want);
	for (size_t i = 0; i < n_want && i < ch->n_ext; i++)
		CHECK(!memcmp(&ch->ext[i], &want[i], sizeof(want[i])), "extent %zu differs", i);
	CHECK(codec_check(ch) == 0, "own chunk fails check");
	r = codec_decode(c, ch, dec, &bad);
	CHECK(r == 0, "decode %d bad %lld", r, (long long)bad);
	for (size_t i = 0; i < s->n; i++) {
		if (s->kinds[i] == PG_ZERO)
			continue;
		CHECK(!memcmp(dec + data * PG, s->buf + i * PG, PG), "data page %zu differs", data);
		CHECK(ch->page_sums[data] == XXH3_64bits(s->buf + i * PG, PG), "sum %zu", data);
		data++;
	}
	CHECK(ch->n_data_pages == data, "data pages %u want %zu", ch->n_data_pages, data);
	free(want);
	free(dec);
}

static void test_zero_detection(void)
{
	uint8_t *pg = aligned_alloc(PG, PG);

	memset(pg, 0, PG);
	CHECK(page_is_zero(pg), "zero page not zero");
	for (size_t off = 0; off < PG; off += 509) {
		pg[off] = 1;
		CHECK(!page_is_zero(pg), "byte %zu missed", off);
		pg[off] = 0;
	}
	pg[PG - 1] = 0x80;
	CHECK(!page_is_zero(pg), "last byte missed");
	free(pg);
}

static void test_mixed_roundtrip(void)
{
	static const int pat[] = { PG_ZERO, PG_TEXT, PG_TEXT, PG_RANDOM, PG_ZERO, PG_ZERO, PG_TEXT };
	struct codec *c = codec_new(0);
	struct enc_chunk ch = { 0 };
	struct sample s;

	sample_make(&s, 256, pat, ARRAY_SIZE(pat), 1);
	CHECK(codec_encode(c, 5, s.addrs, s.n, s.buf, &ch) == 0, "encode");
	CHECK(ch.seq == 5, "seq %llu", (unsigned long long)ch.seq);
	CHECK(ch.encoding == ENC_ZSTD, "mixed chunk not compressed");
	CHECK(ch.payload_len < ch.n_data_pages * PG, "payload %u not smaller", ch.payload_len);
	check_roundtrip(c, &s, &ch);
	sample_free(&s);
	/* The same chunk struct reused for different data. */
	static const int pat2[] = { PG_TEXT, PG_RANDOM };
	sample_make(&s, 37, pat2, ARRAY_SIZE(pat2), 2);
	CHECK(codec_encode(c, 6, s.addrs, s.n, s.buf, &ch) == 0, "encode 2");
	check_roundtrip(c, &s, &ch);
	sample_free(&s);
	enc_chunk_free(&ch);
	codec_free(c);
}

static void test_raw_fallback(void)
{
	static const int rnd[] = { PG_RANDOM }, zero[] = { PG_ZERO };
	struct codec *c = codec_new(1);
	struct enc_chunk ch = { 0 };
	struct sample s;

	sample_make(&s, 64, rnd, 1, 3);
	CHECK(codec_encode(c, 1, s.addrs, s.n, s.buf, &ch) == 0, "encode");
	CHECK(ch.encoding == ENC_RAW, "random data encoded %u", ch.encoding);
	CHECK(ch.payload_len == 64 * PG, "raw payload %u", ch.payload_len);
	CHECK(!memcmp(ch.payload, s.buf, 64 * PG), "raw payload is not the pages");
	check_roundtrip(c, &s, &ch);
	sample_free(&s);

	sample_make(&s, 20, zero, 1, 4);
	CHECK(codec_encode(c, 1, s.addrs, s.n, s.buf, &ch) == 0, "encode zero");
	CHECK(ch.n_data_pages == 0 && ch.payload_len == 0, "zero chunk carries data");
	check_roundtrip(c, &s, &ch);
	sample_free(&s);
	enc_chunk_free(&ch);
	codec_free(c);
}

/* Flip one byte of a page's data (raw) and of a page sum: that page is named. */
static void test_damage_named(void)
{
	static const int pat[] = { PG_RANDOM, PG_ZERO, PG_RANDOM };
	struct codec *c = codec_new(0);
	struct enc_chunk ch = { 0 };
	uint8_t *dec = malloc(64 * PG);
	struct sample s;
	int64_t bad;

	sample_make(&s, 64, pat, ARRAY_SIZE(pat), 5);
	codec_encode(c, 1, s.addrs, s.n, s.buf, &ch);
	CHECK(ch.encoding == ENC_RAW, "expected raw");
	ch.payload[17 * PG + 100] ^= 0x40;
	CHECK(codec_decode(c, &ch, dec, &bad) == -EBADMSG, "flipped payload accepted");
	CHECK(bad == 17, "bad page %lld want 17", (long long)bad);
	ch.payload[17 * PG + 100] ^= 0x40;
	ch.page_sums[30] ^= 1;
	CHECK(codec_decode(c, &ch, dec, &bad) == -EBADMSG, "flipped sum accepted");
	CHECK(bad == 30, "bad page %lld want 30", (long long)bad);
	ch.page_sums[30] ^= 1;
	CHECK(codec_decode(c, &ch, dec, &bad) == 0, "restored chunk rejected");
	sample_free(&s);
	enc_chunk_free(&ch);
	free(dec);
	codec_free(c);
}

/* zstd payload: a flip anywhere is caught and a page at or before it named. */
static void test_damage_zstd(void)
{
	static const int pat[] = { PG_TEXT };
	struct codec *c = codec_new(0);
	struct enc_chunk ch = { 0 };
	uint8_t *dec = malloc(128 * PG);
	struct sample s;
	uint64_t seed = 9;

	sample_make(&s, 128, pat, 1, 6);
	codec_encode(c, 1, s.addrs, s.n, s.buf, &ch);
	CHECK(ch.encoding == ENC_ZSTD, "expected zstd");
	for (int i = 0; i < 200; i++) {
		uint32_t off = (uint32_t)(pg_rand(&seed) % ch.payload_len);
		uint8_t bit = (uint8_t)(1u << (pg_rand(&seed) % 8));
		int64_t bad = -2;

		ch.payload[off] ^= bit;
		CHECK(codec_decode(c, &ch, dec, &bad) == -EBADMSG, "flip at %u accepted", off);
		CHECK(bad >= -1 && bad < 128, "bad page %lld out of range", (long long)bad);
		ch.payload[off] ^= bit;
	}
	int64_t bad;
	CHECK(codec_decode(c, &ch, dec, &bad) == 0, "restored chunk rejected");
	sample_free(&s);
	enc_chunk_free(&ch);
	free(dec);
	codec_free(c);
}

static void test_hostile_metadata(void)
{
	static const int pat[] = { PG_TEXT, PG_ZERO };
	struct codec *c = codec_new(0);
	struct enc_chunk ch = { 0 };
	uint8_t *dec = malloc(16 * PG);
	struct sample s;
	int64_t bad;

	sample_make(&s, 16, pat, 2, 7);
	codec_encode(c, 1, s.addrs, s.n, s.buf, &ch);
	ch.n_data_pages++;
	CHECK(codec_decode(c, &ch, dec, &bad) == -EBADMSG, "page count mismatch accepted");
	ch.n_data_pages--;
	ch.ext[1].addr = ch.ext[0].addr;
	CHECK(codec_check(&ch) == -EBADMSG, "overlapping extents accepted");
	codec_encode(c, 1, s.addrs, s.n, s.buf, &ch);
	ch.payload_len = UINT32_MAX;
	CHECK(codec_check(&ch) == -EBADMSG, "huge payload accepted");
	codec_encode(c, 1, s.addrs, s.n, s.buf, &ch);
	ch.encoding = 7;
	CHECK(codec_check(&ch) == -EBADMSG, "unknown encoding accepted");
	/* The encoder refuses bad input too. */
	s.addrs[3] = s.addrs[2];
	CHECK(codec_encode(c, 1, s.addrs, s.n, s.buf, &ch) == -EINVAL, "unsorted addrs");
	s.addrs[3] = s.addrs[2] + 1;
	CHECK(codec_encode(c, 1, s.addrs, s.n, s.buf, &ch) == -EINVAL, "unaligned addr");
	CHECK(codec_encode(c, 1, s.addrs, CODEC_MAX_PAGES + 1, s.buf, &ch) == -E2BIG, "too many");
	CHECK(codec_new(1000) == NULL && errno == EINVAL, "level 1000 accepted");
	sample_free(&s);
	enc_chunk_free(&ch);
	free(dec);
	codec_free(c);
}

struct worker {
	const struct sample *s;
	struct enc_chunk ch;
};

static void *encode_thread(void *arg)
{
	struct worker *w = arg;
	struct codec *c = codec_new(0);

	for (int i = 0; i < 20; i++)
		codec_encode(c, (uint64_t)i, w->s->addrs, w->s->n, w->s->buf, &w->ch);
	codec_free(c);
	return NULL;
}

/* Two workers, each with its own codec, produce exactly what one thread does. */
static void test_two_workers(void)
{
	static const int pat[] = { PG_TEXT, PG_ZERO, PG_RANDOM, PG_TEXT };
	struct worker w[2] = { 0 };
	struct sample s[2];
	pthread_t th[2];

	for (int i = 0; i < 2; i++) {
		sample_make(&s[i], 256, pat, ARRAY_SIZE(pat), 10 + (uint64_t)i);
		w[i].s = &s[i];
		pthread_create(&th[i], NULL, encode_thread, &w[i]);
	}
	for (int i = 0; i < 2; i++) {
		struct codec *c = codec_new(0);
		struct enc_chunk ref = { 0 };

		pthread_join(th[i], NULL);
		codec_encode(c, 19, s[i].addrs, s[i].n, s[i].buf, &ref);
		CHECK(ref.payload_len == w[i].ch.payload_len &&
		      !memcmp(ref.payload, w[i].ch.payload, ref.payload_len), "worker %d differs", i);
		check_roundtrip(c, &s[i], &w[i].ch);
		enc_chunk_free(&ref);
		enc_chunk_free(&w[i].ch);
		codec_free(c);
		sample_free(&s[i]);
	}
}

int main(void)
{
	test_zero_detection();
	test_mixed_roundtrip();
	test_raw_fallback();
	test_damage_named();
	test_damage_zstd();
	test_hostile_metadata();
	test_two_workers();
	if (test_failures)
		fprintf(stderr, "%d check(s) failed\n", test_failures);
	else
		printf("codec: all checks passed\n");
	return test_failures ? 1 : 0;
}
