// SPDX-License-Identifier: GPL-2.0-only
/*
 * One chunk record of a generation file: its header is checked against the
 * chunk table (the record must end exactly where the next one starts), its
 * extents and page sums against meta_sum, then the codec checks the rest.
 * Each gen_file keeps the last chunk it loaded and decoded.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>


#include "basic/sum.h"
#include "basic/util.h"

uint64_t chunk_meta_sum(const struct disk_chunk *h, const struct ext *ext, const uint64_t *sums)
{
	uint64_t s = XXH3_64bits(h, offsetof(struct disk_chunk, meta_sum));

	s = XXH3_64bits_withSeed(ext, (size_t)h->n_ext * sizeof(*ext), s);
	return XXH3_64bits_withSeed(sums, (size_t)h->n_data_pages * 8, s);
}

int chunk_grow(void **buf, size_t *cap, size_t want)
{
	void *n;

	if (want <= *cap)
		return 0;
	n = realloc(*buf, want);
	if (!n)
		return -ENOMEM;
	*buf = n;
	*cap = want;
	return 0;
}

static int preadv_full(int fd, struct iovec *iov, int n, uint64_t off)
{
	while (n > 0) {
		ssize_t r = preadv(fd, iov, n, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EBADMSG;
		off += (uint64_t)r;
		while (n > 0 && (size_t)r >= iov->iov_len) {
			r -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + r;
			iov->iov_len -= (size_t)r;
		}
	}
	return 0;
}

/* The header at off, sized against the room up to the next record (chunk or
 * section). */
static int read_chunk_header(struct gen_file *gf, uint32_t idx, struct disk_chunk *h)
{
	uint64_t off = gf->chunk_off[idx];
	uint64_t end = gen_file_record_end(gf, off);
	struct iovec iov = { h, sizeof(*h) };
	int r = preadv_full(gf->fd, &iov, 1, off);

	if (r < 0)
		return r;
	if (h->magic != STORE_CHUNK_MAGIC || h->n_ext > CODEC_MAX_PAGES ||
	    h->n_data_pages > CODEC_MAX_PAGES ||
	    h->payload_len > codec_payload_bound(h->n_data_pages) ||
	    chunk_record_len(h->n_ext, h->n_data_pages, h->payload_len) != end - off)
		return -EBADMSG;
	return 0;
}

static int prefix_data_pages(struct gen_file *gf)
{
	uint32_t before = 0;

	if (chunk_grow((void **)&gf->ext_before, &gf->ext_before_cap,
		 ((size_t)gf->ch.n_ext + 1) * sizeof(uint32_t)) < 0)
		return -ENOMEM;
	for (uint32_t i = 0; i < gf->ch.n_ext; i++) {
		gf->ext_before[i] = before;
		if (gf->ch.ext[i].kind == EXT_DATA)
			before += gf->ch.ext[i].pages;
	}
	return 0;
}

int gen_file_load_chunk(struct gen_file *gf, uint32_t idx, bool *meta_bad)
{
	struct enc_chunk *ch = &gf->ch;
	struct disk_chunk h;
	bool bad;
	int r;

	if (meta_bad)
		*meta_bad = false;
	if (gf->cached == idx)
		return 0;
	gf->cached = SPAN_NO_CHUNK;
	gf->decoded = false;
	r = read_chunk_header(gf, idx, &h);
	if (r < 0)
		return r;
	if (chunk_grow((void **)&ch->ext, &ch->ext_cap, (size_t)h.n_ext * sizeof(struct ext)) < 0 ||
	    chunk_grow((void **)&ch->page_sums, &ch->sums_cap, (size_t)h.n_data_pages * 8) < 0 ||
	    chunk_grow((void **)&ch->payload, &ch->payload_cap, h.payload_len) < 0)
		return -ENOMEM;
	struct iovec iov[] = {
		{ ch->ext, (size_t)h.n_ext * sizeof(struct ext) },
		{ ch->page_sums, (size_t)h.n_data_pages * 8 },
		{ ch->payload, h.payload_len },
	};
	r = preadv_full(gf->fd, iov, (int)ARRAY_SIZE(iov), gf->chunk_off[idx] + sizeof(h));
	if (r < 0)
		return r;
	bad = chunk_meta_sum(&h, ch->ext, ch->page_sums) != h.meta_sum;
	if (bad && !meta_bad)
		return -EBADMSG;
	ch->seq = h.seq;
	ch->n_ext = h.n_ext;
	ch->n_data_pages = h.n_data_pages;
	ch->encoding = h.encoding;
	ch->payload_len = h.payload_len;
	ch->payload_sum = h.payload_sum;
	if (codec_check(ch) < 0)
		return -EBADMSG;
	r = prefix_data_pages(gf);
	if (r < 0)
		return r;
	if (meta_bad)
		*meta_bad = bad;
	if (!bad) /* a chunk with damaged metadata is never served from the cache */
		gf->cached = idx;
	return 0;
}

int gen_file_decode_chunk(struct gen_file *gf, struct codec *c, uint32_t idx, int64_t *bad_page)
{
	int r;

	*bad_page = -1;
	if (gf->cached == idx && gf->decoded)
		return 0;
	r = gen_file_load_chunk(gf, idx, NULL);
	if (r < 0)
		return r;
	if (chunk_grow((void **)&gf->pages, &gf->pages_cap,
		 (size_t)gf->ch.n_data_pages * PAGE_SIZE_4K) < 0)
		return -ENOMEM;
	r = codec_decode(c, &gf->ch, gf->pages, bad_page);
	gf->decoded = r == 0;
	return r;
}

uint64_t chunk_data_page_addr(const struct enc_chunk *ch, uint64_t i)
{
	for (uint32_t e = 0; e < ch->n_ext; e++) {
		if (ch->ext[e].kind != EXT_DATA)
			continue;
		if (i < ch->ext[e].pages)
			return ch->ext[e].addr + i * PAGE_SIZE_4K;
		i -= ch->ext[e].pages;
	}
	return UINT64_MAX;
}

int64_t gen_file_chunk_page(const struct gen_file *gf, uint64_t addr)
{
	const struct enc_chunk *ch = &gf->ch;
	uint32_t lo = 0, hi = ch->n_ext;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct ext *e = &ch->ext[mid];

		if (e->addr + (uint64_t)e->pages * PAGE_SIZE_4K <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == ch->n_ext || ch->ext[lo].addr > addr || ch->ext[lo].kind != EXT_DATA)
		return -1;
	return gf->ext_before[lo] + (int64_t)((addr - ch->ext[lo].addr) / PAGE_SIZE_4K);
}
