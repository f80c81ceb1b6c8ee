// SPDX-License-Identifier: GPL-2.0-only
/*
 * Verify: every chunk of every file of the chain is read back and every sum
 * checked (chunk metadata, payload, each page), every data span is checked
 * to point at data pages its chunk really holds, and every section is read
 * back against its sums.  Each problem is
 * reported with the generation, region and page it concerns.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

#include "basic/sum.h"
#include "basic/util.h"

struct verify_ctx {
	struct store_image *img;
	void (*bad)(void *userdata, const struct store_bad *b);
	void *userdata;
	const struct store_progress *progress;
	uint64_t n_bad, done, total;
};

static void report_bad(struct verify_ctx *v, struct gen_file *gf, uint32_t idx, uint64_t addr,
		       const char *what)
{
	struct store_bad b = { .generation = gf->hdr.generation, .addr = addr,
			       .file_offset = gf->chunk_off[idx], .what = what };
	ssize_t reg = addr == UINT64_MAX ? -1 : gen_file_region(gf, addr);

	if (reg >= 0) {
		b.region_start = gf->regions[reg].start;
		b.region_end = gf->regions[reg].end;
	}
	v->n_bad++;
	if (v->bad)
		v->bad(v->userdata, &b);
}

/*
 * Decode what the payload yields and check each page against its sum, so
 * that damage to a page, to its stored sum or to the payload names the
 * pages concerned.  Returns how many problems were reported.
 */
static uint64_t check_pages(struct verify_ctx *v, struct gen_file *gf, uint32_t idx)
{
	const struct enc_chunk *ch = &gf->ch;
	uint32_t n = codec_salvage(v->img->codec, ch, gf->pages);
	uint64_t found = 0;

	for (uint32_t i = 0; i < n; i++) {
		if (XXH3_64bits(gf->pages + (size_t)i * PAGE_SIZE_4K, PAGE_SIZE_4K) == ch->page_sums[i])
			continue;
		report_bad(v, gf, idx, chunk_data_page_addr(ch, i), "page checksum");
		found++;
	}
	if (n < ch->n_data_pages) {
		report_bad(v, gf, idx, chunk_data_page_addr(ch, n),
			   "compressed payload: this page and the rest of its chunk unreadable");
		found++;
	}
	return found;
}

static int verify_chunk(struct verify_ctx *v, struct gen_file *gf, uint32_t idx)
{
	const struct enc_chunk *ch = &gf->ch;
	bool meta_bad = false;
	uint64_t found;
	int r = gen_file_load_chunk(gf, idx, &meta_bad);

	if (r == -EBADMSG) {
		report_bad(v, gf, idx, UINT64_MAX, "chunk header");
		return 0;
	}
	if (r == 0)
		r = chunk_grow((void **)&gf->pages, &gf->pages_cap,
			       (size_t)ch->n_data_pages * PAGE_SIZE_4K);
	if (r < 0)
		return r;
	found = check_pages(v, gf, idx);
	if (!found && XXH3_64bits(ch->payload, ch->payload_len) != ch->payload_sum)
		report_bad(v, gf, idx, UINT64_MAX, "payload checksum");
	else if (!found && meta_bad)
		report_bad(v, gf, idx, UINT64_MAX, "chunk metadata checksum");
	gf->decoded = false; /* pages were decoded unchecked: not for readers */
	v->done += ch->n_data_pages;
	if (v->progress && v->progress->fn)
		v->progress->fn(v->progress->userdata, v->done, v->total);
	return 0;
}

static int cmp_span_chunk(const void *a, const void *b, void *ud)
{
	const struct disk_span *s = ud, *x = &s[*(const uint64_t *)a], *y = &s[*(const uint64_t *)b];

	if (x->chunk != y->chunk)
		return x->chunk < y->chunk ? -1 : 1;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* Data spans grouped by chunk, so each chunk is read once. */
static uint64_t *spans_by_chunk(const struct gen_file *gf, uint64_t *n)
{
	uint64_t *v = malloc((gf->ix->n_spans + 1) * sizeof(*v));

	*n = 0;
	if (!v)
		return NULL;
	for (uint64_t i = 0; i < gf->ix->n_spans; i++)
		if (gf->spans[i].kind == EXT_DATA)
			v[(*n)++] = i;
	qsort_r(v, *n, sizeof(*v), cmp_span_chunk, (void *)gf->spans);
	return v;
}

static void check_span(struct verify_ctx *v, struct gen_file *gf, const struct disk_span *s)
{
	if (gf->cached != s->chunk)
		return; /* its chunk's header is bad: reported already */
	for (uint64_t a = s->start; a < s->end; a += PAGE_SIZE_4K)
		if (gen_file_chunk_page(gf, a) < 0)
			report_bad(v, gf, s->chunk, a, "index names a page its chunk does not hold");
}

/* Every section: its record must match the index, its payload its sum. */
static int verify_sections(struct verify_ctx *v, struct gen_file *gf)
{
	for (uint32_t i = 0; i < gf->ix->n_sections; i++) {
		const struct disk_section_ref *ref = &gf->sections[i];
		uint8_t *buf;
		int r = gen_file_read_section(gf, i, &buf);

		free(buf);
		if (r == -EBADMSG) {
			struct store_bad b = { .generation = gf->hdr.generation, .addr = UINT64_MAX,
					       .file_offset = ref->offset, .what = "section checksum",
					       .section = ref->name };
			v->n_bad++;
			if (v->bad)
				v->bad(v->userdata, &b);
		} else if (r < 0) {
			return r;
		}
	}
	return 0;
}

static int verify_file(struct verify_ctx *v, struct gen_file *gf)
{
	uint64_t n_data = 0, j = 0;
	_cleanup_free_ uint64_t *by_chunk = spans_by_chunk(gf, &n_data);

	if (!by_chunk)
		return -ENOMEM;
	for (uint32_t idx = 0; idx < gf->ix->n_chunks; idx++) {
		int r = verify_chunk(v, gf, idx);

		if (r < 0)
			return r;
		for (; j < n_data && gf->spans[by_chunk[j]].chunk == idx; j++)
			check_span(v, gf, &gf->spans[by_chunk[j]]);
	}
	return verify_sections(v, gf);
}

int store_image_verify(struct store_image *img,
		       void (*bad)(void *userdata, const struct store_bad *b), void *userdata,
		       const struct store_progress *progress, uint64_t *n_bad)
{
	struct verify_ctx v = { .img = img, .bad = bad, .userdata = userdata, .progress = progress };
	int r = 0;

	for (size_t i = 0; i < img->n_chain; i++)
		v.total += img->chain[i]->ix->data_pages;
	for (size_t i = 0; r == 0 && i < img->n_chain; i++)
		r = verify_file(&v, img->chain[i]);
	if (n_bad)
		*n_bad = v.n_bad;
	if (r < 0)
		return r;
	return v.n_bad ? -EBADMSG : 0;
}
