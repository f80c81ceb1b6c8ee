// SPDX-License-Identifier: GPL-2.0-only
/*
 * Damaged and hostile generation files, with the address space limited so
 * that a huge allocation would fail the test instead of passing unseen:
 *   - a flipped byte in a raw page, in a page sum, in a zstd payload or in
 *     a chunk header is reported by verify with its region and page, and a
 *     read of that page fails while the rest still reads
 *   - truncated files, files of garbage, oversized counts and lengths
 *     (with their checksums recomputed so only the bounds checks can catch
 *     them), loops in the parent chain: rejected with -EBADMSG
 *   - a flipped byte in a section's payload or record: verify names the
 *     section, reading it fails, the pages still read
 *   - hostile section tables (count, length, overlap, names): -EBADMSG
 *   - random bit flips anywhere: either rejected, or content still exact
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "harness.h"
#include "pagegen.h"
#include "store-testlib.h"
#include "basic/util.h"
#include "store/format.h"

#define R1 TL_RANDOM_WINDOW /* every chunk raw */
#define R2 TL_TEXT_WINDOW   /* every chunk zstd */
#define ANY_PAGE 1          /* flip_expect: any page of the chunk will do */

static char *scratch, *dir, *gen1;
static uint8_t *orig;
static size_t orig_len;
static struct store *st;
static struct tl_model model;

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat sb;
	int fd = open(path, O_RDONLY);
	uint8_t *buf;

	if (fd < 0 || fstat(fd, &sb) < 0)
		return NULL;
	buf = malloc((size_t)sb.st_size + 1);
	*len = (size_t)read(fd, buf, (size_t)sb.st_size);
	close(fd);
	return buf;
}

static void spit(const uint8_t *buf, size_t len)
{
	int fd = open(gen1, O_WRONLY | O_TRUNC);

	CHECK(fd >= 0 && write(fd, buf, len) == (ssize_t)len, "rewrite");
	close(fd);
}

/* Chunk i's header in a file image. */
static struct disk_chunk *chunk_at(uint8_t *buf, size_t len, uint32_t i, uint64_t *off)
{
	struct disk_footer *f = (void *)(buf + len - sizeof(*f));
	struct disk_index *ix = (void *)(buf + f->index_off);
	uint64_t *offs = (uint64_t *)(ix + 1);

	*off = offs[i];
	return (void *)(buf + offs[i]);
}

static struct disk_index *index_of(uint8_t *buf, size_t len)
{
	struct disk_footer *f = (void *)(buf + len - sizeof(*f));

	return (void *)(buf + f->index_off);
}

static struct disk_section_ref *sections_of(uint8_t *buf, size_t len)
{
	struct disk_index *ix = index_of(buf, len);

	return (void *)((uint64_t *)(ix + 1) + ix->n_chunks);
}

static struct disk_span *spans_of(uint8_t *buf, size_t len)
{
	return (void *)(sections_of(buf, len) + index_of(buf, len)->n_sections);
}

static void fix_index_sum(uint8_t *buf, size_t len)
{
	struct disk_footer *f = (void *)(buf + len - sizeof(*f));

	f->index_sum = XXH3_64bits(buf + f->index_off, f->index_len);
}

static void fix_meta(struct disk_chunk *h)
{
	h->meta_sum = chunk_meta_sum(h, (struct ext *)(h + 1),
				     (uint64_t *)((struct ext *)(h + 1) + h->n_ext));
}

/* First chunk with the wanted encoding. */
static uint32_t find_chunk(uint8_t *buf, size_t len, uint32_t encoding)
{
	uint32_t n = index_of(buf, len)->n_chunks;
	uint64_t off;

	for (uint32_t i = 0; i < n; i++)
		if (chunk_at(buf, len, i, &off)->encoding == encoding)
			return i;
	return UINT32_MAX;
}

/* Address of data page k of a chunk. */
static uint64_t data_addr(const struct disk_chunk *h, uint32_t k)
{
	const struct ext *e = (const void *)(h + 1);

	for (uint32_t i = 0; i < h->n_ext; i++) {
		if (e[i].kind != EXT_DATA)
			continue;
		if (k < e[i].pages)
			return e[i].addr + k * TL_PG;
		k -= e[i].pages;
	}
	return 0;
}

struct reports {
	int n;
	struct store_bad first;
};

static void on_bad(void *ud, const struct store_bad *b)
{
	struct reports *r = ud;

	if (!r->n++)
		r->first = *b;
}

static struct reports run_verify(void)
{
	struct reports rep = { 0 };
	struct store_image *img;

	if (store_image_open(st, "c", 1, &img) == 0) {
		uint64_t n_bad = 0;
		int r = store_image_verify(img, on_bad, &rep, NULL, &n_bad);

		CHECK(r == (rep.n ? -EBADMSG : 0) && n_bad == (uint64_t)rep.n, "verify %d", r);
		store_image_close(img);
	} else {
		rep.n = -1;
	}
	return rep;
}

static int read_page(uint64_t addr)
{
	struct store_image *img;
	uint8_t buf[TL_PG], want[TL_PG];
	int r = store_image_open(st, "c", 1, &img);

	if (r == 0) {
		r = store_image_read(img, addr, TL_PG, buf);
		if (tl_model_page(&model, 0, addr, want) <= 0)
			memset(want, 0, TL_PG);
		if (r == 0 && memcmp(buf, want, TL_PG))
			r = -EILSEQ; /* wrong content delivered: the worst outcome */
		store_image_close(img);
	}
	return r;
}

/* An export of the damaged image fails naming the region and the page, and
 * leaves no file behind (not even the other region's, complete). */
static void export_expect(uint64_t addr, uint64_t region, bool exact, const char *label)
{
	struct store_image *img;
	struct store_bad b;

	CHECK(store_image_open(st, "c", 1, &img) == 0, "%s: open", label);
	CHECK(store_image_export(img, scratch, NULL, &b) == -EBADMSG, "%s: export", label);
	CHECK(b.region_start == region && b.region_end == region + 64 * TL_PG &&
	      (exact ? b.addr == addr : b.addr - region < 64 * TL_PG) && b.generation == 1 && b.what, "%s: export failed at %#llx (region %#llx), want %#llx",
	      label, (unsigned long long)b.addr, (unsigned long long)b.region_start,
	      (unsigned long long)addr);
	CHECK(tl_count_files(scratch, "") == 0, "%s: export left %d files", label,
	      tl_count_files(scratch, ""));
	store_image_close(img);
	tl_rmrf(scratch);
}

/* Flip one byte at off, expect verify to name addr in region, then undo. */
static void flip_expect(uint64_t off, uint64_t addr, uint64_t region, const char *what,
			const char *label)
{
	uint8_t *b = malloc(orig_len);
	struct reports rep;

	memcpy(b, orig, orig_len);
	b[off] ^= 0x10;
	spit(b, orig_len);
	rep = run_verify();
	CHECK(rep.n >= 1, "%s: not caught", label);
	if (addr == ANY_PAGE) /* zstd: where decoding breaks down depends on the bit */
		addr = rep.first.addr >= region && rep.first.addr < region + 64 * TL_PG ?
			rep.first.addr : 0;
	CHECK(rep.first.addr == addr && rep.first.region_start == region, "%s: named %#llx in %#llx",
	      label, (unsigned long long)rep.first.addr, (unsigned long long)rep.first.region_start);
	CHECK(!strncmp(rep.first.what, what, strlen(what)), "%s: what '%s'", label, rep.first.what);
	CHECK(read_page(addr) == -EBADMSG, "%s: damaged page read", label);
	/* a raw page names itself; in a chunk whose metadata is damaged the
	 * export stops at the chunk's first page */
	export_expect(addr, region, !strcmp(label, "raw page"), label);
	spit(orig, orig_len);
	free(b);
}

static void test_flips(void)
{
	uint64_t off, base;
	uint32_t raw = find_chunk(orig, orig_len, ENC_RAW), z = find_chunk(orig, orig_len, ENC_ZSTD);
	struct disk_chunk *h;

	CHECK(raw != UINT32_MAX && z != UINT32_MAX, "need a raw and a zstd chunk");
	/* a byte of data page 2 of a raw chunk */
	h = chunk_at(orig, orig_len, raw, &off);
	base = off + sizeof(*h) + h->n_ext * sizeof(struct ext) + h->n_data_pages * 8ULL;
	flip_expect(base + 2 * TL_PG + 77, data_addr(h, 2), R1, "page checksum", "raw page");
	/* the stored sum of data page 1 of a zstd chunk */
	h = chunk_at(orig, orig_len, z, &off);
	base = off + sizeof(*h) + h->n_ext * sizeof(struct ext);
	flip_expect(base + 8 + 3, data_addr(h, 1), R2, "page checksum", "page sum");
	/* the middle of the zstd frame */
	flip_expect(base + h->n_data_pages * 8ULL + h->payload_len / 2, ANY_PAGE, R2, "",
		    "zstd payload");
	/* a chunk header: the chunk is reported, unplaced */
	uint8_t *b = malloc(orig_len);
	memcpy(b, orig, orig_len);
	chunk_at(b, orig_len, raw, &off)->n_ext ^= 2;
	spit(b, orig_len);
	struct reports rep = run_verify();
	CHECK(rep.n == 1 && rep.first.addr == UINT64_MAX && !strcmp(rep.first.what, "chunk header"),
	      "header flip: %d reports", rep.n);
	CHECK(read_page(data_addr(chunk_at(orig, orig_len, raw, &off), 0)) == -EBADMSG, "read");
	CHECK(read_page(data_addr(chunk_at(orig, orig_len, z, &off), 0)) == 0, "other chunk read");
	spit(orig, orig_len);
	free(b);
}

/* A byte of section k's record flipped: verify names the section, reading it
 * fails, the other sections and every page still read. */
static void flip_section(unsigned k, bool header)
{
	uint8_t *b = malloc(orig_len);
	struct disk_section_ref *ref = &sections_of(orig, orig_len)[k];
	struct store_image *img;
	void *data = NULL;
	size_t len;

	memcpy(b, orig, orig_len);
	b[ref->offset + (header ? 8 : sizeof(struct disk_section) + ref->length / 2)] ^= 4;
	spit(b, orig_len);
	struct reports rep = run_verify();
	CHECK(rep.n == 1 && !strcmp(rep.first.what, "section checksum") && rep.first.section &&
	      rep.first.addr == UINT64_MAX && rep.first.file_offset == ref->offset,
	      "section %u flip: %d reports, '%s'", k, rep.n, rep.n > 0 ? rep.first.what : "");
	CHECK(store_image_open(st, "c", 1, &img) == 0, "open");
	CHECK(store_image_read_section(img, ref->name, 0, &data, &len) == -EBADMSG,
	      "damaged section %s read", ref->name);
	for (unsigned i = 0; i < index_of(orig, orig_len)->n_sections; i++) {
		if (i == k)
			continue;
		CHECK(store_image_read_section(img, sections_of(orig, orig_len)[i].name, 0, &data,
					       &len) == 0, "section %u hurt", i);
		free(data);
	}
	store_image_close(img);
	CHECK(read_page(R1) == 0 && read_page(R2 + 5 * TL_PG) == 0, "pages hurt by a section");
	spit(orig, orig_len);
	free(b);
}

static void test_section_flips(void)
{
	struct disk_section_ref *ref = sections_of(orig, orig_len);

	CHECK(index_of(orig, orig_len)->n_sections == 3 && ref[1].length > 0, "setup: sections");
	flip_section(1, false);
	flip_section(1, true);
	flip_section(2, true);
}

/* Each mutation is applied to a fresh copy; sums are recomputed after it. */
static void hostile(const char *label, void (*mutate)(uint8_t *b, size_t len))
{
	uint8_t *b = malloc(orig_len);
	struct store_image *img;
	int r;

	memcpy(b, orig, orig_len);
	mutate(b, orig_len);
	spit(b, orig_len);
	r = store_image_open(st, "c", 1, &img);
	if (r == 0) { /* some damage only shows when the chunk is read */
		uint64_t n_bad = 0;

		r = store_image_verify(img, NULL, NULL, NULL, &n_bad);
		store_image_close(img);
	}
	CHECK(r == -EBADMSG, "%s: %d", label, r);
	spit(orig, orig_len);
	free(b);
}

static void m_index_len(uint8_t *b, size_t len)
{
	((struct disk_footer *)(b + len - sizeof(struct disk_footer)))->index_len = 1ULL << 40;
}
static void m_spans(uint8_t *b, size_t len)
{
	index_of(b, len)->n_spans = 1ULL << 40;
	fix_index_sum(b, len);
}
static void m_regions(uint8_t *b, size_t len)
{
	index_of(b, len)->n_regions = UINT32_MAX;
	fix_index_sum(b, len);
}
static void m_chunks(uint8_t *b, size_t len)
{
	index_of(b, len)->n_chunks = UINT32_MAX;
	fix_index_sum(b, len);
}
static void m_strings(uint8_t *b, size_t len)
{
	index_of(b, len)->strings_len = UINT32_MAX;
	fix_index_sum(b, len);
}
static void m_payload(uint8_t *b, size_t len)
{
	uint64_t off;
	struct disk_chunk *h = chunk_at(b, len, 0, &off);

	h->payload_len = 0xfffffff0u;
	fix_meta(h);
}
static void m_n_ext(uint8_t *b, size_t len)
{
	uint64_t off;
	struct disk_chunk *h = chunk_at(b, len, 1, &off);

	h->n_ext = CODEC_MAX_PAGES;
	fix_meta(h);
}
static void m_span_chunk(uint8_t *b, size_t len)
{
	struct disk_index *ix = index_of(b, len);
	struct disk_span *s = spans_of(b, len);

	for (uint64_t i = 0; i < ix->n_spans; i++)
		if (s[i].kind == EXT_DATA)
			s[i].chunk = ix->n_chunks;
	fix_index_sum(b, len);
}
static void m_path(uint8_t *b, size_t len)
{
	struct disk_index *ix = index_of(b, len);
	struct disk_region *r = (void *)(spans_of(b, len) + ix->n_spans);

	r[1].path_len = 0x7fffffff;
	fix_index_sum(b, len);
}
static void m_section_count(uint8_t *b, size_t len)
{
	index_of(b, len)->n_sections = SECTION_MAX_COUNT + 1;
	fix_index_sum(b, len);
}
static void m_section_length(uint8_t *b, size_t len)
{
	sections_of(b, len)[1].length = 1ULL << 40;
	fix_index_sum(b, len);
}
/* A section said to start where a chunk does. */
static void m_section_overlap(uint8_t *b, size_t len)
{
	uint64_t off;

	chunk_at(b, len, 1, &off);
	sections_of(b, len)[0].offset = off;
	fix_index_sum(b, len);
}
static void m_section_name(uint8_t *b, size_t len)
{
	memcpy(sections_of(b, len)[2].name, "Bad/Name", 9);
	fix_index_sum(b, len);
}
static void m_section_twice(uint8_t *b, size_t len)
{
	struct disk_section_ref *s = sections_of(b, len);

	memcpy(s[2].name, s[0].name, sizeof(s[0].name));
	fix_index_sum(b, len);
}
/* The index and the record disagree (both sums right). */
static void m_section_record(uint8_t *b, size_t len)
{
	struct disk_section *h = (void *)(b + sections_of(b, len)[1].offset);

	h->type++;
	h->header_sum = XXH3_64bits(h, offsetof(struct disk_section, header_sum));
}

static void m_parent_loop(uint8_t *b, size_t len)
{
	struct disk_header *h = (void *)b;

	h->parent = h->generation;
	h->sum = XXH3_64bits(h, offsetof(struct disk_header, sum));
}


static void test_hostile(void)
{
	hostile("index length", m_index_len);
	hostile("span count", m_spans);
	hostile("region count", m_regions);
	hostile("chunk count", m_chunks);
	hostile("string pool", m_strings);
	hostile("payload length", m_payload);
	hostile("extent count", m_n_ext);
	hostile("span chunk", m_span_chunk);
	hostile("path length", m_path);
	hostile("parent loop", m_parent_loop);
	hostile("section count", m_section_count);
	hostile("section length", m_section_length);
	hostile("section over a chunk", m_section_overlap);
	hostile("section name", m_section_name);
	hostile("section name twice", m_section_twice);
	hostile("section record", m_section_record);
}

static void test_truncated(void)
{
	struct store_gen_info *v;
	size_t n;

	for (size_t len = 0; len < orig_len; len += len < 256 ? 1 : 509) {
		struct store_image *img;
		int r;

		spit(orig, len);
		r = store_image_open(st, "c", 1, &img);
		CHECK(r == -EBADMSG, "truncated to %zu: %d", len, r);
		if (r == 0)
			store_image_close(img);
		CHECK(store_list_generations(st, "c", &v, &n) == 0 && n == 1 && v[0].error == -EBADMSG,
		      "listing of a truncated file");
		free(v);
	}
	spit(orig, orig_len);
}

/* Why a file is refused is said, naming the generation at fault. */
static void open_expect(int want, const char *what, const char *label)
{
	struct store_image *img = NULL;
	struct store_gen_info *v = NULL;
	struct store_err e;
	size_t n = 0;
	int r = store_image_open_err(st, "c", 0, &img, &e);

	CHECK(r == want && e.generation == 1 && e.what && strstr(e.what, what),
	      "%s: %d, generation %llu: %s", label, r, (unsigned long long)e.generation,
	      e.what ? e.what : "(no reason)");
	if (r == 0)
		store_image_close(img);
	/* listing reads less of the file: it may find another fault first */
	CHECK(store_list_generations(st, "c", &v, &n) == 0 && n == 1 && v[0].error == want &&
	      v[0].error_what, "%s: listing says %s", label,
	      n == 1 && v[0].error_what ? v[0].error_what : "nothing");
	free(v);
}

static void test_reasons(void)
{
	uint8_t *b = malloc(orig_len);
	struct disk_header *h = (struct disk_header *)b;

	spit(orig, 100);
	open_expect(-EBADMSG, "truncated", "truncated to 100 bytes");
	spit(orig, orig_len - 3);
	open_expect(-EBADMSG, "truncated", "3 bytes short");
	spit(orig, orig_len - 8);
	open_expect(-EBADMSG, "no footer", "8 bytes short");
	memcpy(b, orig, orig_len);
	h->version ^= 0x40; /* damage that lands on the version field */
	spit(b, orig_len);
	open_expect(-EBADMSG, "header checksum mismatch", "flipped version");
	h->sum = XXH3_64bits(h, offsetof(struct disk_header, sum));
	spit(b, orig_len);
	open_expect(-EPROTONOSUPPORT, "another format version", "another version");
	memcpy(b, orig, orig_len);
	index_of(b, orig_len)->n_regions ^= 1;
	spit(b, orig_len);
	open_expect(-EBADMSG, "index checksum mismatch", "index flip");
	spit(orig, orig_len);
	free(b);
}

/* Garbage under a generation's name, with and without a valid header. */
static void test_garbage(void)
{
	static const size_t sizes[] = { 1, 64, 200, 4096, 65536 };
	char path[600];
	uint64_t seed = 5;

	snprintf(path, sizeof(path), "%s/images/c/gen-00000002.img", dir);
	for (size_t i = 0; i < ARRAY_SIZE(sizes) * 2; i++) {
		size_t len = sizes[i / 2];
		uint8_t *b = malloc(len);
		struct store_image *img;
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		for (size_t k = 0; k < len; k++)
			b[k] = (uint8_t)pg_rand(&seed);
		if (i % 2 && len >= sizeof(struct disk_header)) { /* header of gen 2 over garbage */
			memcpy(b, orig, sizeof(struct disk_header));
			((struct disk_header *)b)->generation = 2;
			((struct disk_header *)b)->sum = XXH3_64bits(b, offsetof(struct disk_header, sum));
		}
		CHECK(write(fd, b, len) == (ssize_t)len, "write");
		close(fd);
		CHECK(store_image_open(st, "c", 2, &img) == -EBADMSG, "garbage of %zu accepted", len);
		CHECK(store_image_open(st, "c", 1, &img) == 0, "gen 1 hurt by garbage");
		store_image_close(img);
		free(b);
	}
	unlink(path);
}

/* Any single bit flipped: rejected, or what is served is still exact. */
static void test_fuzz(void)
{
	uint8_t *b = malloc(orig_len);
	uint64_t seed = 77;
	int rejected = 0, accepted = 0;

	for (int i = 0; i < 300; i++) {
		struct store_image *img;
		size_t off = pg_rand(&seed) % orig_len;

		memcpy(b, orig, orig_len);
		b[off] ^= (uint8_t)(1u << (pg_rand(&seed) % 8));
		spit(b, orig_len);
		if (store_image_open(st, "c", 1, &img) < 0) {
			rejected++;
			continue;
		}
		int r = store_image_verify(img, NULL, NULL, NULL, NULL);
		store_image_close(img);
		if (r < 0) {
			CHECK(r == -EBADMSG, "verify gave %d", r);
			rejected++;
			continue;
		}
		accepted++; /* padding: content must be untouched */
		CHECK(tl_check_gen(st, "c", &model, 0, scratch) == 0, "flip at %zu served wrong", off);
	}
	printf("fuzz: 300 single-bit flips, %d rejected, %d harmless\n", rejected, accepted);
	spit(orig, orig_len);
	free(b);
}

static void setup(void)
{
	struct tl_plan p = { .full = true, .n_regions = 2, .chunk_pages = 8, .threads = 1,
			     .n_passes = 1, .sections = 3 };
	uint64_t g;

	dir = tl_tmpdir("corrupt");
	CHECK(store_open(dir, &st) == 0, "open");
	p.regions[0] = (struct range){ R1, R1 + 64 * TL_PG };
	p.regions[1] = (struct range){ R2, R2 + 64 * TL_PG };
	p.passes[0].seq = 1;
	range_set_add(&p.passes[0].data, R1, R1 + 64 * TL_PG);
	range_set_add(&p.passes[0].data, R2, R2 + 64 * TL_PG);
	CHECK(tl_write_gen(st, "c", &p, 0, &model, &g) == 0, "write");
	tl_plan_free(&p);
	CHECK(asprintf(&gen1, "%s/images/c/gen-00000001.img", dir) > 0, "path");
	orig = slurp(gen1, &orig_len);
	CHECK(orig && run_verify().n == 0, "clean file does not verify");
}

int main(void)
{
	struct rlimit rl = { 512ULL << 20, 512ULL << 20 };

	/* A huge allocation from a hostile length now fails loudly (-ENOMEM).
	   (Not under ASan, whose shadow memory needs the address space.) */
#ifndef __SANITIZE_ADDRESS__
	setrlimit(RLIMIT_AS, &rl);
#else
	(void)rl;
#endif
	scratch = tl_tmpdir("export");
	rmdir(scratch);
	setup();
	test_flips();
	test_section_flips();
	test_hostile();
	test_truncated();
	test_reasons();
	test_garbage();
	test_fuzz();
	store_close(st);
	tl_rmrf(dir);
	tl_rmrf(scratch);
	tl_model_free(&model);
	if (test_failures)
		fprintf(stderr, "%d check(s) failed\n", test_failures);
	return test_failures ? 1 : 0;
}
