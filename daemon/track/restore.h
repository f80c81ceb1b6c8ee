/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Roll a running, tracked process back to an image: the memory of its
 * mappings and (unless memory only) every thread's state, so that each
 * thread continues from where it was at the checkpoint.
 *
 * The pause is proportional to what differs, not to the image: the caller
 * decodes and checks the image first (restore_image_*, into memory or an
 * unlinked temporary file), while the process runs; restore_process then
 * compares the image with the live process while it still runs (a tracker
 * pass first, so the tracker tells what the process writes from then on),
 * and only then freezes it, checks its threads and mappings against the
 * image (refusing, with nothing changed, when they differ), adds the pages
 * written since the comparison began, writes back exactly those pages and
 * the ones found different (process_vm_writev in batches, pwrite for shared
 * mappings), puts every thread's state back and thaws it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "track/threads.h"
#include "track/tracker.h"

/* Decoded images up to this size stay in memory; larger ones go to a file. */
#define RESTORE_MEM_MAX (256ULL << 20)

struct restore_image;

/* An empty image over regions (copied). */
int restore_image_new(const struct pass_region *regions, size_t n, struct restore_image **ret);
/* The next piece, page aligned, inside the regions and after the last one:
 * zero, or data to come with restore_image_fill. */
int restore_image_add(struct restore_image *ri, uint64_t addr, uint64_t len, bool data);
/* After the last add: room for the data pages, in memory, or in an unlinked
 * file in tmp_dir when they are more than mem_max bytes. */
int restore_image_alloc(struct restore_image *ri, uint64_t mem_max, const char *tmp_dir);
/* Bytes of a data piece (or part of one), in any order. */
int restore_image_fill(struct restore_image *ri, uint64_t addr, uint64_t len,
		       const uint8_t *bytes);
/* After the last fill: -EBADMSG unless every data byte came. */
int restore_image_seal(struct restore_image *ri);
void restore_image_free(struct restore_image *ri);
bool restore_image_in_file(const struct restore_image *ri);
uint64_t restore_image_data_bytes(const struct restore_image *ri);

struct restore_opts {
	bool memory_only;                    /* every thread keeps its registers */
	const struct thread_states *threads; /* required unless memory_only */
	/* Progress of the comparison, in pages; phase "compare". */
	void (*progress)(void *ud, const char *phase, uint64_t done, uint64_t total);
	void *ud;
};

struct restore_stats {
	uint64_t image_pages;         /* pages of the image's regions */
	uint64_t pages_compared;      /* read from the process while it ran */
	uint64_t pages_differing;     /* different then (unpopulated ones included) */
	uint64_t pages_written_since; /* written by the process after the comparison began */
	uint64_t pages_written;       /* written back while it was frozen */
	uint64_t write_calls;         /* process_vm_writev and pwritev calls */
	uint32_t threads;             /* whose state was put back */
	uint64_t compare_ns;
	uint64_t pause_ns, freeze_ns, scan_ns, write_ns, threads_ns, thaw_ns;
};

/*
 * why gets the reason of a failure.  -ESTALE: threads or mappings differ
 * from the image (nothing was changed).  A failure after the first write
 * leaves the process stopped (SIGSTOP): it cannot safely run on half
 * restored; why says so.  Pages this restore took from the tracker, and
 * the ones it wrote, are handed back (tracker_resync): a later checkpoint
 * still holds every change.  Call from the thread that may ptrace.
 */
int restore_process(struct tracker *t, const struct restore_image *ri,
		    const struct restore_opts *o, struct restore_stats *st, char *why,
		    size_t why_len);
