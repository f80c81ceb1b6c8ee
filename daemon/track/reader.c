// SPDX-License-Identifier: GPL-2.0-only
#include "track/reader.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "basic/util.h"

#define IOV_BATCH 1024

static int push_seg(struct read_plan *pl, size_t *cap, uint64_t a, uint64_t b)
{
	if (pl->n_segs == *cap) {
		size_t ncap = *cap ? *cap * 2 : 256;
		struct range *n = reallocarray(pl->segs, ncap, sizeof(*n));

		if (!n)
			return -ENOMEM;
		pl->segs = n;
		*cap = ncap;
	}
	pl->segs[pl->n_segs++] = (struct range){ a, b };
	return 0;
}

static int push_chunk(struct read_plan *pl, size_t *cap, size_t region, size_t first)
{
	if (pl->n_chunks == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct chunk *n = reallocarray(pl->chunks, ncap, sizeof(*n));

		if (!n)
			return -ENOMEM;
		pl->chunks = n;
		*cap = ncap;
	}
	pl->chunks[pl->n_chunks++] = (struct chunk){ .region = region, .first_seg = first };
	return 0;
}

int read_plan_build(const struct pass *p, uint64_t chunk_bytes, struct read_plan *out)
{
	size_t seg_cap = 0, chunk_cap = 0;
	struct read_plan pl = { 0 };
	int r = 0;

	chunk_bytes = MAX(chunk_bytes & ~(PAGE_SIZE_4K - 1), PAGE_SIZE_4K);
	for (size_t ri = 0; r == 0 && ri < p->n_regions; ri++) {
		const struct pass_region *pr = &p->regions[ri];
		struct range_set part = { 0 };
		struct chunk *c = NULL;

		r = range_set_clip(&p->data, pr->start, pr->end, &part);
		for (size_t i = 0; r == 0 && i < part.n; i++) {
			uint64_t a = part.r[i].start, b = part.r[i].end;

			while (r == 0 && a < b) {
				if (!c || c->bytes == chunk_bytes) {
					r = push_chunk(&pl, &chunk_cap, ri, pl.n_segs);
					if (r < 0)
						break;
					c = &pl.chunks[pl.n_chunks - 1];
				}
				uint64_t take = MIN(b - a, chunk_bytes - c->bytes);
				r = push_seg(&pl, &seg_cap, a, a + take);
				c->n_segs++;
				c->bytes += take;
				pl.bytes += take;
				a += take;
			}
		}
		range_set_free(&part);
	}
	if (r < 0) {
		read_plan_free(&pl);
		return r;
	}
	*out = pl;
	return 0;
}

void read_plan_free(struct read_plan *plan)
{
	free(plan->segs);
	free(plan->chunks);
	*plan = (struct read_plan){ 0 };
}

/* process_vm_readv over segs; a failing page is zeroed and skipped. */
static int read_vm(pid_t pid, const struct range *segs, size_t n, uint8_t *buf,
		   uint64_t *unreadable)
{
	struct iovec remote[IOV_BATCH];
	size_t i = 0;
	uint64_t skip = 0; /* bytes of segs[i] already handled */

	while (i < n) {
		size_t k = 0;
		uint64_t total = 0;

		for (size_t j = i; j < n && k < IOV_BATCH; j++, k++) {
			uint64_t off = j == i ? skip : 0;

			remote[k] = (struct iovec){ (void *)(segs[j].start + off),
						    segs[j].end - segs[j].start - off };
			total += remote[k].iov_len;
		}
		struct iovec local = { buf, total };
		ssize_t got = process_vm_readv(pid, &local, 1, remote, k, 0);
		if (got < 0 && errno != EFAULT && errno != ENOMEM && errno != EIO)
			return -errno;
		if (got < 0)
			got = 0;
		/* Advance over what was read. */
		uint64_t left = (uint64_t)got;
		while (i < n && left >= segs[i].end - segs[i].start - skip) {
			left -= segs[i].end - segs[i].start - skip;
			skip = 0;
			i++;
		}
		skip += left;
		buf += got;
		if ((uint64_t)got == total)
			continue;
		/* The page at the failure point is unreadable: zero, skip it. */
		memset(buf, 0, PAGE_SIZE_4K);
		buf += PAGE_SIZE_4K;
		(*unreadable)++;
		skip += PAGE_SIZE_4K;
		if (skip >= segs[i].end - segs[i].start) {
			skip = 0;
			i++;
		}
	}
	return 0;
}

static int read_file(int fd, uint64_t file_off, uint8_t *buf, uint64_t len)
{
	while (len) {
		ssize_t got = pread(fd, buf, len, (off_t)file_off);

		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (got == 0) { /* beyond EOF: the mapping reads as SIGBUS; zero */
			memset(buf, 0, len);
			return 0;
		}
		buf += got;
		file_off += (uint64_t)got;
		len -= (uint64_t)got;
	}
	return 0;
}

int read_chunk(struct tracker *t, const struct pass *p, const struct read_plan *plan,
	       const struct chunk *c, void *buf, uint64_t *unreadable)
{
	const struct pass_region *pr = &p->regions[c->region];
	const struct range *segs = &plan->segs[c->first_seg];
	int fd = pr->kind == VMA_SHARED ? tracker_backing_fd(t, pr->backing) : -1;
	uint8_t *out = buf;

	if (fd < 0)
		return read_vm(tracker_pid(t), segs, c->n_segs, out, unreadable);
	for (size_t i = 0; i < c->n_segs; i++) {
		uint64_t len = segs[i].end - segs[i].start;
		int r = read_file(fd, pr->pgoff * PAGE_SIZE_4K + (segs[i].start - pr->start), out,
				  len);

		if (r < 0)
			return r;
		out += len;
	}
	return 0;
}
