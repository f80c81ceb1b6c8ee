// SPDX-License-Identifier: GPL-2.0-only
/*
 * The tracker's event thread: UFFD_EVENT_REMOVE, UNMAP, REMAP and FORK are
 * synchronous (the target thread that caused one waits until it is read),
 * so a thread of ours reads them at once and collects their ranges for the
 * next pass.
 */
#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include "internal.h"
#include "basic/log.h"

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

void *tracker_event_thread(void *arg)
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

/* Take the ranges the event thread collected since the last pass. */
int tracker_take_events(struct tracker *t, struct range_set *removed)
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

