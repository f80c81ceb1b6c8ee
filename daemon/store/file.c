// SPDX-License-Identifier: GPL-2.0-only
/*
 * Reading one generation file.  Nothing in it is trusted: every count is
 * checked against the file size (and STORE_INDEX_MAX) before anything is
 * allocated, every table against the others, every byte against a sum.
 * Listing a set's generations peeks at each file's header here too.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "basic/sum.h"
#include "basic/util.h"
#include "track/regions.h"

/* Fail with -EBADMSG (or err) and say why: the reasons are static strings. */
static int bad(const char **what, const char *why)
{
	if (what)
		*what = why;
	return -EBADMSG;
}

int store_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t r = pread(fd, buf, len, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EBADMSG; /* shorter than its own tables say */
		buf = (uint8_t *)buf + r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

/*
 * The sum before the version: a damaged header is damaged, and only an
 * intact header of another version is "another format" (-EPROTONOSUPPORT).
 */
static int check_header(const struct disk_header *h, uint64_t generation, const char **what)
{
	if (memcmp(h->magic, STORE_HEADER_MAGIC, sizeof(h->magic)))
		return bad(what, "not a generation file (bad magic)");
	if (XXH3_64bits(h, offsetof(struct disk_header, sum)) != h->sum)
		return bad(what, "header checksum mismatch");
	if (h->version < STORE_VERSION_MIN || h->version > STORE_VERSION) {
		bad(what, "written in another format version");
		return -EPROTONOSUPPORT;
	}
	if (h->header_size != sizeof(*h) || h->page_size != PAGE_SIZE_4K ||
	    (h->flags & ~GEN_FULL) || h->generation != generation || h->parent >= generation)
		return bad(what, "header fields out of range");
	return 0;
}

/* Header and footer: where the index section is, checked against the size. */
static int read_frame(int fd, uint64_t generation, struct disk_header *h,
		      struct disk_footer *f, uint64_t *size, const char **what)
{
	uint64_t min = sizeof(*h) + sizeof(struct disk_index) + sizeof(*f);
	struct stat stb;
	int r;

	if (fstat(fd, &stb) < 0)
		return -errno;
	*size = (uint64_t)stb.st_size;
	if (!S_ISREG(stb.st_mode))
		return bad(what, "not a regular file");
	if (*size < min)
		return bad(what, "truncated: shorter than a header, an index and a footer");
	if (*size % 8)
		return bad(what, "truncated: its size is not a multiple of 8 bytes");
	r = store_pread_full(fd, h, sizeof(*h), 0);
	if (r == 0)
		r = check_header(h, generation, what);
	if (r == 0)
		r = store_pread_full(fd, f, sizeof(*f), *size - sizeof(*f));
	if (r < 0)
		return r == -EBADMSG && what && !*what ? bad(what, "truncated") : r;
	if (memcmp(f->magic, STORE_FOOTER_MAGIC, sizeof(f->magic)))
		return bad(what, "no footer: truncated or not committed");
	if (f->index_off < sizeof(*h) || f->index_off % 8 || f->index_off > *size - sizeof(*f) ||
	    f->index_len != *size - sizeof(*f) - f->index_off ||
	    f->index_len < sizeof(struct disk_index) || f->index_len > STORE_INDEX_MAX)
		return bad(what, "footer does not match the file's size");
	return 0;
}

/* Offset of the region table in the index section, if the counts add up. */
static int index_layout(const struct disk_index *ix, uint64_t generation, uint64_t len,
			uint64_t *regions_at, const char **what)
{
	uint64_t at;

	if (ix->magic != STORE_INDEX_MAGIC || ix->generation != generation ||
	    ix->n_spans > len / sizeof(struct disk_span) || ix->n_sections > SECTION_MAX_COUNT ||
	    ix->reserved)
		return bad(what, "index header damaged");
	at = sizeof(*ix) + (uint64_t)ix->n_chunks * 8 +
	     (uint64_t)ix->n_sections * sizeof(struct disk_section_ref) +
	     ix->n_spans * sizeof(struct disk_span);
	if (pad8(at + (uint64_t)ix->n_regions * sizeof(struct disk_region) + ix->strings_len) != len)
		return bad(what, "index tables do not add up to the index size");
	*regions_at = at;
	return 0;
}

/*
 * Never blocks: a FIFO (or a device) put in the set's place of a
 * generation opens at once with O_NONBLOCK, and read_frame() refuses it as
 * not a regular file.  A symbolic link is not followed.
 */
static int open_gen(int set_fd, uint64_t generation)
{
	char name[GEN_NAME_LEN];
	int fd;

	gen_file_name(name, generation, false);
	fd = openat(set_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	return fd < 0 ? (errno == ELOOP ? -EBADMSG : -errno) : fd;
}

static const char *open_failure(int r)
{
	return r == -EBADMSG ? "a symbolic link" : NULL;
}

int gen_file_peek(int set_fd, uint64_t generation, struct store_gen_info *info)
{
	_cleanup_close_ int fd = open_gen(set_fd, generation);
	_cleanup_free_ struct disk_region *reg = NULL;
	struct disk_header h;
	struct disk_footer f;
	struct disk_index ix;
	uint64_t size, at;
	int r;

	info->error_what = NULL;
	if (fd < 0) {
		info->error_what = open_failure(fd);
		return fd;
	}
	r = read_frame(fd, generation, &h, &f, &size, &info->error_what);
	if (r == 0)
		r = store_pread_full(fd, &ix, sizeof(ix), f.index_off);
	if (r == 0)
		r = index_layout(&ix, generation, f.index_len, &at, &info->error_what);
	if (r < 0)
		return r;
	reg = calloc(ix.n_regions + 1, sizeof(*reg));
	if (!reg)
		return -ENOMEM;
	r = store_pread_full(fd, reg, ix.n_regions * sizeof(*reg), f.index_off + at);
	if (r < 0)
		return r;
	*info = (struct store_gen_info){
		.generation = generation, .parent = h.parent, .full = h.flags & GEN_FULL,
		.created_ns = ix.created_ns, .pid = (pid_t)h.pid, .n_regions = ix.n_regions,
		.n_chunks = ix.n_chunks, .n_sections = ix.n_sections,
		.data_pages = ix.data_pages, .zero_pages = ix.zero_pages,
		.live_data_pages = ix.live_data_pages, .live_zero_pages = ix.live_zero_pages,
		.raw_bytes = ix.data_pages * PAGE_SIZE_4K, .disk_bytes = size,
	};
	for (uint32_t i = 0; i < ix.n_regions; i++)
		if (reg[i].end > reg[i].start) /* not checked here: listing only */
			info->region_bytes += reg[i].end - reg[i].start;
	return 0;
}

int store_list_generations(struct store *st, const char *set,
			   struct store_gen_info **ret, size_t *ret_n)
{
	_cleanup_close_ int set_fd = -1;
	_cleanup_free_ uint64_t *gens = NULL;
	struct store_gen_info *v;
	size_t n;
	int r;

	r = set_dir_open(st, set, false, &set_fd);
	if (r == 0)
		r = set_generations(set_fd, &gens, &n);
	if (r < 0)
		return r;
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		v[i].generation = gens[i];
		v[i].error = gen_file_peek(set_fd, gens[i], &v[i]);
		if (v[i].error == -EBADMSG && !v[i].error_what)
			v[i].error_what = "damaged";
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

void gen_file_info(const struct gen_file *gf, struct store_gen_info *info)
{
	const struct disk_index *ix = gf->ix;

	*info = (struct store_gen_info){
		.generation = gf->hdr.generation, .parent = gf->hdr.parent,
		.full = gf->hdr.flags & GEN_FULL, .created_ns = ix->created_ns,
		.pid = (pid_t)gf->hdr.pid, .n_regions = ix->n_regions, .n_chunks = ix->n_chunks,
		.n_sections = ix->n_sections,
		.data_pages = ix->data_pages, .zero_pages = ix->zero_pages,
		.live_data_pages = ix->live_data_pages, .live_zero_pages = ix->live_zero_pages,
		.raw_bytes = ix->data_pages * PAGE_SIZE_4K, .disk_bytes = gf->size,
	};
	for (size_t i = 0; i < gf->n_regions; i++)
		info->region_bytes += gf->regions[i].end - gf->regions[i].start;
}

static int parse_region(const struct disk_region *d, const char *pool, uint32_t pool_len,
			const struct pass_region *prev, struct pass_region *out)
{
	if (d->start >= d->end || ((d->start | d->end) & (PAGE_SIZE_4K - 1)) ||
	    (prev && d->start < prev->end) || d->kind > VMA_SPECIAL || d->shared > 1 ||
	    d->prot > 7 || d->path_len > STORE_PATH_MAX || d->path_off > pool_len ||
	    d->path_len > pool_len - d->path_off || memchr(pool + d->path_off, 0, d->path_len))
		return -EBADMSG;
	*out = (struct pass_region){
		.start = d->start, .end = d->end, .pgoff = d->pgoff, .ino = d->ino,
		.dev_major = d->dev_major, .dev_minor = d->dev_minor, .prot = d->prot,
		.shared = d->shared, .kind = (enum vma_kind)d->kind, .flags = d->flags,
		.backing = -1, .path = strndup(pool + d->path_off, d->path_len),
	};
	return out->path ? 0 : -ENOMEM;
}

static int parse_regions(struct gen_file *gf, uint64_t at)
{
	const uint8_t *base = (const uint8_t *)gf->index + at;
	uint32_t n = gf->ix->n_regions;
	const char *pool = (const char *)base + (size_t)n * sizeof(struct disk_region);

	gf->regions = calloc(n + 1, sizeof(*gf->regions));
	if (!gf->regions)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		struct disk_region d;
		int r;

		memcpy(&d, base + (size_t)i * sizeof(d), sizeof(d));
		r = parse_region(&d, pool, gf->ix->strings_len, i ? &gf->regions[i - 1] : NULL,
				 &gf->regions[i]);
		if (r < 0)
			return r;
		gf->n_regions++;
	}
	return 0;
}

/* A section entry: a name, a type, a length within the limits. */
static bool section_ref_ok(const struct disk_section_ref *ref)
{
	return ref->type && !ref->flags && ref->length <= SECTION_MAX_BYTES &&
	       memchr(ref->name, 0, sizeof(ref->name)) && section_name_valid(ref->name) &&
	       !(ref->offset % 8);
}

/*
 * Chunk and section records tile [header, index): the first starts right
 * after the header, each next one where the one before ends.  A section's
 * length is known here; a chunk's is checked against the room up to the
 * next record when it is read (chunk.c).
 */
static int check_records(const struct gen_file *gf)
{
	uint32_t nc = gf->ix->n_chunks, ns = gf->ix->n_sections, ci = 0, si = 0;
	uint64_t pos = sizeof(struct disk_header), end = gf->foot.index_off;

	for (uint32_t i = 0; i < ns; i++) {
		if (!section_ref_ok(&gf->sections[i]))
			return -EBADMSG;
		for (uint32_t k = 0; k < i; k++)
			if (!strcmp(gf->sections[k].name, gf->sections[i].name))
				return -EBADMSG;
	}
	while (ci < nc || si < ns) {
		uint64_t c = ci < nc ? gf->chunk_off[ci] : UINT64_MAX;
		uint64_t sec = si < ns ? gf->sections[si].offset : UINT64_MAX;

		if (c == pos) { /* a chunk: at least its header before the next record */
			if (pos % 8 || pos > end || end - pos < sizeof(struct disk_chunk))
				return -EBADMSG;
			pos = MIN(ci + 1 < nc ? gf->chunk_off[ci + 1] : end,
				  si < ns ? sec : end);
			if (pos < c + sizeof(struct disk_chunk))
				return -EBADMSG;
			ci++;
		} else if (sec == pos) {
			uint64_t len = section_record_len(gf->sections[si].length);

			if (pos > end || len > end - pos)
				return -EBADMSG;
			pos += len;
			si++;
		} else {
			return -EBADMSG;
		}
	}
	return pos == end ? 0 : -EBADMSG;
}

/* Spans sorted, disjoint, each inside one region, data ones naming a chunk. */
static int check_spans(const struct gen_file *gf)
{
	size_t r = 0;

	for (uint64_t i = 0; i < gf->ix->n_spans; i++) {
		const struct disk_span *s = &gf->spans[i];

		if (s->start >= s->end || ((s->start | s->end) & (PAGE_SIZE_4K - 1)) ||
		    (i && s->start < gf->spans[i - 1].end))
			return -EBADMSG;
		if (s->kind == EXT_DATA ? s->chunk >= gf->ix->n_chunks
					: s->kind != EXT_ZERO || s->chunk != SPAN_NO_CHUNK)
			return -EBADMSG;
		while (r < gf->n_regions && gf->regions[r].end <= s->start)
			r++;
		if (r == gf->n_regions || s->start < gf->regions[r].start ||
		    s->end > gf->regions[r].end)
			return -EBADMSG;
	}
	return 0;
}

static int load_index(struct gen_file *gf, const char **what)
{
	uint64_t at;
	int r;

	gf->index = malloc(gf->foot.index_len);
	if (!gf->index)
		return -ENOMEM;
	r = store_pread_full(gf->fd, gf->index, gf->foot.index_len, gf->foot.index_off);
	if (r < 0)
		return r;
	if (XXH3_64bits(gf->index, gf->foot.index_len) != gf->foot.index_sum)
		return bad(what, "index checksum mismatch");
	gf->ix = gf->index;
	r = index_layout(gf->ix, gf->hdr.generation, gf->foot.index_len, &at, what);
	if (r < 0)
		return r;
	gf->chunk_off = (const uint64_t *)(gf->ix + 1);
	gf->sections = (const struct disk_section_ref *)(gf->chunk_off + gf->ix->n_chunks);
	gf->spans = (const struct disk_span *)(gf->sections + gf->ix->n_sections);
	r = check_records(gf);
	if (r == 0)
		r = parse_regions(gf, at);
	if (r == -EBADMSG)
		return bad(what, "chunk or region table inconsistent");
	if (r == 0)
		r = check_spans(gf);
	return r == -EBADMSG ? bad(what, "span table inconsistent") : r;
}

int gen_file_open(int set_fd, uint64_t generation, struct gen_file **ret, const char **what)
{
	struct gen_file *gf = calloc(1, sizeof(*gf));
	int r;

	if (what)
		*what = NULL;
	if (!gf)
		return -ENOMEM;
	gf->cached = SPAN_NO_CHUNK;
	gf->fd = open_gen(set_fd, generation);
	if (gf->fd < 0 && what)
		*what = open_failure(gf->fd);
	r = gf->fd < 0 ? gf->fd : read_frame(gf->fd, generation, &gf->hdr, &gf->foot, &gf->size,
					     what);
	if (r == 0)
		r = load_index(gf, what);
	if (r < 0) {
		gen_file_close(gf);
		return r;
	}
	*ret = gf;
	return 0;
}

void gen_file_close(struct gen_file *gf)
{
	if (!gf)
		return;
	if (gf->fd >= 0)
		close(gf->fd);
	regions_free(gf->regions, gf->n_regions);
	free(gf->index);
	enc_chunk_free(&gf->ch);
	free(gf->ext_before);
	free(gf->pages);
	free(gf);
}

size_t gen_file_region_from(const struct gen_file *gf, uint64_t addr)
{
	size_t lo = 0, hi = gf->n_regions;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (gf->regions[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

ssize_t gen_file_region(const struct gen_file *gf, uint64_t addr)
{
	size_t i = gen_file_region_from(gf, addr);

	return i < gf->n_regions && gf->regions[i].start <= addr ? (ssize_t)i : -1;
}
