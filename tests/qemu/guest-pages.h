/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The Linux guest's page contents, shared by the guest program
 * (guest-memcheck.c) and the host's RAM-dump checker (ramcheck.c).
 *
 * Page i of a run is one of three kinds, fixed by a hash of (run, i):
 * zero (all zero bytes), text (words from a small vocabulary) or random.
 * A non-zero page starts with a header naming run, index and generation;
 * the rest is derived from those, so any copy of a page can be checked on
 * its own.  The generations live in table pages (header + 1016 entries),
 * so a RAM dump holds everything needed to check that each page is the
 * newest the guest wrote.  Header-only, no libc beyond <string.h>.
 */
#pragma once

#include <stdint.h>
#include <string.h>

#define GP_PAGE 4096u
#define GP_MAGIC_PAGE 0x4547415047504d57ull /* "WMPGPAGE" little-endian */
#define GP_MAGIC_TABLE 0x4c42544747504d57ull /* "WMPGGTBL" */
#define GP_HDR 32u
#define GP_TABLE_ENTRIES ((GP_PAGE - GP_HDR) / 4)

enum gp_kind { GP_ZERO, GP_TEXT, GP_RANDOM };

struct gp_hdr {
	uint64_t magic;
	uint64_t run;
	uint32_t index; /* page index, or first index of a table page */
	uint32_t gen;   /* generation, or entry count of a table page */
	uint64_t reserved;
};

static inline uint64_t gp_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static inline enum gp_kind gp_kind_of(uint64_t run, uint32_t index)
{
	return (enum gp_kind)(gp_mix(run ^ ((uint64_t)index << 20)) % 3);
}

/* Fill the body (after the header) of a text or random page. */
static inline void gp_body(uint8_t *page, enum gp_kind kind, uint64_t run, uint32_t index,
			   uint32_t gen)
{
	static const char *const words[] = {
		"page ", "dirty ", "guest ", "memory ", "the ", "of ", "and ", "migrate ",
		"write ", "protect ", "fault ", "kernel ", "qemu ", "zstd ", "delta ", "\n",
	};
	uint64_t s = gp_mix(run * 31 + index) ^ gp_mix((uint64_t)gen + 0x9e3779b97f4a7c15ull);
	uint8_t *p = page + GP_HDR, *end = page + GP_PAGE;

	if (s == 0)
		s = 1;
	if (kind == GP_RANDOM) {
		for (; p < end; p += 8) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			memcpy(p, &s, 8);
		}
		return;
	}
	while (p < end) {
		const char *w;
		size_t n;

		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		w = words[s & 15];
		n = strlen(w);
		if (n > (size_t)(end - p))
			n = (size_t)(end - p);
		memcpy(p, w, n);
		p += n;
	}
}

/* Write page `index` of generation `gen`: body first, header last. */
static inline void gp_write(uint8_t *page, uint64_t run, uint32_t index, uint32_t gen)
{
	enum gp_kind kind = gp_kind_of(run, index);
	struct gp_hdr h = { GP_MAGIC_PAGE, run, index, gen, 0 };

	if (kind == GP_ZERO) {
		memset(page, 0, GP_PAGE);
		return;
	}
	gp_body(page, kind, run, index, gen);
	memcpy(page, &h, sizeof(h));
}

/* 0 when page holds exactly page `index` of `gen`, else -1. */
static inline int gp_check(const uint8_t *page, uint64_t run, uint32_t index, uint32_t gen)
{
	uint8_t want[GP_PAGE];

	gp_write(want, run, index, gen);
	return memcmp(page, want, GP_PAGE) == 0 ? 0 : -1;
}
