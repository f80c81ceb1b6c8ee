// SPDX-License-Identifier: GPL-2.0-only
/*
 * PAGEMAP_SCAN loops.  The vector can fill and the walk stop early, so a
 * scan resumes until the range is covered.  When a call returns more than
 * 512 regions the kernel restarts its walk internally and may report
 * walk_end short of where it got although it returned every page, so
 * walk_end < end is not taken alone as "pages left": we resume from the
 * further of walk_end and the last returned region, and rescanning an
 * already re-protected range is harmless (nothing is reported twice).
 */
#include <errno.h>
#include <stdbool.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "internal.h"
#include "basic/util.h"

/* Zero-pfn pages are zero; every other page returned is data. */
static int scan_loop(struct tracker *t, struct pm_scan_arg tmpl, struct pass *out)
{
	uint64_t cur = tmpl.start, end = tmpl.end;

	while (cur < end) {
		struct pm_scan_arg arg = tmpl;
		long n;

		arg.start = cur;
		arg.vec = (uint64_t)(uintptr_t)t->vec;
		arg.vec_len = t->vec_len;
		n = ioctl(t->pagemap_fd, PAGEMAP_SCAN, &arg);
		out->st.scan_calls++;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		for (long i = 0; i < n; i++) {
			const struct page_region *r = &t->vec[i];
			uint64_t pages = (r->end - r->start) / PAGE_SIZE_4K;
			bool zero = r->categories & PAGE_IS_PFNZERO;
			int rc = range_set_add(zero ? &out->zero : &out->data, r->start, r->end);

			if (rc < 0)
				return rc;
			if (zero)
				out->st.zero_pages += pages;
			if (r->categories & PAGE_IS_WRITTEN)
				out->st.written_pages += pages;
		}
		uint64_t next = MAX(arg.walk_end, n > 0 ? t->vec[n - 1].end : cur);
		if (next <= cur || (n < (long)t->vec_len && arg.walk_end >= end))
			break;
		cur = next;
	}
	return 0;
}

/*
 * Written pages in [start, end), atomically re-protected: only populated
 * ones (present or swapped).  Asked only for "written", this kernel also
 * reports every empty entry and protects it with a marker, allocating page
 * tables to hold the markers: 2 MiB per GiB of never-touched mapping, kept
 * after we detach; for an ASan binary's terabytes of shadow that is tens of
 * GiB and the OOM killer.  An empty page needs no protection anyway: a
 * write to it populates an entry without the protect bit, reported by the
 * next scan; one emptied by a zap is announced by UFFD_EVENT_REMOVE.
 */
int scan_written(struct tracker *t, uint64_t start, uint64_t end, struct pass *out)
{
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
		.start = start,
		.end = end,
		.category_mask = PAGE_IS_WRITTEN,
		.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		.return_mask = PAGE_IS_WRITTEN | PAGE_IS_PFNZERO,
	};

	return scan_loop(t, arg, out);
}

/* Populated pages in [start, end), no protection change. */
int scan_present(struct tracker *t, uint64_t start, uint64_t end, struct pass *out)
{
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.start = start,
		.end = end,
		.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_PFNZERO,
	};

	return scan_loop(t, arg, out);
}

/*
 * Data and holes of a file range mapped at [start, end) from offset off:
 * holes read as zero, so they are recorded as zero without reading.
 */
int scan_file_extents(int fd, uint64_t off, uint64_t start, uint64_t end, struct pass *out)
{
	uint64_t len = end - start, pos = off;
	int r;

	while (pos < off + len) {
		off_t d = lseek(fd, (off_t)pos, SEEK_DATA);
		uint64_t data = d < 0 ? off + len : MIN((uint64_t)d, off + len);

		if (d < 0 && errno != ENXIO)
			return -errno;
		if (data > pos) {
			r = range_set_add(&out->zero, start + (pos - off), start + (data - off));
			if (r < 0)
				return r;
		}
		if (data >= off + len)
			break;
		off_t h = lseek(fd, (off_t)data, SEEK_HOLE);
		uint64_t hole = h < 0 ? off + len : MIN((uint64_t)h, off + len);
		/* SEEK_HOLE is page-granular on shmem; round data outwards. */
		uint64_t a = data & ~(PAGE_SIZE_4K - 1);
		uint64_t b = (hole + PAGE_SIZE_4K - 1) & ~(PAGE_SIZE_4K - 1);
		r = range_set_add(&out->data, start + (a - off), start + (MIN(b, off + len) - off));
		if (r < 0)
			return r;
		pos = hole;
	}
	return 0;
}
