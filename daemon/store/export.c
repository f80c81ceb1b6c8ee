// SPDX-License-Identifier: GPL-2.0-only
/*
 * Export: one file per region, START-END.bin (the addresses as
 * /proc/PID/maps prints them), holding the region's content
 * at the generation.  The file is sized first with ftruncate, so zero spans,
 * pages never captured and all-zero data pages stay holes.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "basic/util.h"

#define PROGRESS_EVERY 4096 /* pages: 16 MiB */

struct export_ctx {
	struct store_image *img;
	const struct store_progress *progress;
	int fd;
	uint64_t base; /* region start: file offset 0 */
	uint64_t done, total, reported;
	/* a run of pages contiguous in the decoded chunk and in the file */
	const uint8_t *run;
	uint64_t run_addr, run_len;
};

static void report(struct export_ctx *c, bool force)
{
	if (!c->progress || !c->progress->fn)
		return;
	if (force || c->done - c->reported >= PROGRESS_EVERY) {
		c->progress->fn(c->progress->userdata, c->done, c->total);
		c->reported = c->done;
	}
}

static int flush_run(struct export_ctx *c)
{
	uint64_t off = c->run_addr - c->base;
	const uint8_t *p = c->run;
	uint64_t len = c->run_len;

	c->run_len = 0;
	while (len) {
		ssize_t w = pwrite(c->fd, p, len, (off_t)off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		off += (uint64_t)w;
		len -= (uint64_t)w;
	}
	return 0;
}

/* Queue one page for writing; all-zero pages are skipped and stay holes. */
static int add_page(struct export_ctx *c, uint64_t addr, const uint8_t *p)
{
	bool joins = c->run + c->run_len == p && c->run_addr + c->run_len == addr;

	if (c->run_len && !joins) {
		int r = flush_run(c);

		if (r < 0)
			return r;
	}
	if (page_is_zero(p))
		return 0; /* the next page cannot join the run: it flushes */
	if (!c->run_len) {
		c->run = p;
		c->run_addr = addr;
	}
	c->run_len += PAGE_SIZE_4K;
	return 0;
}

static int export_piece(void *ud, uint64_t start, uint64_t end, struct gen_file *gf,
			const struct disk_span *span)
{
	struct export_ctx *c = ud;
	int r = 0;

	for (uint64_t a = start; gf && r == 0 && a < end; a += PAGE_SIZE_4K) {
		const uint8_t *p = image_page(c->img, gf, span, a, &r);

		if (p)
			r = add_page(c, a, p);
	}
	/* The next piece may come from another chunk: the cache moves on. */
	if (r == 0 && c->run_len)
		r = flush_run(c);
	c->done += (end - start) / PAGE_SIZE_4K;
	report(c, false);
	return r;
}

/*
 * A file of ours in dir, emptied: never blocks on a FIFO put there (with
 * O_NONBLOCK it opens at once or fails with ENXIO), follows no symbolic
 * link, and truncates only a regular file: anything else by that name is
 * -EEXIST.
 */
static int open_output(int dir_fd, const char *name)
{
	_cleanup_close_ int fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK |
					O_CLOEXEC, 0600);
	struct stat sb;

	if (fd < 0) /* ENXIO: a FIFO nobody reads */
		return errno == ENXIO ? -EEXIST : -errno;
	if (fstat(fd, &sb) < 0)
		return -errno;
	if (!S_ISREG(sb.st_mode))
		return -EEXIST; /* something else by that name is in the way */
	if (ftruncate(fd, 0) < 0)
		return -errno;
	return TAKE_FD(fd);
}

static int export_region(struct export_ctx *c, int dir_fd, const struct pass_region *reg)
{
	char name[64];
	int r;

	/* as /proc/PID/maps prints them: lowercase, at least 8 digits */
	snprintf(name, sizeof(name), "%08" PRIx64 "-%08" PRIx64 ".bin", reg->start, reg->end);
	c->fd = open_output(dir_fd, name);
	if (c->fd < 0)
		return c->fd;
	c->base = reg->start;
	r = ftruncate(c->fd, (off_t)(reg->end - reg->start)) < 0 ? -errno : 0;
	if (r == 0)
		r = image_resolve(c->img, reg->start, reg->end, export_piece, c);
	if (close(c->fd) < 0 && r == 0)
		r = -errno;
	c->fd = -1;
	return r;
}

int store_image_export(struct store_image *img, const char *dir,
		       const struct store_progress *progress)
{
	struct export_ctx c = { .img = img, .progress = progress, .fd = -1 };
	_cleanup_close_ int dir_fd = -1;
	size_t n;
	const struct pass_region *regs = store_image_regions(img, &n);
	int r = 0;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0)
		return -errno;
	for (size_t i = 0; i < n; i++)
		c.total += (regs[i].end - regs[i].start) / PAGE_SIZE_4K;
	for (size_t i = 0; r == 0 && i < n; i++)
		r = export_region(&c, dir_fd, &regs[i]);
	report(&c, true);
	return r;
}
