// SPDX-License-Identifier: GPL-2.0-only
#include "pipeline/passes.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PASSES_VERSION 1

struct passes_header {
	char magic[8];     /* "WPPASSES" */
	uint32_t version;
	uint32_t n_rows;   /* <= PASSES_MAX */
	uint32_t row_len;  /* sizeof(struct passes_record) */
	uint32_t reserved;
};
_Static_assert(sizeof(struct passes_header) == 24, "passes header layout");

/* Little-endian on disk, as in memory; the fields of struct pass_row. */
struct passes_record {
	uint32_t seq, flags;
	uint64_t found, data_pages, zero_pages, bytes;
	uint64_t scan_ns, copy_ns, store_ns, pause_ns;
};
_Static_assert(sizeof(struct passes_record) == 72, "passes record layout");

int passes_encode(const struct pass_row *rows, uint32_t n, uint8_t **ret, size_t *ret_len)
{
	struct passes_header h = { .magic = "WPPASSES", .version = PASSES_VERSION, .n_rows = n,
				   .row_len = sizeof(struct passes_record) };
	size_t len = sizeof(h) + (size_t)n * sizeof(struct passes_record);
	uint8_t *buf, *p;

	if (n > PASSES_MAX)
		return -E2BIG;
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	p = mempcpy(buf, &h, sizeof(h));
	for (uint32_t i = 0; i < n; i++) {
		const struct pass_row *r = &rows[i];
		struct passes_record d = {
			.seq = r->seq, .flags = r->flags, .found = r->found,
			.data_pages = r->data_pages, .zero_pages = r->zero_pages, .bytes = r->bytes,
			.scan_ns = r->scan_ns, .copy_ns = r->copy_ns, .store_ns = r->store_ns,
			.pause_ns = r->pause_ns,
		};

		p = mempcpy(p, &d, sizeof(d));
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

static bool record_ok(const struct passes_record *d, uint32_t prev_seq)
{
	return d->seq > prev_seq && !(d->flags & ~(uint32_t)(PASS_ROW_FINAL | PASS_ROW_HELD));
}

int passes_decode(const void *buf, size_t len, struct pass_row *rows, uint32_t *n)
{
	struct passes_header h;
	const uint8_t *p = buf;

	*n = 0;
	if (len < sizeof(h))
		return -EBADMSG;
	memcpy(&h, p, sizeof(h));
	if (memcmp(h.magic, "WPPASSES", sizeof(h.magic)) || h.version != PASSES_VERSION ||
	    h.n_rows > PASSES_MAX || h.row_len != sizeof(struct passes_record) || h.reserved ||
	    len != sizeof(h) + (size_t)h.n_rows * sizeof(struct passes_record))
		return -EBADMSG;
	p += sizeof(h);
	for (uint32_t i = 0; i < h.n_rows; i++, p += sizeof(struct passes_record)) {
		struct passes_record d;

		memcpy(&d, p, sizeof(d));
		if (!record_ok(&d, i ? rows[i - 1].seq : 0))
			return -EBADMSG;
		rows[i] = (struct pass_row){
			.seq = d.seq, .flags = d.flags, .found = d.found,
			.data_pages = d.data_pages, .zero_pages = d.zero_pages, .bytes = d.bytes,
			.scan_ns = d.scan_ns, .copy_ns = d.copy_ns, .store_ns = d.store_ns,
			.pause_ns = d.pause_ns,
		};
	}
	*n = h.n_rows;
	return 0;
}
