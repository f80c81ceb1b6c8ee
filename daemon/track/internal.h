/* SPDX-License-Identifier: GPL-2.0-only */
/* State shared by tracker.c, layout.c and scan.c; not for other users. */
#pragma once

#include <pthread.h>

#include "basic/uapi.h"
#include "track/tracker.h"

struct backing {
	uint64_t ino;
	uint32_t dev_major, dev_minor;
	int fd;
	bool shared_elsewhere;
};

struct tracker {
	pid_t pid;
	int pidfd, uffd, pagemap_fd, stop_fd;
	struct tracker_opts opts;

	/* Event thread: reads UFFD_EVENT_REMOVE/UNMAP promptly (the target
	 * thread that caused one waits until it is read). */
	pthread_t ev_thread;
	bool ev_running;
	pthread_mutex_t lock; /* guards the ev_* fields below */
	struct range_set ev_unmapped, ev_removed, ev_moved;
	uint64_t n_ev_remove, n_ev_unmap, n_ev_remap, n_ev_fork;
	int ev_error;

	/* Owned by whoever runs passes (one at a time, pass_lock). */
	pthread_mutex_t pass_lock;
	struct range_set registered; /* ranges registered with our uffd */
	struct range_set untracked;  /* image ranges we could not register */
	struct range_set pending_new; /* registered, first capture still due */
	struct range_set gen_removed; /* removed since the last final pass */
	struct range_set resync;      /* owed again by a failed generation */
	struct range_set only;        /* opts.only, copied: the mappings to track */
	struct backing *backing;
	size_t n_backing;
	struct page_region *vec;
	uint32_t vec_len;
	uint64_t passes, attach_ns, last_written, last_scan_ns;
	uint64_t forks_seen, sharing_checked_ns;
	uint32_t attach_threads_exited;
	bool always_dirty; /* pinned memory: allow_pinned tracks it this way */
	bool attaching;    /* layout_sync of the attach: a range another uffd
			    * write-protects already fails it (wp_taken says which) */
	struct range wp_taken;
	struct scan_helper *helper; /* scan.c: splits the final scan */
};

/* events.c */
void *tracker_event_thread(void *arg);
/* Take the ranges the event thread collected since the last pass. */
int tracker_take_events(struct tracker *t, struct range_set *removed);

/* layout.c */
int layout_sync(struct tracker *t, const struct vma_list *maps, struct pass *out);
void layout_unregister_all(struct tracker *t);
void layout_unregister(struct tracker *t, uint64_t start, uint64_t end);
void layout_mark_all_shared(struct tracker *t);
void layout_recheck_sharing(struct tracker *t, uint64_t now);

/* scan.c */
int scan_written(struct tracker *t, uint64_t start, uint64_t end, struct pass *out);
int scan_present(struct tracker *t, uint64_t start, uint64_t end, struct pass *out);
int scan_file_extents(int fd, uint64_t off, uint64_t start, uint64_t end, struct pass *out);
/* The final scan is split with a helper thread from this much memory on
 * (opts.scan_split_min unless 0): below it the helper's wakeup costs about
 * what it saves. */
#define SCAN_SPLIT_MIN (64ULL << 20)
uint64_t scan_split_min(const struct tracker *t);
int scan_helper_start(struct tracker *t);
void scan_helper_stop(struct tracker *t);
bool scan_split_worth(const struct tracker *t, const struct range_set *ranges);
/* scan_written() of every range, split between this thread and the helper;
 * a range a VMA of which is not ours any more goes into *failed. */
int scan_written_split(struct tracker *t, const struct range_set *ranges, struct pass *out,
		       struct range_set *failed);
