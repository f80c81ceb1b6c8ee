/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * On-disk layout of one generation file (docs/image-format.md is the
 * reference).  Every field is little-endian and naturally aligned; the
 * structs are written as they are, so this only builds on little-endian
 * hosts.  Bump STORE_VERSION when you change anything here.
 *
 *   header | chunk and section records... | index section | footer
 */
#pragma once

#include <assert.h>
#include <stdint.h>

#include "pipeline/codec.h"
#include "pipeline/sink.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the image format is written in host order and defined little-endian"
#endif

/* 2: sections (the index's former reserved word counts them).  Version 1
 * files, which have none, are still read. */
#define STORE_VERSION 2
#define STORE_VERSION_MIN 1
#define STORE_HEADER_MAGIC "WPMIGGEN"
#define STORE_FOOTER_MAGIC "WPMIGEND"
#define STORE_CHUNK_MAGIC 0x4b4e4843u   /* "CHNK" */
#define STORE_SECTION_MAGIC 0x54434553u /* "SECT" */
#define STORE_INDEX_MAGIC 0x58444e49u   /* "INDX" */

#define GEN_FULL 1u /* covers every page of its regions: readers stop here */

#define SPAN_NO_CHUNK UINT32_MAX
/* Largest index section a reader accepts (8M spans): bounds allocations. */
#define STORE_INDEX_MAX (1ULL << 30)
#define STORE_PATH_MAX 4096
/* Section names are 1..31 bytes, NUL-padded on disk (pipeline/sink.h). */
#define STORE_SECTION_NAME_SIZE (SECTION_NAME_MAX + 1)

struct disk_header { /* at offset 0 */
	char magic[8];
	uint32_t version;
	uint32_t header_size; /* sizeof(struct disk_header) */
	uint32_t page_size;   /* 4096 */
	uint32_t flags;       /* GEN_FULL */
	uint64_t generation;
	uint64_t parent;      /* previous generation of the set, 0 if none */
	int64_t begin_ns;     /* CLOCK_REALTIME when the generation was begun */
	uint32_t pid;
	uint32_t reserved;
	uint64_t sum;         /* XXH3-64 of the bytes before this field */
};
static_assert(sizeof(struct disk_header) == 64, "header layout");

struct disk_chunk { /* a chunk record starts here, 8-byte aligned */
	uint32_t magic;
	uint32_t n_ext;
	uint64_t seq;
	uint32_t n_data_pages;
	uint32_t encoding;    /* ENC_RAW or ENC_ZSTD */
	uint32_t payload_len;
	uint32_t reserved;
	uint64_t payload_sum; /* XXH3-64 of the payload */
	uint64_t meta_sum;    /* see chunk_meta_sum() */
	/* struct ext ext[n_ext]; uint64_t page_sums[n_data_pages];
	   uint8_t payload[payload_len]; zero padding to 8 bytes */
};
static_assert(sizeof(struct disk_chunk) == 48, "chunk layout");
static_assert(sizeof(struct ext) == 16, "extent layout");

/*
 * A named, typed blob of a generation (thread state, device state): written
 * like a chunk, between the chunk records, and listed in the index.
 */
struct disk_section { /* a section record starts here, 8-byte aligned */
	uint32_t magic;
	uint32_t type;        /* enum section_type of pipeline/sink.h */
	uint64_t length;      /* payload bytes */
	uint64_t sum;         /* XXH3-64 of the payload */
	char name[STORE_SECTION_NAME_SIZE]; /* NUL-padded */
	uint64_t header_sum;  /* XXH3-64 of the bytes before this field */
	/* uint8_t payload[length]; zero padding to 8 bytes */
};
static_assert(sizeof(struct disk_section) == 64, "section layout");

struct disk_section_ref { /* the index's entry for a section record */
	uint64_t offset;      /* of the record */
	uint64_t length, sum; /* as the record says */
	uint32_t type;
	uint32_t flags;       /* 0 */
	char name[STORE_SECTION_NAME_SIZE];
};
static_assert(sizeof(struct disk_section_ref) == 64, "section reference layout");

struct disk_span { /* the resolved content of the generation, by address */
	uint64_t start, end;
	uint64_t seq;         /* pass that won */
	uint32_t kind;        /* EXT_DATA or EXT_ZERO */
	uint32_t chunk;       /* index into the chunk table; SPAN_NO_CHUNK for zero */
};
static_assert(sizeof(struct disk_span) == 32, "span layout");

struct disk_region {
	uint64_t start, end, pgoff, ino;
	uint32_t dev_major, dev_minor;
	uint32_t prot, flags; /* PROT_*; REGION_* of tracker.h */
	uint32_t kind;        /* enum vma_kind */
	uint32_t shared;
	uint32_t path_off, path_len; /* into the string pool; no NUL */
};
static_assert(sizeof(struct disk_region) == 64, "region layout");

struct disk_index { /* starts the index section */
	uint32_t magic;
	uint32_t n_regions;
	uint32_t n_chunks;
	uint32_t strings_len;
	uint64_t n_spans;
	uint64_t generation;
	int64_t created_ns;   /* CLOCK_REALTIME at commit */
	uint64_t data_pages, zero_pages;           /* as logged, superseded included */
	uint64_t live_data_pages, live_zero_pages; /* in the spans */
	uint32_t n_sections;  /* version 1: reserved, 0 */
	uint32_t reserved;
	/* uint64_t chunk_off[n_chunks];
	   struct disk_section_ref sections[n_sections];
	   struct disk_span spans[n_spans];
	   struct disk_region regions[n_regions]; char strings[strings_len];
	   zero padding to 8 bytes */
};
static_assert(sizeof(struct disk_index) == 80, "index layout");

struct disk_footer { /* the last bytes of the file */
	uint64_t index_off;
	uint64_t index_len;   /* index section, padding included */
	uint64_t index_sum;   /* XXH3-64 of the index section */
	char magic[8];
};
static_assert(sizeof(struct disk_footer) == 32, "footer layout");

static inline uint64_t pad8(uint64_t n)
{
	return (n + 7) & ~7ULL;
}

/* Bytes of a section record with this payload. */
static inline uint64_t section_record_len(uint64_t length)
{
	return sizeof(struct disk_section) + pad8(length);
}

/* Bytes of a chunk record with these counts. */
static inline uint64_t chunk_record_len(uint32_t n_ext, uint32_t n_data, uint32_t payload_len)
{
	return sizeof(struct disk_chunk) + (uint64_t)n_ext * sizeof(struct ext) +
	       (uint64_t)n_data * 8 + pad8(payload_len);
}

/*
 * meta_sum = XXH3_64bits_withSeed(page_sums, 8 * n_data_pages,
 *              XXH3_64bits_withSeed(ext, 16 * n_ext,
 *                XXH3_64bits(header, 40)))    -- header up to meta_sum
 */
uint64_t chunk_meta_sum(const struct disk_chunk *h, const struct ext *ext, const uint64_t *sums);
