// SPDX-License-Identifier: GPL-2.0-only
/*
 * The image a restore writes back, decoded before the freeze: its regions
 * and, in address order, pieces that are zero or point at data pages kept
 * in memory (an anonymous mapping) or, when large, in an unlinked file
 * mapped shared.  Pieces are laid out first, in address order; the data
 * comes after, in any order (the store decodes chunk by chunk).  Looking a
 * page up is a binary search over the pieces.
 */
#include "restore-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "basic/util.h"
#include "track/regions.h"

/* An unlinked file of len bytes in dir. */
static int tmp_file(const char *dir, uint64_t len)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)len) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

/*
 * Memory is populated at once (a first touch of each page would cost a
 * fault: copying into fresh memory runs at a fifth of the speed); a file is
 * written with pwrite and mapped, populated, once complete (seal).
 */
int restore_image_alloc(struct restore_image *ri, uint64_t mem_max, const char *tmp_dir)
{
	if (ri->data || ri->fd >= 0)
		return -EALREADY;
	if (!ri->data_len)
		return 0;
	if (ri->data_len > mem_max && tmp_dir) {
		ri->fd = tmp_file(tmp_dir, ri->data_len);
		return ri->fd < 0 ? ri->fd : 0;
	}
	ri->data = mmap(NULL, ri->data_len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (ri->data == MAP_FAILED) {
		ri->data = NULL;
		return -errno;
	}
	return 0;
}

int restore_image_seal(struct restore_image *ri)
{
	if (ri->fill != ri->data_len)
		return -EBADMSG; /* a data page was never given */
	if (ri->fd < 0 || ri->data)
		return 0;
	ri->data = mmap(NULL, ri->data_len, PROT_READ, MAP_SHARED | MAP_POPULATE, ri->fd, 0);
	if (ri->data == MAP_FAILED) {
		ri->data = NULL;
		return -errno;
	}
	return 0;
}

int restore_image_new(const struct pass_region *regions, size_t n, struct restore_image **ret)
{
	struct restore_image *ri = calloc(1, sizeof(*ri));
	int r;

	if (!ri)
		return -ENOMEM;
	ri->fd = -1;
	r = regions_copy(regions, n, &ri->regions);
	if (r == 0)
		ri->n_regions = n;
	if (r < 0) {
		restore_image_free(ri);
		return r;
	}
	for (size_t i = 0; i < n; i++)
		ri->pages += (regions[i].end - regions[i].start) / PAGE_SIZE_4K;
	*ret = ri;
	return 0;
}

void restore_image_free(struct restore_image *ri)
{
	if (!ri)
		return;
	if (ri->data)
		munmap(ri->data, ri->data_len);
	closep(&ri->fd);
	regions_free(ri->regions, ri->n_regions);
	free(ri->p);
	free(ri);
}

bool restore_image_in_file(const struct restore_image *ri)
{
	return ri->fd >= 0;
}

static int push_piece(struct restore_image *ri, uint64_t addr, uint64_t len, uint64_t off)
{
	struct ri_piece *last = ri->n ? &ri->p[ri->n - 1] : NULL;

	if (last && last->end == addr &&
	    (off == RI_ZERO ? last->off == RI_ZERO
			    : last->off != RI_ZERO && last->off + (last->end - last->start) == off)) {
		last->end += len;
		return 0;
	}
	if (ri->n == ri->cap) {
		size_t ncap = ri->cap ? ri->cap * 2 : 256;
		struct ri_piece *np = reallocarray(ri->p, ncap, sizeof(*np));

		if (!np)
			return -ENOMEM;
		ri->p = np;
		ri->cap = ncap;
	}
	ri->p[ri->n++] = (struct ri_piece){ addr, addr + len, off };
	return 0;
}

int restore_image_add(struct restore_image *ri, uint64_t addr, uint64_t len, bool data)
{
	uint64_t off = RI_ZERO;

	if (((addr | len) & (PAGE_SIZE_4K - 1)) || !len || addr + len < addr || ri->data ||
	    ri->fd >= 0 || (ri->n && addr < ri->p[ri->n - 1].end))
		return -EINVAL;
	if (data) {
		off = ri->data_len;
		ri->data_len += len;
	}
	return push_piece(ri, addr, len, off);
}

int restore_image_fill(struct restore_image *ri, uint64_t addr, uint64_t len,
		       const uint8_t *bytes)
{
	size_t i = ri_find(ri, addr);
	uint64_t off;

	if ((!ri->data && ri->fd < 0) || i == ri->n || ri->p[i].start > addr ||
	    ri->p[i].off == RI_ZERO || len > ri->p[i].end - addr)
		return -EINVAL;
	off = ri->p[i].off + (addr - ri->p[i].start);
	if (ri->data) {
		memcpy(ri->data + off, bytes, len);
	} else {
		for (uint64_t done = 0; done < len;) {
			ssize_t w = pwrite(ri->fd, bytes + done, len - done, (off_t)(off + done));

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return w < 0 ? -errno : -EIO;
			done += (uint64_t)w;
		}
	}
	ri->fill += len;
	return 0;
}

size_t ri_find(const struct restore_image *ri, uint64_t addr)
{
	size_t lo = 0, hi = ri->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (ri->p[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const uint8_t *ri_page(const struct restore_image *ri, uint64_t addr, size_t *hint)
{
	size_t i = *hint;

	if (i >= ri->n || ri->p[i].start > addr || ri->p[i].end <= addr)
		i = *hint = ri_find(ri, addr);
	if (i >= ri->n || ri->p[i].start > addr || ri->p[i].off == RI_ZERO)
		return NULL;
	return ri->data + ri->p[i].off + (addr - ri->p[i].start);
}

uint64_t restore_image_data_bytes(const struct restore_image *ri)
{
	return ri->data_len;
}
