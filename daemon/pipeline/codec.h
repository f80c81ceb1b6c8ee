/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Page encoding: a chunk of pages read from the target becomes extents
 * (runs of data pages and of all-zero pages, by address), an XXH3-64 sum of
 * every data page, and one zstd-compressed payload of the data pages.  The
 * same encoded chunk is stored by the local store and sent by the peer link.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ext_kind {
	EXT_DATA = 0, /* pages follow, in order, in the chunk payload */
	EXT_ZERO = 1, /* pages are zero; nothing stored */
};

struct ext {
	uint64_t addr;  /* page aligned */
	uint32_t pages;
	uint32_t kind;  /* enum ext_kind */
};

enum {
	ENC_RAW = 0,  /* payload is the data pages as they are */
	ENC_ZSTD = 1, /* payload is one zstd frame of the data pages */
};

struct enc_chunk {
	uint64_t seq;        /* pass number in the generation: a higher seq wins */
	struct ext *ext;
	uint32_t n_ext;
	uint32_t n_data_pages;
	uint64_t *page_sums; /* n_data_pages XXH3-64 sums of the raw pages */
	uint8_t *payload;
	uint32_t payload_len;
	uint32_t encoding;   /* ENC_RAW or ENC_ZSTD */
	uint64_t payload_sum; /* XXH3-64 of the payload as stored */
	/* owned buffers, reused between encodes; capacities in bytes */
	size_t ext_cap, sums_cap, payload_cap;
};

/* The largest chunk a codec encodes or decodes: 64 MiB of pages. */
#define CODEC_MAX_PAGES 16384u
/* zstd level used for level 0; measured, see docs/image-format.md. */
#define CODEC_DEFAULT_LEVEL (-1)

struct codec; /* one per worker thread: holds the zstd contexts */

/* zstd_level 0 means CODEC_DEFAULT_LEVEL; NULL with errno set on failure. */
struct codec *codec_new(int zstd_level);
void codec_free(struct codec *c);

/*
 * Encode the pages at addrs[i] (n pages, in address order, page i at
 * buf + i * 4096) into out.  All-zero pages become EXT_ZERO extents.
 * Falls back to ENC_RAW when zstd does not shrink the data.
 */
int codec_encode(struct codec *c, uint64_t seq, const uint64_t *addrs, size_t n,
		 const uint8_t *buf, struct enc_chunk *out);
/*
 * Decode the data pages of in into dst (in->n_data_pages * 4096 bytes),
 * checking payload_sum and every page sum.  -EBADMSG names the first bad
 * page in *bad_page (index among the data pages) when it is a page sum.
 */
int codec_decode(struct codec *c, const struct enc_chunk *in, uint8_t *dst, int64_t *bad_page);
void enc_chunk_free(struct enc_chunk *ch);
/*
 * Decode what can be decoded, trusting nothing: returns how many leading
 * data pages came out of the payload into dst (all of them for an intact
 * payload); no sum is checked.  For verify, which checks each page itself.
 * in must pass codec_check().
 */
uint32_t codec_salvage(struct codec *c, const struct enc_chunk *in, uint8_t *dst);
/*
 * Is the chunk's metadata consistent (for chunks from a file or a peer)?
 * Extents page aligned, in increasing address order, not overlapping, their
 * data pages adding up to n_data_pages <= CODEC_MAX_PAGES, payload length
 * possible for the encoding.  0 or -EBADMSG.
 */
int codec_check(const struct enc_chunk *ch);
/*
 * For encoders that transform the data pages first (the peer protocol's
 * delta): compress out->n_data_pages pages, contiguous at data, into out's
 * payload as codec_encode does (zstd, or raw when that does not shrink
 * them) and set payload_sum.  Extents and page sums are the caller's.
 */
int codec_pack(struct codec *c, const uint8_t *data, struct enc_chunk *out);
/* The reverse: check payload_sum and decompress into dst; page sums are
 * not checked.  0 or -EBADMSG.  in must pass codec_check(). */
int codec_unpack(struct codec *c, const struct enc_chunk *in, uint8_t *dst);
/* Does the payload still have the sum it was sent with?  (No decoding.) */
bool codec_payload_intact(const struct enc_chunk *in);
/* Largest payload a valid chunk of n data pages can have. */
size_t codec_payload_bound(uint32_t n_data_pages);

/* Fast all-zero test of one 4 KiB page. */
int page_is_zero(const uint8_t *p);
