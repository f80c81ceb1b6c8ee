/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Exact written-page tracking of a foreign process: a userfaultfd created in
 * the target (inject.c), registered for async write-protect on every
 * writable mapping, and PAGEMAP_SCAN get-and-re-protect passes.
 *
 * A pass yields the image regions (writable VMAs, as /proc/PID/maps prints
 * them) and two disjoint range sets: `data` (pages to read) and `zero`
 * (pages whose content is now zero).  Applying both to the previous image
 * gives the image at the time of the pass; after a pass with the target
 * frozen (PASS_FINAL) it is exact.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "basic/ranges.h"
#include "track/maps.h"

enum {
	REGION_NEW = 1 << 0,       /* first captured whole in this pass */
	REGION_UNTRACKED = 1 << 1, /* cannot be write-protected: read whole (final passes) */
	REGION_SHARED_ELSEWHERE = 1 << 2, /* backing file mapped by another process */
};

struct pass_region {
	uint64_t start, end, pgoff, ino;
	uint32_t dev_major, dev_minor;
	uint32_t prot; /* PROT_READ | PROT_WRITE | PROT_EXEC */
	bool shared;
	enum vma_kind kind;
	uint32_t flags;
	int backing; /* index into the tracker's backing files, or -1 */
	char *path;
};

struct pass_stats {
	uint64_t sync_ns, scan_ns, total_ns;
	uint64_t written_pages, zero_pages, new_bytes, event_bytes;
	uint32_t scan_calls, layout_retries;
};

struct pass {
	struct pass_region *regions;
	size_t n_regions;
	struct range_set data, zero;
	struct pass_stats st;
};

enum {
	PASS_FINAL = 1 << 0, /* target frozen: also re-read every range removed
				(MADV_DONTNEED/REMOVE) since the last final pass */
};

struct tracker_opts {
	/* Track a process holding VFIO / RDMA / io_uring fds anyway: writes
	 * through their long-term pins never fault, so every final pass then
	 * re-reads every page (the process is treated as always dirty). */
	bool allow_pinned;
	uint32_t scan_vec_len; /* page_region entries per PAGEMAP_SCAN call */
	/* The final scan is split with a helper thread from this many bytes of
	 * tracked ranges on (0: 64 MiB; tests lower it to reach the split). */
	uint64_t scan_split_min;
	/* Track only the mappings overlapping these ranges (copied; NULL or
	 * empty: every writable mapping).  A QEMU guest's RAM backends. */
	const struct range_set *only;
};

struct tracker_info {
	pid_t pid;
	uint64_t registered_bytes, untracked_bytes;
	uint64_t passes, events_remove, events_unmap, events_remap, events_fork;
	uint64_t last_written_pages, last_scan_ns;
	uint64_t attach_ns; /* time taken by the attach */
	/* Threads the attach chose to stop that exited first (it chose again). */
	uint32_t attach_threads_exited;
};

struct tracker;

int tracker_attach(pid_t pid, const struct tracker_opts *opts, struct tracker **ret,
		   char *why, size_t why_len);
int tracker_pass(struct tracker *t, unsigned flags, struct pass *out);
/*
 * Pages a failed generation collected (and re-protected) are owed to the
 * next one: read ranges again in the next pass, as if their content had
 * changed without a write fault.
 */
int tracker_resync(struct tracker *t, const struct range_set *ranges);
/*
 * Pages of [start, end) that hold memory (present or swapped out, the
 * shared zero page excepted), added to out; no protection changes.  For an
 * anonymous mapping every other page reads as zero.
 */
int tracker_populated(struct tracker *t, uint64_t start, uint64_t end, struct range_set *out);
/*
 * A freeze is near: for up to ns (or until tracker_helper_release), the
 * thread that splits the final scan with the freezing thread waits on a
 * CPU, spinning at SCHED_IDLE (any other thread there runs first), rather
 * than asleep.  Woken from sleep it started 0.1-1 ms late in most frozen
 * scans on the test machine, the freezing thread scanning alone meanwhile
 * (an idle vCPU wakes slowly, and entering our address space there is
 * slow under shadow paging; docs/tracking.md).  Nothing happens without a
 * helper, or when it could not take SCHED_IDLE and leave it.
 */
void tracker_helper_hold(struct tracker *t, uint64_t ns);
void tracker_helper_release(struct tracker *t);
/* The next pass covers every page of every region: a full generation. */
int tracker_invalidate(struct tracker *t);
/* Unregister everything, close the uffd; the target keeps no trace of us. */
void tracker_detach(struct tracker *t);
void tracker_get_info(struct tracker *t, struct tracker_info *info);
pid_t tracker_pid(const struct tracker *t);
int tracker_pidfd(const struct tracker *t);
/*
 * Has the target run exec() since the attach?  Its old mm is gone then
 * (our pagemap fd reads nothing), though the PID lives on; a uffd says
 * nothing of it.  Call with the tracker held (no pass running).
 */
bool tracker_mm_gone(struct tracker *t);
/* fd of the backing file of a shared region (from pass_region.backing). */
int tracker_backing_fd(const struct tracker *t, int backing);

void pass_free(struct pass *p);
/* Index of the region holding addr, or -1. */
ssize_t pass_find_region(const struct pass *p, uint64_t addr);
