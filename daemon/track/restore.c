// SPDX-License-Identifier: GPL-2.0-only
#include "track/restore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "basic/util.h"
#include "track/freeze.h"
#include "track/maps.h"

#define STEP (4UL << 20)

/* Every image region must still be one writable mapping, exactly. */
static int check_layout(pid_t pid, const struct pass_region *regions, size_t n, char *why,
			size_t why_len)
{
	struct vma_list maps;
	int r = maps_read(pid, &maps);

	if (r < 0) {
		snprintf(why, why_len, "cannot read the layout of process %d: %s", (int)pid,
			 strerror(-r));
		return r;
	}
	for (size_t i = 0; i < n && r == 0; i++) {
		const struct pass_region *g = &regions[i];
		bool found = false;

		for (size_t j = 0; j < maps.n && !found; j++)
			found = maps.v[j].start == g->start && maps.v[j].end == g->end &&
				maps.v[j].write;
		if (!found) {
			snprintf(why, why_len,
				 "layout of process %d no longer matches the image: region "
				 "%llx-%llx (%s) is missing, resized or not writable; nothing "
				 "was changed", (int)pid, (unsigned long long)g->start,
				 (unsigned long long)g->end, g->path && g->path[0] ? g->path : "anon");
			r = -ESTALE;
		}
	}
	vma_list_free(&maps);
	return r;
}

static int vm_rw(pid_t pid, uint64_t addr, uint8_t *buf, uint64_t len, bool write)
{
	struct iovec l = { buf, len }, rv = { (void *)addr, len };
	ssize_t n = write ? process_vm_writev(pid, &l, 1, &rv, 1, 0)
			  : process_vm_readv(pid, &l, 1, &rv, 1, 0);

	if (n < 0)
		return -errno;
	return (uint64_t)n == len ? 0 : -EIO;
}

/* Write back the pages of [a, a+len) that differ from the image. */
static int restore_step(pid_t pid, uint64_t a, uint64_t len, uint8_t *img, uint8_t *cur,
			struct restore_stats *st)
{
	int r = vm_rw(pid, a, cur, len, false);

	if (r < 0)
		return r;
	for (uint64_t o = 0; o < len;) {
		uint64_t run = 0;

		while (o + run < len && memcmp(img + o + run, cur + o + run, PAGE_SIZE_4K))
			run += PAGE_SIZE_4K;
		if (run) {
			r = vm_rw(pid, a + o, img + o, run, true);
			if (r < 0)
				return r;
			st->pages_written += run / PAGE_SIZE_4K;
			o += run;
		} else {
			o += PAGE_SIZE_4K;
		}
	}
	st->pages_checked += len / PAGE_SIZE_4K;
	return 0;
}

int restore_process(pid_t pid, const struct pass_region *regions, size_t n,
		    image_read_fn read, void *ud, struct restore_stats *st,
		    char *why, size_t why_len)
{
	uint64_t t0 = now_ns();
	uint8_t *img = malloc(STEP), *cur = malloc(STEP);
	struct freeze f;
	int r;

	*st = (struct restore_stats){ 0 };
	if (!img || !cur) {
		free(img);
		free(cur);
		return -ENOMEM;
	}
	r = freeze_process(pid, &f);
	if (r < 0) {
		snprintf(why, why_len, "cannot stop process %d: %s", (int)pid,
			 f.why[0] ? f.why : strerror(-r));
		goto out;
	}
	r = check_layout(pid, regions, n, why, why_len);
	for (size_t i = 0; r == 0 && i < n; i++)
		for (uint64_t a = regions[i].start; r == 0 && a < regions[i].end; a += STEP) {
			uint64_t len = MIN(STEP, regions[i].end - a);

			r = read(ud, a, len, img);
			if (r < 0)
				snprintf(why, why_len, "cannot read the image at %llx: %s",
					 (unsigned long long)a, strerror(-r));
			else if ((r = restore_step(pid, a, len, img, cur, st)) < 0)
				snprintf(why, why_len, "cannot write process %d at %llx: %s",
					 (int)pid, (unsigned long long)a, strerror(-r));
		}
	st->pause_ns = now_ns() - f.t_start_ns;
	thaw_process(&f, false);
out:
	st->ns = now_ns() - t0;
	free(img);
	free(cur);
	return r;
}
