// SPDX-License-Identifier: GPL-2.0-only
/*
 * A migration's pages into the destination QEMU's backends: the sink a
 * target opens for each generation (target.h).  Data pages are pwritten;
 * zero pages are punched only where the backend holds data.
 *
 * A commit syncs nothing: the backend is a shared mapping of the running
 * destination QEMU, which sees a pwrite at once through the page cache.
 * Durability on disk would protect against nothing a migration can
 * survive: a destination host that crashes takes its QEMU with it, and the
 * source keeps the guest until the destination resumes.  On tmpfs and
 * memfd fdatasync is a no-op; on a disk file system it would write the
 * whole guest back during the pause.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/util.h"
#include "internal.h"
#include "track/regions.h"

/* A generation being received into a target. */
struct tsink {
	struct sink sink;
	struct target *t;
	uint64_t generation, parent;
	atomic_uint_least64_t data_pages, zero_pages;
};

static struct tbackend *backend_at(struct target *t, uint64_t addr, uint64_t *off,
				   uint64_t *room)
{
	for (size_t i = 0; i < t->n; i++) {
		struct tbackend *b = &t->b[i];

		if (addr >= b->src_start && addr - b->src_start < b->size) {
			*off = addr - b->src_start;
			*room = b->size - *off;
			return b;
		}
	}
	return NULL;
}

static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Make [off, off + len) zero, writing nothing where it already is (a hole:
 * a fresh backend is one big hole). */
static int zero_range(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[PAGE_SIZE_4K];
	off_t d = lseek(fd, (off_t)off, SEEK_DATA);

	if ((d < 0 && errno == ENXIO) || (d >= 0 && (uint64_t)d >= off + len))
		return 0;
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		return 0;
	for (uint64_t o = 0; o < len; o += PAGE_SIZE_4K) {
		int r = pwrite_all(fd, zeros, PAGE_SIZE_4K, off + o);

		if (r < 0)
			return r;
	}
	return 0;
}

/* Pages [addr, addr + n pages): data at p, or zero when p is NULL. */
static int put_run(struct tsink *s, uint64_t addr, uint64_t pages, const uint8_t *p)
{
	while (pages) {
		uint64_t off, room;
		struct tbackend *b = backend_at(s->t, addr, &off, &room);
		uint64_t n = MIN(pages, room / PAGE_SIZE_4K);
		int r;

		if (!b)
			return -ERANGE;
		r = p ? pwrite_all(b->fd, p, n * PAGE_SIZE_4K, off)
		      : zero_range(b->fd, off, n * PAGE_SIZE_4K);
		if (r < 0)
			return r;
		if (p) {
			atomic_fetch_add(&s->t->pages_written, n);
			atomic_fetch_add(&s->data_pages, n);
			p += n * PAGE_SIZE_4K;
		} else {
			atomic_fetch_add(&s->t->pages_zeroed, n);
			atomic_fetch_add(&s->zero_pages, n);
		}
		addr += n * PAGE_SIZE_4K;
		pages -= n;
	}
	return 0;
}

static int t_put_decoded(struct sink *sk, const struct enc_chunk *c, const uint8_t *pages)
{
	struct tsink *s = (struct tsink *)sk;
	const uint8_t *p = pages;

	for (uint32_t i = 0; i < c->n_ext; i++) {
		const struct ext *e = &c->ext[i];
		int r = put_run(s, e->addr, e->pages, e->kind == EXT_DATA ? p : NULL);

		if (r < 0)
			return r;
		if (e->kind == EXT_DATA)
			p += (size_t)e->pages * PAGE_SIZE_4K;
	}
	return 0;
}

static int t_put_chunk(struct sink *sk, const struct enc_chunk *c)
{
	return -EOPNOTSUPP; /* the receiver decodes for put_decoded */
}

static int t_put_zero(struct sink *sk, uint64_t seq, const struct range_set *zero)
{
	struct tsink *s = (struct tsink *)sk;

	for (size_t i = 0; i < zero->n; i++) {
		int r = put_run(s, zero->r[i].start,
				(zero->r[i].end - zero->r[i].start) / PAGE_SIZE_4K, NULL);

		if (r < 0)
			return r;
	}
	return 0;
}

static int t_commit(struct sink *sk, const struct pass_region *regions, size_t n,
		    struct gen_summary *out)
{
	struct tsink *s = (struct tsink *)sk;
	struct target *t = s->t;
	struct pass_region *copy = NULL;
	int r = regions_copy(regions, n, &copy);

	if (r < 0)
		return r;
	regions_free(t->regions, t->n_regions);
	t->regions = copy;
	t->n_regions = n;
	t->generation = s->generation;
	*out = (struct gen_summary){
		.generation = s->generation, .parent = s->parent,
		.data_pages = atomic_load(&s->data_pages), .zero_pages = atomic_load(&s->zero_pages),
		.raw_bytes = atomic_load(&s->data_pages) * PAGE_SIZE_4K,
	};
	out->bytes_stored = out->raw_bytes;
	return 0;
}

static void t_free(struct sink *sk)
{
	free(sk);
}

static const struct sink_ops tsink_ops = {
	.put_chunk = t_put_chunk,
	.put_decoded = t_put_decoded,
	.put_zero = t_put_zero,
	.commit = t_commit,
	.abort = t_free,
	.close = t_free,
};


struct sink *target_sink_new(struct target *t, uint64_t generation, uint64_t parent)
{
	struct tsink *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->sink.ops = &tsink_ops;
	s->t = t;
	s->generation = generation;
	s->parent = parent;
	return &s->sink;
}
