// SPDX-License-Identifier: GPL-2.0-only
/*
 * Export: one file per region, START-END.bin (the addresses as
 * /proc/PID/maps prints them), holding the region's content
 * at the generation.  The file is sized first with ftruncate, so zero spans,
 * pages never captured and all-zero data pages stay holes.  Each section of
 * the generation becomes NAME.section.
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
	struct store_bad *fail; /* where it failed, if it did */
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
	/* (no arithmetic on run before it points somewhere: NULL + 0 is UB) */
	bool joins = c->run_len && c->run + c->run_len == p && c->run_addr + c->run_len == addr;

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
		else if (c->fail)
			*c->fail = (struct store_bad){
				.generation = gf->hdr.generation,
				.addr = c->img->bad_addr != UINT64_MAX ? c->img->bad_addr : a,
				.file_offset = gf->chunk_off[span->chunk],
				.what = r != -EBADMSG ? NULL : c->img->bad_addr != UINT64_MAX ?
					"page checksum mismatch" : "damaged chunk",
			};
	}
	/* The next piece may come from another chunk: the cache moves on. */
	if (r == 0 && c->run_len)
		r = flush_run(c);
	c->done += (end - start) / PAGE_SIZE_4K;
	report(c, false);
	return r;
}

static void region_names(const struct pass_region *reg, char name[64], char tmp[72])
{
	/* as /proc/PID/maps prints them: lowercase, at least 8 digits */
	snprintf(name, 64, "%08" PRIx64 "-%08" PRIx64 ".bin", reg->start, reg->end);
	snprintf(tmp, 72, ".%s.part", name);
}

/*
 * What is in the way of a region's file: nothing, or a regular file (it is
 * replaced).  Anything else (a FIFO, a directory, a symbolic link) is
 * -EEXIST, found before anything is written.
 */
static int check_name(int dir_fd, const char *name)
{
	struct stat sb;

	if (fstatat(dir_fd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	return S_ISREG(sb.st_mode) ? 0 : -EEXIST;
}

/* A region into its temporary file, created afresh (never a FIFO's open). */
static int export_region(struct export_ctx *c, int dir_fd, const struct pass_region *reg)
{
	char name[64], tmp[72];
	int r;

	region_names(reg, name, tmp);
	unlinkat(dir_fd, tmp, 0); /* debris of an export that died */
	c->fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (c->fd < 0)
		return -errno;
	c->base = reg->start;
	r = ftruncate(c->fd, (off_t)(reg->end - reg->start)) < 0 ? -errno : 0;
	if (r == 0)
		r = image_resolve(c->img, reg->start, reg->end, export_piece, c);
	if (close(c->fd) < 0 && r == 0)
		r = -errno;
	c->fd = -1;
	return r;
}

static void section_names(const struct gen_file *gf, uint32_t idx, char name[SECTION_NAME_MAX + 16],
			  char tmp[SECTION_NAME_MAX + 24])
{
	snprintf(name, SECTION_NAME_MAX + 16, "%s.section", gf->sections[idx].name);
	snprintf(tmp, SECTION_NAME_MAX + 24, ".%s.part", name);
}

/* NAME.section: the section's bytes, checked, as they were put, into its
 * temporary file (renamed with the regions' files). */
static int export_section(int dir_fd, const struct gen_file *gf,
			  uint32_t idx)
{
	char name[SECTION_NAME_MAX + 16], tmp[SECTION_NAME_MAX + 24];
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_close_ int fd = -1;
	uint64_t len = gf->sections[idx].length, off = 0;
	int r = gen_file_read_section(gf, idx, &buf);

	if (r < 0)
		return r;
	section_names(gf, idx, name, tmp);
	unlinkat(dir_fd, tmp, 0);
	fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (off < len) {
		ssize_t w = pwrite(fd, buf + off, len - off, (off_t)off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		off += (uint64_t)w;
	}
	return close(TAKE_FD(fd)) < 0 ? -errno : 0;
}

static void fail_region(struct store_bad *fail, const struct pass_region *reg, const char *what)
{
	if (!fail)
		return;
	fail->region_start = reg->start;
	fail->region_end = reg->end;
	if (what)
		fail->what = what;
}

/* Every region written to a temporary file, then all renamed: a failed
 * export leaves no file of its own behind, complete or partial. */
int store_image_export(struct store_image *img, const char *dir,
		       const struct store_progress *progress, struct store_bad *fail)
{
	struct export_ctx c = { .img = img, .progress = progress, .fd = -1, .fail = fail };
	_cleanup_close_ int dir_fd = -1;
	char name[64], tmp[72], sname[SECTION_NAME_MAX + 16], stmp[SECTION_NAME_MAX + 24];
	size_t n, done = 0;
	const struct pass_region *regs = store_image_regions(img, &n);
	const struct gen_file *gf = img->chain[0];
	uint32_t n_sections = gf->ix->n_sections, sdone = 0;
	int r = 0;

	if (fail)
		*fail = (struct store_bad){ .addr = UINT64_MAX };
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0)
		return -errno;
	for (size_t i = 0; r == 0 && i < n; i++) {
		c.total += (regs[i].end - regs[i].start) / PAGE_SIZE_4K;
		region_names(&regs[i], name, tmp);
		r = check_name(dir_fd, name);
		if (r < 0)
			fail_region(fail, &regs[i], "a file of that name is in the way and is not "
				    "a regular file");
	}
	for (uint32_t i = 0; r == 0 && i < n_sections; i++) {
		section_names(gf, i, sname, stmp);
		r = check_name(dir_fd, sname);
	}
	for (; r == 0 && done < n; done++) {
		r = export_region(&c, dir_fd, &regs[done]);
		if (r < 0)
			fail_region(fail, &regs[done], NULL);
	}
	for (; r == 0 && sdone < n_sections; sdone++)
		r = export_section(dir_fd, gf, sdone);
	/* done, sdone: those whose temporary file exists, the failed one too */
	for (size_t i = 0; i < done; i++) {
		region_names(&regs[i], name, tmp);
		if (r < 0)
			unlinkat(dir_fd, tmp, 0);
		else if (renameat(dir_fd, tmp, dir_fd, name) < 0)
			r = -errno;
	}
	for (uint32_t i = 0; i < sdone; i++) {
		section_names(gf, i, sname, stmp);
		if (r < 0)
			unlinkat(dir_fd, stmp, 0);
		else if (renameat(dir_fd, stmp, dir_fd, sname) < 0)
			r = -errno;
	}
	if (r == 0 && fsync(dir_fd) < 0)
		r = -errno;
	report(&c, true);
	return r;
}
