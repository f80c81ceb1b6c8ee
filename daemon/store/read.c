// SPDX-License-Identifier: GPL-2.0-only
/*
 * Reading an image: the generation asked for and its parents down to a
 * full one, all opened and checked up front.  The content at an address is
 * the span of the newest generation that has one; where a generation has
 * none, its parent decides, but only inside the parent's regions (outside
 * them the page was not mapped then, so it is zero); a full generation ends
 * the walk.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "basic/util.h"

static int resolve_regions(struct store_image *img, size_t level, uint64_t a, uint64_t b,
			   resolve_fn fn, void *ud, bool strict);

/* Where a generation has no span: its parent, if it has to be asked. */
static int resolve_gap(struct store_image *img, size_t level, uint64_t a, uint64_t b,
		       resolve_fn fn, void *ud)
{
	if ((img->chain[level]->hdr.flags & GEN_FULL) || level + 1 == img->n_chain)
		return fn(ud, a, b, NULL, NULL);
	return resolve_regions(img, level + 1, a, b, fn, ud, false);
}

/* [a, b) lies inside one region of chain[level]. */
static int resolve_level(struct store_image *img, size_t level, uint64_t a, uint64_t b,
			 resolve_fn fn, void *ud)
{
	struct gen_file *gf = img->chain[level];
	size_t lo = 0, hi = gf->ix->n_spans;
	uint64_t pos = a;
	int r = 0;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (gf->spans[mid].end <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; r == 0 && i < gf->ix->n_spans && gf->spans[i].start < b; i++) {
		const struct disk_span *s = &gf->spans[i];

		if (s->start > pos)
			r = resolve_gap(img, level, pos, s->start, fn, ud);
		if (r == 0 && s->kind == EXT_DATA)
			r = fn(ud, MAX(s->start, pos), MIN(s->end, b), gf, s);
		else if (r == 0)
			r = fn(ud, MAX(s->start, pos), MIN(s->end, b), NULL, NULL);
		pos = MIN(s->end, b);
	}
	if (r == 0 && pos < b)
		r = resolve_gap(img, level, pos, b, fn, ud);
	return r;
}

/* Split [a, b) by the regions of chain[level]; strict: outside is an error. */
static int resolve_regions(struct store_image *img, size_t level, uint64_t a, uint64_t b,
			   resolve_fn fn, void *ud, bool strict)
{
	struct gen_file *gf = img->chain[level];
	size_t i = gen_file_region_from(gf, a);
	uint64_t pos = a;
	int r = 0;

	for (; r == 0 && i < gf->n_regions && gf->regions[i].start < b; i++) {
		const struct pass_region *reg = &gf->regions[i];

		if (reg->start > pos)
			r = strict ? -ENXIO : fn(ud, pos, reg->start, NULL, NULL);
		if (r == 0)
			r = resolve_level(img, level, MAX(pos, reg->start), MIN(reg->end, b), fn, ud);
		pos = MIN(reg->end, b);
	}
	if (r == 0 && pos < b)
		r = strict ? -ENXIO : fn(ud, pos, b, NULL, NULL);
	return r;
}

int image_resolve(struct store_image *img, uint64_t start, uint64_t end, resolve_fn fn, void *ud)
{
	return resolve_regions(img, 0, start, end, fn, ud, true);
}

const uint8_t *image_page(struct store_image *img, struct gen_file *gf,
			  const struct disk_span *span, uint64_t addr, int *err)
{
	int64_t bad, idx;

	img->bad_addr = UINT64_MAX;
	*err = gen_file_decode_chunk(gf, img->codec, span->chunk, &bad);
	if (*err < 0) {
		if (bad >= 0)
			img->bad_addr = chunk_data_page_addr(&gf->ch, (uint64_t)bad);
		return NULL;
	}
	idx = gen_file_chunk_page(gf, addr & ~(PAGE_SIZE_4K - 1));
	if (idx < 0) {
		*err = -EBADMSG; /* the span points at pages its chunk does not hold */
		return NULL;
	}
	return gf->pages + (size_t)idx * PAGE_SIZE_4K;
}

int store_image_open(struct store *st, const char *set, uint64_t generation,
		     struct store_image **ret)
{
	return store_image_open_err(st, set, generation, ret, NULL);
}

int store_image_open_err(struct store *st, const char *set, uint64_t generation,
			 struct store_image **ret, struct store_err *err)
{
	_cleanup_close_ int set_fd = -1;
	struct store_image *img;
	uint64_t g = generation;
	struct store_err e = { 0 };
	int r;

	if (!err)
		err = &e;
	*err = (struct store_err){ 0 };
	r = set_dir_open(st, set, false, &set_fd);
	if (r == 0 && !g) {
		_cleanup_free_ uint64_t *gens = NULL;
		size_t n = 0;

		r = set_generations(set_fd, &gens, &n);
		if (r == 0 && !n)
			r = -ENOENT;
		if (r == 0)
			g = gens[n - 1];
	}
	if (r < 0)
		return r;
	img = calloc(1, sizeof(*img));
	if (!img || !(img->codec = codec_new(0))) {
		free(img);
		return -ENOMEM;
	}
	/* Parents have smaller numbers (checked per file), so this ends. */
	while (g) {
		struct gen_file *gf, **n = reallocarray(img->chain, img->n_chain + 1, sizeof(*n));

		if (!n) {
			r = -ENOMEM;
			break;
		}
		img->chain = n;
		err->generation = g;
		r = gen_file_open(set_fd, g, &gf, &err->what);
		if (r < 0)
			break;
		img->chain[img->n_chain++] = gf;
		g = (gf->hdr.flags & GEN_FULL) ? 0 : gf->hdr.parent;
	}
	if (r < 0) {
		store_image_close(img);
		return r;
	}
	gen_file_info(img->chain[0], &img->info);
	*err = (struct store_err){ 0 };
	*ret = img;
	return 0;
}

void store_image_close(struct store_image *img)
{
	if (!img)
		return;
	for (size_t i = 0; i < img->n_chain; i++)
		gen_file_close(img->chain[i]);
	free(img->chain);
	codec_free(img->codec);
	free(img);
}

const struct store_gen_info *store_image_info(const struct store_image *img)
{
	return &img->info;
}

const struct pass_region *store_image_regions(const struct store_image *img, size_t *n)
{
	*n = img->chain[0]->n_regions;
	return img->chain[0]->regions;
}

/* Spans are sorted and each lies in one region (checked at open). */
void store_image_region_pages(const struct store_image *img, uint64_t *data, size_t n)
{
	const struct gen_file *gf = img->chain[0];
	size_t r = 0;

	memset(data, 0, n * sizeof(*data));
	for (uint64_t i = 0; i < gf->ix->n_spans; i++) {
		const struct disk_span *s = &gf->spans[i];

		while (r < gf->n_regions && gf->regions[r].end <= s->start)
			r++;
		if (s->kind == EXT_DATA && r < n)
			data[r] += (s->end - s->start) / PAGE_SIZE_4K;
	}
}

struct read_ctx {
	struct store_image *img;
	uint64_t base;
	uint8_t *buf;
};

static int read_piece(void *ud, uint64_t start, uint64_t end, struct gen_file *gf,
		      const struct disk_span *span)
{
	struct read_ctx *c = ud;
	uint8_t *dst = c->buf + (start - c->base);
	int r;

	if (!gf) {
		memset(dst, 0, end - start);
		return 0;
	}
	for (uint64_t a = start; a < end;) {
		uint64_t page = a & ~(PAGE_SIZE_4K - 1), n = MIN(end, page + PAGE_SIZE_4K) - a;
		const uint8_t *p = image_page(c->img, gf, span, a, &r);

		if (!p)
			return r;
		memcpy(dst, p + (a - page), n);
		dst += n;
		a += n;
	}
	return 0;
}

int store_image_read(struct store_image *img, uint64_t addr, uint64_t len, void *buf)
{
	struct read_ctx c = { img, addr, buf };

	if (addr + len < addr)
		return -EINVAL;
	return len ? image_resolve(img, addr, addr + len, read_piece, &c) : 0;
}

struct walk_piece {
	uint64_t start, end;
	size_t level;                 /* chain index of the file holding it */
	const struct disk_span *span; /* data: its span */
};

struct walk_ctx {
	store_walk_fn fn;
	void *ud;
	bool decode;
	struct store_image *img;
	struct walk_piece *v; /* decode: the data pieces, gathered */
	size_t n, cap;
	int err;
};

static size_t level_of(struct store_image *img, const struct gen_file *gf)
{
	size_t l = 0;

	while (l < img->n_chain && img->chain[l] != gf)
		l++;
	return l;
}

static int walk_piece(void *ud, uint64_t start, uint64_t end, struct gen_file *gf,
		      const struct disk_span *span)
{
	struct walk_ctx *c = ud;

	if (!c->decode)
		return c->fn(c->ud, start, end - start, gf != NULL, NULL);
	if (!gf)
		return 0; /* decoding: data pieces only */
	if (c->n == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 1024;
		struct walk_piece *n = reallocarray(c->v, ncap, sizeof(*n));

		if (!n)
			return -ENOMEM;
		c->v = n;
		c->cap = ncap;
	}
	c->v[c->n++] = (struct walk_piece){ start, end, level_of(c->img, gf), span };
	return 0;
}

static int cmp_piece(const void *a, const void *b)
{
	const struct walk_piece *x = a, *y = b;

	if (x->level != y->level)
		return x->level < y->level ? -1 : 1;
	if (x->span->chunk != y->span->chunk)
		return x->span->chunk < y->span->chunk ? -1 : 1;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* The data pieces chunk by chunk: each chunk is decoded once. */
static int walk_data(struct walk_ctx *c)
{
	int r = 0;

	qsort(c->v, c->n, sizeof(*c->v), cmp_piece);
	for (size_t i = 0; r == 0 && i < c->n; i++) {
		const struct walk_piece *w = &c->v[i];
		struct gen_file *gf = c->img->chain[w->level];

		for (uint64_t a = w->start; r == 0 && a < w->end; a += PAGE_SIZE_4K) {
			const uint8_t *p = image_page(c->img, gf, w->span, a, &r);

			if (p)
				r = c->fn(c->ud, a, PAGE_SIZE_4K, true, p);
		}
	}
	return r;
}

int store_image_walk(struct store_image *img, uint64_t start, uint64_t end, bool decode,
		     store_walk_fn fn, void *ud)
{
	struct walk_ctx c = { .fn = fn, .ud = ud, .decode = decode, .img = img };
	int r;

	if (((start | end) & (PAGE_SIZE_4K - 1)) || end < start)
		return -EINVAL;
	r = end > start ? image_resolve(img, start, end, walk_piece, &c) : 0;
	if (r == 0 && decode)
		r = walk_data(&c);
	free(c.v);
	return r;
}
