// SPDX-License-Identifier: GPL-2.0-only
/*
 * RAM-dump checkers of the two test guests (vm.h).  A dump is guest RAM
 * from physical address 0 (one backend, below the PCI hole), taken while
 * the guest is stopped.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest-pages.h"
#include "vm.h"

static int fail(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return -1;
}

static bool body_zero(const uint8_t *p)
{
	static const uint8_t zero[GP_PAGE];

	return memcmp(p + 4, zero, GP_PAGE - 8) == 0;
}

/*
 * The boot guest's range: pages [0, k) hold c + 1, pages [k, n) hold c
 * (word 0 = counter, word 1023 = counter ^ index, the rest zero), except
 * that page k may be half written (word 1023 already c + 1's).
 */
int ramcheck_boot(const uint8_t *ram, size_t len, uint32_t first, uint32_t pages, char *why,
		  size_t why_len, uint32_t *counter)
{
	uint32_t top, c, k = 0, torn = 0;

	if (((size_t)first + pages) * GP_PAGE > len)
		return fail(why, why_len, "range of %u pages from page %u beyond a %zu-byte dump",
			    pages, first, len);
	memcpy(&top, ram + (size_t)first * GP_PAGE, 4);
	c = top;
	for (uint32_t i = 0; i < pages; i++) {
		const uint8_t *p = ram + ((size_t)first + i) * GP_PAGE;
		uint32_t w0, w1023;

		memcpy(&w0, p, 4);
		memcpy(&w1023, p + GP_PAGE - 4, 4);
		if (!body_zero(p))
			return fail(why, why_len, "page %u (0x%zx): non-zero bytes in its body", i,
				    ((size_t)first + i) * GP_PAGE);
		if (i > 0 && w0 == top - 1 && c == top) { /* the boundary */
			c = top - 1;
			k = i;
		}
		if (w0 == c && w1023 == (c ^ i))
			continue;
		if (!torn && w0 == c && c == top - 1 && w1023 == (top ^ i)) {
			torn = i; /* written up to word 1023 when stopped */
			continue;
		}
		return fail(why, why_len,
			    "page %u (0x%zx) holds %08x/%08x, expected %08x/%08x (pass boundary "
			    "at page %u)", i, ((size_t)first + i) * GP_PAGE, w0, w1023, c, c ^ i, k);
	}
	if (counter)
		*counter = top;
	return 0;
}

/*
 * The Linux guest: every table page of the run gives the generation of
 * its pages; every non-zero page of the run must be found in the dump at
 * that generation (a copy at another generation is a stale free page and
 * does not count).  One page may be one generation ahead of its table
 * entry: the guest writes the page, then the table.  A page whose header
 * does not match its body is a freed frame the guest reused in part when a
 * good copy exists elsewhere; else it may be the one page the guest was
 * writing when stopped (body written, header not yet), instead of one
 * page ahead.
 */
int ramcheck_linux(const uint8_t *ram, size_t len, uint64_t run, uint32_t pages, char *why,
		   size_t why_len, uint64_t *pages_checked)
{
	uint32_t npages = 0, *gen = NULL, anomalies = 0;
	int64_t torn = -1; /* the page being written when the guest stopped */
	uint8_t *found = NULL;
	struct bad_copy {
		size_t off; /* + 1: 0 is none */
		uint32_t gen;
	} *bad = NULL;
	uint64_t checked = 0, missing = 0, first_missing = 0;

	for (size_t off = 0; off + GP_PAGE <= len; off += GP_PAGE) {
		struct gp_hdr h;

		memcpy(&h, ram + off, sizeof(h));
		if (h.magic == GP_MAGIC_TABLE && h.run == run && h.gen == GP_TABLE_ENTRIES)
			npages = h.index + GP_TABLE_ENTRIES > npages ? h.index + GP_TABLE_ENTRIES : npages;
	}
	if (!npages)
		return fail(why, why_len, "no table page of run %016" PRIx64 " in the dump", run);
	gen = calloc(npages, sizeof(*gen));
	found = calloc(npages, 1);
	for (size_t off = 0; off + GP_PAGE <= len; off += GP_PAGE) {
		struct gp_hdr h;

		memcpy(&h, ram + off, sizeof(h));
		if (h.magic == GP_MAGIC_TABLE && h.run == run)
			memcpy(gen + h.index, ram + off + GP_HDR, GP_TABLE_ENTRIES * 4);
	}
	/* Pages whose header does not match their body: decided once every
	 * good copy has been found. */
	bad = calloc(npages, sizeof(*bad));
	if (!gen || !found || !bad) {
		free(gen);
		free(found);
		free(bad);
		return fail(why, why_len, "out of memory");
	}
	for (size_t off = 0; off + GP_PAGE <= len; off += GP_PAGE) {
		struct gp_hdr h;

		memcpy(&h, ram + off, sizeof(h));
		if (h.magic != GP_MAGIC_PAGE || h.run != run || h.index >= npages)
			continue;
		if (gp_check(ram + off, run, h.index, h.gen) < 0) {
			if (!bad[h.index].off)
				bad[h.index] = (struct bad_copy){ off + 1, h.gen };
			continue;
		}
		/* The page written, its table entry not yet: one page may be ahead. */
		if (h.gen == gen[h.index] || (h.gen == gen[h.index] + 1 && anomalies++ == 0))
			found[h.index] = 1;
	}
	for (uint32_t i = 0; i < npages; i++) {
		/* A bad copy beside a good one is a freed frame the guest kernel
		 * reused in part (page migration, compaction, the balloon). */
		if (!bad[i].off || found[i])
			continue;
		/* Torn: its body is the next generation's, its header not yet. */
		if (anomalies++ == 0 && bad[i].gen == gen[i]) {
			torn = i;
			continue;
		}
		fail(why, why_len, "page of index %u at 0x%zx does not match its header (gen %u, "
		     "table gen %u), and no good copy of it is in the dump", i,
		     bad[i].off - 1, bad[i].gen, gen[i]);
		free(gen);
		free(found);
		free(bad);
		return -1;
	}
	if (pages > npages)
		pages = npages;
	for (uint32_t i = 0; i < pages; i++) {
		if (gp_kind_of(run, i) == GP_ZERO)
			continue;
		if (found[i])
			checked++;
		else if ((int64_t)i != torn && !missing++)
			first_missing = i;
	}
	free(gen);
	free(found);
	free(bad);
	if (pages_checked)
		*pages_checked = checked;
	if (missing)
		return fail(why, why_len, "%" PRIu64 " pages of run %016" PRIx64 " not found at "
			    "their generation (first: index %" PRIu64 ")", missing, run, first_missing);
	return 0;
}
