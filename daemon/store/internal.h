/* SPDX-License-Identifier: GPL-2.0-only */
/* Shared between the store's files; not for the rest of the daemon. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "format.h"
#include "pipeline/codec.h"
#include "store/store.h"

struct store {
	int images_fd; /* STATE_DIR/images */
};

#define GEN_NAME_LEN 48
#define GEN_PREFIX "gen-"
#define GEN_SUFFIX ".img"
#define TMP_PREFIX ".tmp-"
#define LOCK_NAME ".lock"

/* store.c: set directories, names and locks */
void gen_file_name(char name[static GEN_NAME_LEN], uint64_t generation, bool tmp);
/* Generation number of a committed file name, or 0. */
uint64_t gen_name_parse(const char *name);
int set_dir_open(struct store *st, const char *set, bool create, int *ret_fd);
/* Exclusive, non-blocking lock of the set: -EBUSY when held elsewhere. */
int set_lock(int set_fd, int *ret_lock_fd);
/* Committed generation numbers of the set, ascending (free the array). */
int set_generations(int set_fd, uint64_t **ret, size_t *ret_n);
/* Remove temp files of writers that died (call with the set lock held). */
void set_clean_temp(int set_fd);
int fsync_dir(int dir_fd);

/* One generation file opened for reading, its index checked. */
struct gen_file {
	int fd;
	uint64_t size;
	struct disk_header hdr;
	struct disk_footer foot;
	void *index;                  /* the whole index section */
	const struct disk_index *ix;
	const uint64_t *chunk_off;
	const struct disk_section_ref *sections;
	const struct disk_span *spans;
	struct pass_region *regions;  /* parsed; paths owned */
	size_t n_regions;
	/* the last chunk loaded (SPAN_NO_CHUNK: none), decoded if `decoded` */
	uint32_t cached;
	bool decoded;
	struct enc_chunk ch;
	uint32_t *ext_before;         /* data pages before each extent */
	size_t ext_before_cap;
	uint8_t *pages;
	size_t pages_cap;
};

/* file.c; *what (may be NULL): why a file is refused, a static string */
/* len bytes at off, all of them: a file shorter than that is -EBADMSG. */
int store_pread_full(int fd, void *buf, size_t len, uint64_t off);
int gen_file_open(int set_fd, uint64_t generation, struct gen_file **ret, const char **what);
void gen_file_close(struct gen_file *gf);
/* Header, footer and index header only: for listing. */
int gen_file_peek(int set_fd, uint64_t generation, struct store_gen_info *info);
void gen_file_info(const struct gen_file *gf, struct store_gen_info *info);
/*
 * Read chunk idx into gf->ch and check its metadata (not the payload).
 * With meta_bad, a meta_sum mismatch is reported there instead of failing
 * (for verify, which then names the pages); such a chunk is not cached.
 */
int gen_file_load_chunk(struct gen_file *gf, uint32_t idx, bool *meta_bad);
int chunk_grow(void **buf, size_t *cap, size_t want);
/* Load and decode chunk idx (cached); *bad_page as codec_decode. */
int gen_file_decode_chunk(struct gen_file *gf, struct codec *c, uint32_t idx, int64_t *bad_page);
/* Address of data page i of a chunk, or UINT64_MAX. */
uint64_t chunk_data_page_addr(const struct enc_chunk *ch, uint64_t i);
/* Where the record at off ends: the next chunk or section record, or the index. */
uint64_t gen_file_record_end(const struct gen_file *gf, uint64_t off);
/* Section idx of gf, its record and payload checked: *ret malloc'ed. */
int gen_file_read_section(const struct gen_file *gf, uint32_t idx, uint8_t **ret);
/* Data index of the page at addr in the loaded chunk, or -1. */
int64_t gen_file_chunk_page(const struct gen_file *gf, uint64_t addr);
/* Region of gf holding addr, or -1. */
ssize_t gen_file_region(const struct gen_file *gf, uint64_t addr);
/* First region of gf ending after addr (n_regions if none). */
size_t gen_file_region_from(const struct gen_file *gf, uint64_t addr);

/* index.c: what commit writes after the chunks */
/* Regions sorted, disjoint, page aligned, sane: 0 or -EINVAL. */
int regions_check(const struct pass_region *r, size_t n);
/*
 * The log of a generation (entries in arrival order) -> sorted disjoint
 * spans inside the regions: for each page the entry with the highest seq,
 * the later one on a tie.
 */
int resolve_log(const struct disk_span *log, size_t n, const struct pass_region *regions,
		size_t n_regions, struct disk_span **ret, size_t *ret_n);
struct index_params {
	uint64_t generation, data_pages, zero_pages;
	int64_t created_ns;
	const uint64_t *chunk_off;
	size_t n_chunks;
	const struct disk_section_ref *sections;
	size_t n_sections;
};
/* The index section: header, chunk table, section table, spans, regions,
 * string pool. */
int index_build(const struct index_params *p, const struct pass_region *regions,
		size_t n_regions, const struct disk_span *spans, size_t n_spans,
		void **ret, size_t *ret_len);

/* read.c */
struct store_image {
	struct store_gen_info info;
	struct gen_file **chain; /* [0] is the generation opened, then parents */
	size_t n_chain;
	struct codec *codec;
	uint64_t bad_addr; /* the page image_page() last found damaged, or UINT64_MAX */
};

/* A piece of content: data of gf's span (gf != NULL) or zeros (gf == NULL). */
typedef int (*resolve_fn)(void *ud, uint64_t start, uint64_t end, struct gen_file *gf,
			  const struct disk_span *span);
/* Walk [start, end) of the image's regions in address order. */
int image_resolve(struct store_image *img, uint64_t start, uint64_t end, resolve_fn fn, void *ud);
/* Pointer to the decoded page at addr of gf's span (verified), or NULL +
 * *err; on damage img->bad_addr is the page that failed its sum, if one did
 * (the chunk may hold more than the page asked for). */
const uint8_t *image_page(struct store_image *img, struct gen_file *gf,
			  const struct disk_span *span, uint64_t addr, int *err);
