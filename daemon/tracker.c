// SPDX-License-Identifier: GPL-2.0-only
#include "tracker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include "inject.h"
#include "log.h"
#include "tracker-internal.h"
#include "util.h"

/*
 * EVENT_REMAP: a moved VMA keeps its registration and write-protect bits
 * and we are told; the moved range is then re-adopted from scratch.  The
 * event also covers MREMAP_DONTUNMAP, which empties the old range without
 * an unmap or remove event.  EVENT_FORK: we close the child's new uffd at
 * once (so the child ends with no registration and no write-protect bits)
 * and learn that shared mappings now have another writer.
 */
#define UFFD_FEATURES_NEEDED                                                   \
	(UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED |                 \
	 UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |                \
	 UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_FORK)

/* fds through which the kernel writes memory without a write fault. */
static const char *const pinning_fds[] = {
	"/dev/vfio/", "/dev/infiniband/", "anon_inode:[io_uring]",
};

struct pinned_check {
	pid_t pid;
	char *why;
	size_t why_len;
};

static int is_pinning_fd(void *ud, const char *fd, const char *target)
{
	struct pinned_check *c = ud;

	for (size_t i = 0; i < ARRAY_SIZE(pinning_fds); i++)
		if (!strncmp(target, pinning_fds[i], strlen(pinning_fds[i]))) {
			snprintf(c->why, c->why_len,
				 "process %d holds %s (fd %s): memory written through "
				 "long-term pins is invisible to write-protect",
				 (int)c->pid, target, fd);
			return -EPERM;
		}
	return 0;
}

static int check_pinned(pid_t pid, char *why, size_t why_len)
{
	struct pinned_check c = { pid, why, why_len };

	return proc_fd_foreach(pid, is_pinning_fd, &c);
}

static void handle_event(struct tracker *t, const struct uffd_msg *m)
{
	switch (m->event) {
	case UFFD_EVENT_REMOVE:
		t->n_ev_remove++;
		if (range_set_add(&t->ev_removed, m->arg.remove.start, m->arg.remove.end) < 0)
			t->ev_error = -ENOMEM;
		break;
	case UFFD_EVENT_UNMAP:
		t->n_ev_unmap++;
		if (range_set_add(&t->ev_unmapped, m->arg.remove.start, m->arg.remove.end) < 0)
			t->ev_error = -ENOMEM;
		break;
	case UFFD_EVENT_REMAP: {
		uint64_t from = m->arg.remap.from, to = m->arg.remap.to, len = m->arg.remap.len;

		t->n_ev_remap++;
		/* The old range is either unmapped (an UNMAP event follows)
		 * or, with MREMAP_DONTUNMAP, left empty: read it again. */
		if (range_set_add(&t->ev_removed, from, from + len) < 0 ||
		    range_set_add(&t->ev_moved, to, to + len) < 0)
			t->ev_error = -ENOMEM;
		break;
	}
	case UFFD_EVENT_FORK:
		/* The fd is the child's context, installed in our table by
		 * the read: closing it unregisters the child entirely. */
		close((int)m->arg.fork.ufd);
		t->n_ev_fork++;
		break;
	default:
		log_debug("pid %d: unexpected uffd event %u", (int)t->pid, m->event);
		break;
	}
}

/* Read every queued event.  Called with t->lock held: a pass that takes the
 * lock after the target stopped sees every event whose read let it go on. */
static int drain_events_locked(struct tracker *t)
{
	struct uffd_msg msgs[32];

	for (;;) {
		ssize_t n = read(t->uffd, msgs, sizeof(msgs));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -errno;
		}
		if (n == 0 || n % sizeof(msgs[0])) {
			return -EIO;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++)
			handle_event(t, &msgs[i]);
	}
}

static void *event_thread(void *arg)
{
	struct tracker *t = arg;
	struct pollfd p[2] = {
		{ .fd = t->uffd, .events = POLLIN },
		{ .fd = t->stop_fd, .events = POLLIN },
	};

	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL))
			break;
		pthread_mutex_lock(&t->lock);
		int r = drain_events_locked(t);
		if (r < 0 && !t->ev_error)
			t->ev_error = r;
		pthread_mutex_unlock(&t->lock);
	}
	return NULL;
}

static int uffd_api(int uffd)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURES_NEEDED };

	if (ioctl(uffd, UFFDIO_API, &api) < 0)
		return -errno;
	if ((api.features & UFFD_FEATURES_NEEDED) != UFFD_FEATURES_NEEDED)
		return -EOPNOTSUPP;
	return 0;
}

static struct tracker *tracker_new(pid_t pid, const struct tracker_opts *opts)
{
	struct tracker *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->pid = pid;
	t->pidfd = t->uffd = t->pagemap_fd = t->stop_fd = -1;
	if (opts)
		t->opts = *opts;
	t->vec_len = t->opts.scan_vec_len ? t->opts.scan_vec_len : 4096;
	t->vec = calloc(t->vec_len, sizeof(*t->vec));
	pthread_mutex_init(&t->lock, NULL);
	pthread_mutex_init(&t->pass_lock, NULL);
	if (!t->vec) {
		free(t);
		return NULL;
	}
	return t;
}

static void tracker_free(struct tracker *t)
{
	if (t->ev_running) {
		uint64_t one = 1;
		if (write(t->stop_fd, &one, sizeof(one)) < 0)
			log_debug_errno(errno, "stop event thread: %m");
		pthread_join(t->ev_thread, NULL);
	}
	closep(&t->uffd);
	closep(&t->pagemap_fd);
	closep(&t->stop_fd);
	closep(&t->pidfd);
	for (size_t i = 0; i < t->n_backing; i++)
		close(t->backing[i].fd);
	free(t->backing);
	range_set_free(&t->ev_unmapped);
	range_set_free(&t->ev_removed);
	range_set_free(&t->ev_moved);
	range_set_free(&t->registered);
	range_set_free(&t->untracked);
	range_set_free(&t->pending_new);
	range_set_free(&t->gen_removed);
	range_set_free(&t->resync);
	pthread_mutex_destroy(&t->lock);
	pthread_mutex_destroy(&t->pass_lock);
	free(t->vec);
	free(t);
}

static int open_pagemap(struct tracker *t)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)t->pid);
	t->pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (t->pagemap_fd < 0)
		return -errno;
	/* The pidfd proves the PID was not recycled before the open: it turns
	 * readable once the process exits.  (pidfd_send_signal(0) would need
	 * CAP_KILL for another user's process.) */
	struct pollfd p = { .fd = t->pidfd, .events = POLLIN };
	if (poll(&p, 1, 0) != 0)
		return -ESRCH;
	return 0;
}

int tracker_attach(pid_t pid, const struct tracker_opts *opts, struct tracker **ret,
		   char *why, size_t why_len)
{
	uint64_t t0 = now_ns();
	struct tracker *t;
	struct vma_list maps;
	struct pass scratch = { 0 };
	int r;

	r = target_check(pid, why, why_len);
	if (r < 0)
		return r;
	char pinned[256] = "";
	r = check_pinned(pid, pinned, sizeof(pinned));
	if (r < 0 && !(opts && opts->allow_pinned)) {
		snprintf(why, why_len, "%s", pinned);
		return r;
	}
	bool always_dirty = r < 0;
	t = tracker_new(pid, opts);
	if (!t)
		return -ENOMEM;
	t->always_dirty = always_dirty;
	if (always_dirty)
		log_warning("%s; allow_pinned is set: every final pass reads every page", pinned);
	r = inject_acquire_uffd(pid, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY, &t->uffd,
				&t->pidfd, why, why_len);
	if (r < 0)
		goto fail;
	r = uffd_api(t->uffd);
	if (r < 0) {
		snprintf(why, why_len, "UFFDIO_API with WP_ASYNC|WP_UNPOPULATED failed: %s",
			 strerror(-r));
		goto fail;
	}
	r = open_pagemap(t);
	if (r < 0) {
		snprintf(why, why_len, "cannot open /proc/%d/pagemap: %s", (int)pid, strerror(-r));
		goto fail;
	}
	t->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (t->stop_fd < 0 || (r = -pthread_create(&t->ev_thread, NULL, event_thread, t)) < 0) {
		r = r < 0 ? r : -errno;
		snprintf(why, why_len, "cannot start the event thread: %s", strerror(-r));
		goto fail;
	}
	t->ev_running = true;
	/* Register now: tracking starts at attach, the first pass collects. */
	r = maps_read(pid, &maps);
	if (r == 0) {
		r = layout_sync(t, &maps, &scratch);
		vma_list_free(&maps);
	}
	pass_free(&scratch);
	if (r < 0) {
		snprintf(why, why_len, "cannot register the mappings of %d: %s", (int)pid,
			 strerror(-r));
		goto fail;
	}
	t->attach_ns = now_ns() - t0;
	*ret = t;
	return 0;
fail:
	tracker_detach(t);
	/* A target exiting (or traced by another) meanwhile makes a step fail
	 * with a symptom (ptrace EPERM, reads EFAULT or ENOENT): give the cause. */
	if (r != -ENOMEM) {
		char cause[256];
		int rc = target_check(pid, cause, sizeof(cause));

		if (rc < 0) {
			snprintf(why, why_len, "%s", cause);
			r = rc;
		}
	}
	return r;
}

void tracker_detach(struct tracker *t)
{
	if (!t)
		return;
	/* Unregister while the event thread still reads: events raised
	 * meanwhile must not leave a target thread waiting. */
	if (t->uffd >= 0)
		layout_unregister_all(t);
	tracker_free(t);
}

/* Take the ranges the event thread collected since the last pass. */
static int take_events(struct tracker *t, struct range_set *removed)
{
	struct range_set unmapped = { 0 }, moved = { 0 }, rem = { 0 };
	int r;

	pthread_mutex_lock(&t->lock);
	r = drain_events_locked(t);
	if (r == 0)
		r = t->ev_error;
	range_set_swap(&unmapped, &t->ev_unmapped);
	range_set_swap(&moved, &t->ev_moved);
	range_set_swap(&rem, &t->ev_removed);
	uint64_t forks = t->n_ev_fork;
	pthread_mutex_unlock(&t->lock);
	/* A child maps every shared mapping too and may write it. */
	if (forks != t->forks_seen) {
		t->forks_seen = forks;
		layout_mark_all_shared(t);
	}
	for (size_t i = 0; i < unmapped.n; i++) {
		range_set_remove(&t->registered, unmapped.r[i].start, unmapped.r[i].end);
		range_set_remove(&t->pending_new, unmapped.r[i].start, unmapped.r[i].end);
	}
	/* A moved range still carries write-protect bits from its old place:
	 * drop its registration (clearing them) so the next sync adopts it
	 * anew and the first scan reports every populated page. */
	for (size_t i = 0; i < moved.n; i++) {
		layout_unregister(t, moved.r[i].start, moved.r[i].end);
		range_set_remove(&t->registered, moved.r[i].start, moved.r[i].end);
	}
	for (size_t i = 0; r == 0 && i < rem.n; i++)
		r = range_set_add(removed, rem.r[i].start, rem.r[i].end);
	range_set_free(&unmapped);
	range_set_free(&moved);
	range_set_free(&rem);
	return r;
}

/* The whole content of [s, e) from the source of truth for its kind. */
static int capture_whole(struct tracker *t, const struct pass_region *pr, uint64_t s,
			 uint64_t e, struct pass *out)
{
	if (pr->kind == VMA_SHARED && pr->backing >= 0)
		return scan_file_extents(t->backing[pr->backing].fd,
					 pr->pgoff * PAGE_SIZE_4K + (s - pr->start), s, e, out);
	return range_set_add(&out->data, s, e);
}

/* First capture of a newly registered range. */
static int capture_new(struct tracker *t, const struct pass_region *pr, uint64_t s, uint64_t e,
		       struct pass *out)
{
	out->st.new_bytes += e - s;
	/* Anon: unpopulated pages are zero; the written-scan of this pass
	 * reported every populated one (nothing was protected before). */
	if (pr->kind == VMA_ANON)
		return range_set_add(&out->zero, s, e);
	return capture_whole(t, pr, s, e, out);
}

/* A range whose content changed without a write fault (MADV_DONTNEED,
 * MADV_REMOVE, MREMAP_DONTUNMAP), or one we cannot protect: read again. */
static int capture_removed(struct tracker *t, const struct pass_region *pr, uint64_t s,
			   uint64_t e, struct pass *out)
{
	out->st.event_bytes += e - s;
	if (pr->kind == VMA_ANON) {
		int r = range_set_add(&out->zero, s, e);
		return r < 0 ? r : scan_present(t, s, e, out);
	}
	return capture_whole(t, pr, s, e, out);
}

/* Apply fn to every piece of set inside each image region. */
static int for_each_in_regions(struct tracker *t, const struct range_set *set, struct pass *out,
			       int (*fn)(struct tracker *, const struct pass_region *, uint64_t,
					 uint64_t, struct pass *))
{
	for (size_t i = 0; i < out->n_regions; i++) {
		const struct pass_region *pr = &out->regions[i];
		struct range_set part = { 0 };
		int r = range_set_clip(set, pr->start, pr->end, &part);

		for (size_t j = 0; r == 0 && j < part.n; j++)
			r = fn(t, pr, part.r[j].start, part.r[j].end, out);
		range_set_free(&part);
		if (r < 0)
			return r;
	}
	return 0;
}

static int scan_registered(struct tracker *t, struct pass *out, struct range_set *failed)
{
	for (size_t i = 0; i < out->n_regions; i++) {
		const struct pass_region *pr = &out->regions[i];
		struct range_set part = { 0 };
		int r = range_set_clip(&t->registered, pr->start, pr->end, &part);

		for (size_t j = 0; r == 0 && j < part.n; j++) {
			r = scan_written(t, part.r[j].start, part.r[j].end, out);
			/* EPERM: a VMA in there is not ours any more (replaced
			 * or moved while we looked): re-read the layout. */
			if (r == -EPERM)
				r = range_set_add(failed, part.r[j].start, part.r[j].end);
		}
		range_set_free(&part);
		if (r < 0)
			return r;
	}
	return 0;
}

static int sync_and_scan(struct tracker *t, struct pass *out, struct range_set *removed)
{
	struct range_set failed = { 0 };
	struct vma_list maps;
	int r;

	for (int attempt = 0;; attempt++) {
		uint64_t t0 = now_ns();

		r = maps_read(t->pid, &maps);
		if (r < 0)
			return r == -ENOENT ? -ESRCH : r;
		r = layout_sync(t, &maps, out);
		vma_list_free(&maps);
		if (r < 0)
			break;
		uint64_t t1 = now_ns();
		out->st.sync_ns += t1 - t0;
		range_set_clear(&failed);
		r = scan_registered(t, out, &failed);
		out->st.scan_ns += now_ns() - t1;
		if (r < 0 || !failed.n)
			break;
		if (attempt == 8) {
			r = -EAGAIN;
			break;
		}
		out->st.layout_retries++;
		r = take_events(t, removed);
		if (r < 0)
			break;
	}
	range_set_free(&failed);
	return r;
}

int tracker_pass(struct tracker *t, unsigned flags, struct pass *out)
{
	struct range_set removed = { 0 };
	uint64_t t0 = now_ns();
	int r;

	*out = (struct pass){ 0 };
	/* Writes through long-term pins never fault: read everything again. */
	if ((flags & PASS_FINAL) && t->always_dirty)
		tracker_invalidate(t);
	pthread_mutex_lock(&t->pass_lock);
	if (!(flags & PASS_FINAL))
		layout_recheck_sharing(t, t0);
	r = take_events(t, &removed);
	if (r == 0)
		r = sync_and_scan(t, out, &removed);
	/* Ranges removed since the last final pass are read again when the
	 * target is frozen: the zap that follows the event may land after a
	 * live pass read the range. */
	for (size_t i = 0; r == 0 && i < removed.n; i++)
		r = range_set_add(&t->gen_removed, removed.r[i].start, removed.r[i].end);
	if (r == 0)
		r = for_each_in_regions(t, &t->pending_new, out, capture_new);
	if (r == 0)
		r = for_each_in_regions(t, (flags & PASS_FINAL) ? &t->gen_removed : &removed, out,
					capture_removed);
	if (r == 0)
		r = for_each_in_regions(t, &t->untracked, out, capture_removed);
	if (r == 0 && t->resync.n) {
		r = for_each_in_regions(t, &t->resync, out, capture_removed);
		if (r == 0)
			range_set_clear(&t->resync);
	}
	/* Another process writes these without faulting here: read whole. */
	for (size_t i = 0; r == 0 && i < out->n_regions; i++)
		if (out->regions[i].flags & REGION_SHARED_ELSEWHERE)
			r = capture_whole(t, &out->regions[i], out->regions[i].start,
					  out->regions[i].end, out);
	/* Data wins over zero where both were recorded. */
	for (size_t i = 0; r == 0 && i < out->data.n; i++)
		r = range_set_remove(&out->zero, out->data.r[i].start, out->data.r[i].end);
	if (r == 0) {
		for (size_t i = 0; i < out->n_regions; i++)
			if (range_set_overlaps(&t->pending_new, out->regions[i].start,
					       out->regions[i].end))
				out->regions[i].flags |= REGION_NEW;
		range_set_clear(&t->pending_new);
		if (flags & PASS_FINAL)
			range_set_clear(&t->gen_removed);
		t->passes++;
		t->last_written = out->st.written_pages;
		t->last_scan_ns = out->st.scan_ns;
	}
	pthread_mutex_unlock(&t->pass_lock);
	range_set_free(&removed);
	out->st.total_ns = now_ns() - t0;
	if (r < 0)
		pass_free(out);
	return r;
}

int tracker_resync(struct tracker *t, const struct range_set *ranges)
{
	int r = 0;

	pthread_mutex_lock(&t->pass_lock);
	for (size_t i = 0; r == 0 && i < ranges->n; i++)
		r = range_set_add(&t->resync, ranges->r[i].start, ranges->r[i].end);
	pthread_mutex_unlock(&t->pass_lock);
	return r;
}

int tracker_invalidate(struct tracker *t)
{
	struct range_set all = { 0 };
	int r = 0;

	pthread_mutex_lock(&t->pass_lock);
	for (size_t i = 0; r == 0 && i < t->registered.n; i++)
		r = range_set_add(&all, t->registered.r[i].start, t->registered.r[i].end);
	pthread_mutex_unlock(&t->pass_lock);
	/* Untracked ranges are read whole at every pass anyway. */
	if (r == 0)
		r = tracker_resync(t, &all);
	range_set_free(&all);
	return r;
}

void tracker_get_info(struct tracker *t, struct tracker_info *info)
{
	pthread_mutex_lock(&t->pass_lock);
	*info = (struct tracker_info){
		.pid = t->pid,
		.registered_bytes = range_set_bytes(&t->registered),
		.untracked_bytes = range_set_bytes(&t->untracked),
		.passes = t->passes,
		.last_written_pages = t->last_written,
		.last_scan_ns = t->last_scan_ns,
		.attach_ns = t->attach_ns,
	};
	pthread_mutex_unlock(&t->pass_lock);
	pthread_mutex_lock(&t->lock);
	info->events_remove = t->n_ev_remove;
	info->events_unmap = t->n_ev_unmap;
	info->events_remap = t->n_ev_remap;
	info->events_fork = t->n_ev_fork;
	pthread_mutex_unlock(&t->lock);
}

pid_t tracker_pid(const struct tracker *t)
{
	return t->pid;
}

int tracker_pidfd(const struct tracker *t)
{
	return t->pidfd;
}

int tracker_backing_fd(const struct tracker *t, int backing)
{
	return backing >= 0 && (size_t)backing < t->n_backing ? t->backing[backing].fd : -1;
}

void pass_free(struct pass *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_regions; i++)
		free(p->regions[i].path);
	free(p->regions);
	range_set_free(&p->data);
	range_set_free(&p->zero);
	*p = (struct pass){ 0 };
}

ssize_t pass_find_region(const struct pass *p, uint64_t addr)
{
	size_t lo = 0, hi = p->n_regions;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (p->regions[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < p->n_regions && p->regions[lo].start <= addr)
		return (ssize_t)lo;
	return -1;
}
