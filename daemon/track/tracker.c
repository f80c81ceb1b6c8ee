// SPDX-License-Identifier: GPL-2.0-only
#include "track/tracker.h"

#include <dirent.h>
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
#include <sys/wait.h>

#include "internal.h"
#include "basic/log.h"
#include "basic/util.h"
#include "track/inject.h"

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
	int r = proc_fd_foreach(pid, is_pinning_fd, &c);

	if (r < 0 && r != -EPERM)
		snprintf(why, why_len, "cannot list the fds of process %d for pinned memory: %s",
			 (int)pid, strerror(-r));
	return r;
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
	t->opts.only = NULL;
	for (size_t i = 0; opts && opts->only && i < opts->only->n; i++)
		if (range_set_add(&t->only, opts->only->r[i].start, opts->only->r[i].end) < 0) {
			range_set_free(&t->only);
			free(t);
			return NULL;
		}
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
	scan_helper_stop(t);
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
	range_set_free(&t->only);
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

struct uffd_holders {
	pid_t self, target;
	pid_t found[4];
	size_t n;
	bool target_holds, exact; /* found: they hold a pidfd of the target too */
};

struct holder_scan {
	pid_t pid, target;
	bool uffd, pidfd;
};

/* A userfaultfd, and a pidfd of the target (fdinfo "Pid:"): a tracker of it. */
static int note_fd(void *ud, const char *fd, const char *target)
{
	struct holder_scan *s = ud;
	_cleanup_free_ char *text = NULL;
	char path[96], want[32];

	if (!strcmp(target, "anon_inode:[userfaultfd]"))
		s->uffd = true;
	if (strcmp(target, "anon_inode:[pidfd]") || s->pidfd)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%s", (int)s->pid, fd);
	snprintf(want, sizeof(want), "\nPid:\t%d\n", (int)s->target);
	s->pidfd = read_full_file(path, &text, NULL) == 0 && strstr(text, want);
	return 0;
}

/*
 * Who holds a userfaultfd, besides us (the target counted apart).  A uffd
 * does not say which mm it serves; a process that also holds a pidfd of
 * the target (as wpmigd does for each target) is named first, and alone
 * if there is one.
 */
static void find_uffd_holders(struct uffd_holders *h)
{
	DIR *d = opendir("/proc");
	struct dirent *de;

	while (d && (de = readdir(d))) {
		struct holder_scan s = { .pid = (pid_t)atoi(de->d_name), .target = h->target };

		if (s.pid <= 0 || s.pid == h->self)
			continue;
		proc_fd_foreach(s.pid, note_fd, &s);
		if (!s.uffd)
			continue;
		if (s.pid == h->target) {
			h->target_holds = true;
		} else if (s.pidfd && !h->exact) {
			h->exact = true;
			h->found[0] = s.pid;
			h->n = 1;
		} else if (!h->exact && h->n < ARRAY_SIZE(h->found)) {
			h->found[h->n++] = s.pid;
		}
	}
	if (d)
		closedir(d);
}

/*
 * A range is write-protect registered by another userfaultfd already:
 * another wpmigd tracks the process, or it tracks its own writes (a
 * background snapshot).  Ours would register nothing there and copy it
 * all at every pass: refused, naming who may hold it.
 */
static void wp_taken_why(const struct tracker *t, char *why, size_t why_len)
{
	struct uffd_holders h = { .self = getpid(), .target = t->pid };
	char who[160] = "", comm[32];
	size_t at = 0;

	find_uffd_holders(&h);
	for (size_t i = 0; i < h.n && at < sizeof(who); i++) {
		if (proc_status_field(h.found[i], "Name", comm, sizeof(comm)) < 0)
			snprintf(comm, sizeof(comm), "?");
		at += (size_t)snprintf(who + at, sizeof(who) - at, "%spid %d (%s)", i ? ", " : "",
				       (int)h.found[i], comm);
	}
	if (h.n)
		snprintf(why, why_len, "process %d is already tracked by another userfaultfd (%s "
			 "%s): %llx-%llx is registered for write-protect; untrack it there first",
			 (int)t->pid, who, h.exact ? "tracks it" : "may: it holds one",
			 (unsigned long long)t->wp_taken.start, (unsigned long long)t->wp_taken.end);
	else
		snprintf(why, why_len, "process %d is already tracked by another userfaultfd%s: "
			 "%llx-%llx is registered for write-protect", (int)t->pid,
			 h.target_holds ? " (its own: it write-protects its memory itself)" : "",
			 (unsigned long long)t->wp_taken.start, (unsigned long long)t->wp_taken.end);
}

/*
 * Has pid died (it was alive when the attach began)?  Then say how, from
 * its zombie's /proc/PID/stat (field 52, exit_code, as waitpid() gives it),
 * or that it was reaped already.
 */
static bool describe_death(pid_t pid, char *why, size_t why_len)
{
	_cleanup_free_ char *text = NULL;
	char path[64], state = 0;
	const char *p;
	int status = -1;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_full_file(path, &text, NULL) < 0) {
		snprintf(why, why_len, "process %d died during the attach (and was reaped: how is "
			 "not known)", (int)pid);
		return true;
	}
	p = strrchr(text, ')');
	if (!p || sscanf(p + 1, " %c", &state) != 1 || (state != 'Z' && state != 'X'))
		return false;
	for (int field = 2; p && field < 52; field++)
		p = strchr(p + 1, ' ');
	if (p)
		status = atoi(p + 1);
	if (status >= 0 && WIFSIGNALED(status))
		snprintf(why, why_len, "process %d died during the attach: killed by signal %d (%s)",
			 (int)pid, WTERMSIG(status), strsignal(WTERMSIG(status)));
	else if (status >= 0)
		snprintf(why, why_len, "process %d died during the attach: it exited with status %d",
			 (int)pid, WEXITSTATUS(status));
	else
		snprintf(why, why_len, "process %d died during the attach", (int)pid);
	return true;
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
	struct uffd_grab grab;
	r = inject_acquire_uffd(pid, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY, &grab, why,
				why_len);
	if (r < 0)
		goto fail;
	t->uffd = grab.fd;
	t->pidfd = grab.pidfd;
	t->attach_threads_exited = grab.threads_exited;
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
	if (t->stop_fd < 0 || (r = -pthread_create(&t->ev_thread, NULL, tracker_event_thread, t)) < 0) {
		r = r < 0 ? r : -errno;
		snprintf(why, why_len, "cannot start the event thread: %s", strerror(-r));
		goto fail;
	}
	t->ev_running = true;
	/* Register now: tracking starts at attach, the first pass collects. */
	t->attaching = true;
	r = maps_read(pid, &maps);
	if (r == 0) {
		r = layout_sync(t, &maps, &scratch);
		vma_list_free(&maps);
	}
	t->attaching = false;
	pass_free(&scratch);
	if (r == -EBUSY && t->wp_taken.end) {
		wp_taken_why(t, why, why_len);
		goto fail;
	}
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
	/* A target dying meanwhile (killed, or by an injected syscall) makes a
	 * step fail with a symptom: say that it died, and how. */
	if (describe_death(pid, why, why_len))
		return -ESRCH;
	/* One exiting (or traced by another) makes a step fail with a symptom
	 * too (ptrace EPERM, reads EFAULT or ENOENT): give the cause. */
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
		.attach_threads_exited = t->attach_threads_exited,
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

/* The pagemap fd holds the mm it was opened on: once that mm is gone
 * (exec, or exit) a read of it returns nothing; one that lives always
 * has an entry for address 0. */
bool tracker_mm_gone(struct tracker *t)
{
	uint64_t entry;

	return pread(t->pagemap_fd, &entry, sizeof(entry), 0) == 0;
}

int tracker_backing_fd(const struct tracker *t, int backing)
{
	return backing >= 0 && (size_t)backing < t->n_backing ? t->backing[backing].fd : -1;
}

