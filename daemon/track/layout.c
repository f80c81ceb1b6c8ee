// SPDX-License-Identifier: GPL-2.0-only
/*
 * Keep the uffd registrations in step with the target's layout.  Each pass
 * re-reads /proc/PID/maps: writable mappings not yet registered are
 * registered (and owed a whole first capture), registered ranges that are
 * no longer writable mappings are unregistered.  Unmapped ranges leave the
 * registered set through UFFD_EVENT_UNMAP, and a range mremap()ed away
 * through UFFD_EVENT_REMAP, whose handler (tracker.c) unregisters it at its
 * new address so it shows up here as new and is adopted whole.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "internal.h"
#include "basic/log.h"
#include "basic/util.h"
#include "track/regions.h"

/* Does any process other than pid map (dev, ino) shared? */
static bool mapped_elsewhere(pid_t pid, uint32_t maj, uint32_t min, uint64_t ino)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	bool found = false;

	if (!d)
		return false;
	while (!found && (de = readdir(d))) {
		pid_t other = (pid_t)atoi(de->d_name);
		struct vma_list maps;

		if (other <= 0 || other == pid || other == getpid())
			continue;
		if (maps_read(other, &maps) < 0)
			continue;
		for (size_t i = 0; i < maps.n && !found; i++)
			found = maps.v[i].shared && maps.v[i].ino == ino &&
				maps.v[i].dev_major == maj && maps.v[i].dev_minor == min;
		vma_list_free(&maps);
	}
	closedir(d);
	return found;
}

static int backing_get(struct tracker *t, const struct vma *v)
{
	char path[96];
	int fd;

	for (size_t i = 0; i < t->n_backing; i++)
		if (t->backing[i].ino == v->ino && t->backing[i].dev_major == v->dev_major &&
		    t->backing[i].dev_minor == v->dev_minor)
			return (int)i;
	snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", (int)t->pid,
		 (unsigned long long)v->start, (unsigned long long)v->end);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return log_warning_errno(errno, "pid %d: cannot open backing file of %s: %m",
					 (int)t->pid, path);
	struct backing *nb = reallocarray(t->backing, t->n_backing + 1, sizeof(*nb));
	if (!nb) {
		close(fd);
		return -ENOMEM;
	}
	t->backing = nb;
	t->backing[t->n_backing] = (struct backing){
		.ino = v->ino, .dev_major = v->dev_major, .dev_minor = v->dev_minor, .fd = fd,
		.shared_elsewhere = mapped_elsewhere(t->pid, v->dev_major, v->dev_minor, v->ino),
	};
	if (t->backing[t->n_backing].shared_elsewhere)
		log_warning("pid %d: %s is mapped shared by another process too; its writes "
			    "there are not tracked", (int)t->pid, v->path);
	return (int)t->n_backing++;
}

void layout_mark_all_shared(struct tracker *t)
{
	for (size_t i = 0; i < t->n_backing; i++)
		t->backing[i].shared_elsewhere = true;
	t->sharing_checked_ns = 0; /* look again at the next live pass */
}

/* Who else maps our shared files changes (fork, exit, fd passing): look
 * again now and then, in live passes only (it reads every /proc/PID/maps). */
void layout_recheck_sharing(struct tracker *t, uint64_t now)
{
	if (!t->n_backing || (t->sharing_checked_ns && now - t->sharing_checked_ns < 2000000000ULL))
		return;
	t->sharing_checked_ns = now;
	for (size_t i = 0; i < t->n_backing; i++) {
		struct backing *b = &t->backing[i];
		bool now_shared = mapped_elsewhere(t->pid, b->dev_major, b->dev_minor, b->ino);

		if (now_shared && !b->shared_elsewhere)
			log_warning("pid %d: a shared mapping (inode %llu) is now mapped by "
				    "another process too; it is read whole every final pass",
				    (int)t->pid, (unsigned long long)b->ino);
		b->shared_elsewhere = now_shared;
	}
}

static int register_range(struct tracker *t, uint64_t start, uint64_t end)
{
	struct uffdio_register reg = {
		.range = { .start = start, .len = end - start },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};

	if (ioctl(t->uffd, UFFDIO_REGISTER, &reg) < 0)
		return -errno;
	return 0;
}

void layout_unregister(struct tracker *t, uint64_t start, uint64_t end)
{
	struct uffdio_range range = { .start = start, .len = end - start };

	if (ioctl(t->uffd, UFFDIO_UNREGISTER, &range) < 0 && errno != EINVAL && errno != ENOENT)
		log_debug_errno(errno, "pid %d: unregister %llx-%llx: %m", (int)t->pid,
				(unsigned long long)start, (unsigned long long)end);
}

/* Is the mapping at addr registered for write-protect (VmFlags "uw") by
 * some userfaultfd already?  Read from smaps: only when a register failed. */
static bool wp_registered(pid_t pid, uint64_t addr)
{
	_cleanup_free_ char *text = NULL;
	char path[64];
	bool in = false;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	if (read_full_file(path, &text, NULL) < 0)
		return false;
	for (char *l = text, *nl; l && *l; l = nl ? nl + 1 : NULL) {
		unsigned long long s, e;

		nl = strchr(l, '\n');
		if (nl)
			*nl = 0;
		if (sscanf(l, "%llx-%llx ", &s, &e) == 2 && strchr(l, '-') < strchr(l, ' '))
			in = s <= addr && addr < e;
		else if (in && !strncmp(l, "VmFlags:", 8))
			return strstr(l, " uw") != NULL;
	}
	return false;
}

/* Register the parts of v not yet registered (or known untrackable). */
static int adopt_vma(struct tracker *t, const struct vma *v)
{
	struct range_set missing = { 0 };
	int r = range_set_add(&missing, v->start, v->end);

	for (size_t i = 0; r == 0 && i < t->registered.n; i++)
		r = range_set_remove(&missing, t->registered.r[i].start, t->registered.r[i].end);
	for (size_t i = 0; r == 0 && i < t->untracked.n; i++)
		r = range_set_remove(&missing, t->untracked.r[i].start, t->untracked.r[i].end);
	for (size_t i = 0; r == 0 && i < missing.n; i++) {
		uint64_t s = missing.r[i].start, e = missing.r[i].end;
		int rr = register_range(t, s, e);

		if (rr == 0) {
			r = range_set_add(&t->registered, s, e);
			if (r == 0)
				r = range_set_add(&t->pending_new, s, e);
		} else if (rr == -EBUSY && t->attaching && wp_registered(t->pid, s)) {
			/* Another userfaultfd (another wpmigd?) tracks writes here:
			 * ours would see none, every pass would copy it all. */
			t->wp_taken = (struct range){ s, e };
			r = -EBUSY;
		} else {
			log_warning_errno(rr, "pid %d: %llx-%llx (%s) cannot be write-protected "
					  "(%m); it is read whole every final pass", (int)t->pid,
					  (unsigned long long)s, (unsigned long long)e,
					  v->path[0] ? v->path : vma_kind_name(v->kind));
			r = range_set_add(&t->untracked, s, e);
		}
	}
	range_set_free(&missing);
	return r;
}

static int add_region(struct tracker *t, const struct vma *v, struct pass *out)
{
	struct pass_region *pr = &out->regions[out->n_regions];

	*pr = (struct pass_region){
		.start = v->start, .end = v->end, .pgoff = v->pgoff, .ino = v->ino,
		.dev_major = v->dev_major, .dev_minor = v->dev_minor,
		.prot = (v->read ? PROT_READ : 0) | (v->write ? PROT_WRITE : 0) |
			(v->exec ? PROT_EXEC : 0),
		.shared = v->shared, .kind = v->kind, .backing = -1,
		.path = strdup(v->path),
	};
	if (!pr->path)
		return -ENOMEM;
	out->n_regions++;
	if (v->kind == VMA_SHARED) {
		int b = backing_get(t, v);

		if (b == -ENOMEM)
			return b;
		pr->backing = b >= 0 ? b : -1;
		if (b >= 0 && t->backing[b].shared_elsewhere)
			pr->flags |= REGION_SHARED_ELSEWHERE;
	}
	if (range_set_overlaps(&t->untracked, v->start, v->end))
		pr->flags |= REGION_UNTRACKED;
	return 0;
}

/* Drop registrations of ranges that are no longer writable mappings. */
static int forget_lost(struct tracker *t, const struct vma_list *maps,
		       const struct range_set *image)
{
	struct range_set lost = { 0 };
	int r = 0;

	for (size_t i = 0; r == 0 && i < t->registered.n; i++)
		r = range_set_add(&lost, t->registered.r[i].start, t->registered.r[i].end);
	for (size_t i = 0; r == 0 && i < image->n; i++)
		r = range_set_remove(&lost, image->r[i].start, image->r[i].end);
	for (size_t i = 0; r == 0 && i < lost.n; i++) {
		uint64_t s = lost.r[i].start, e = lost.r[i].end;

		/* Still mapped (mprotect()ed read-only): unregister it, so a
		 * later writable mapping there starts from a clean state. */
		for (size_t j = 0; j < maps->n; j++) {
			uint64_t a = MAX(s, maps->v[j].start), b = MIN(e, maps->v[j].end);
			if (a < b)
				layout_unregister(t, a, b);
		}
		range_set_remove(&t->registered, s, e);
		range_set_remove(&t->pending_new, s, e);
	}
	range_set_free(&lost);
	if (r)
		return r;
	/* Untracked ranges that went away are forgotten as well. */
	struct range_set keep = { 0 };
	for (size_t i = 0; r == 0 && i < image->n; i++)
		r = range_set_clip(&t->untracked, image->r[i].start, image->r[i].end, &keep);
	range_set_swap(&keep, &t->untracked);
	range_set_free(&keep);
	return r;
}

int layout_sync(struct tracker *t, const struct vma_list *maps, struct pass *out)
{
	struct range_set image = { 0 };
	int r = 0;

	regions_free(out->regions, out->n_regions);
	out->n_regions = 0;
	out->regions = calloc(maps->n ? maps->n : 1, sizeof(*out->regions));
	if (!out->regions)
		return -ENOMEM;
	for (size_t i = 0; r == 0 && i < maps->n; i++) {
		const struct vma *v = &maps->v[i];

		if (!vma_is_image(v) || (t->only.n && !range_set_overlaps(&t->only, v->start, v->end)))
			continue;
		r = range_set_add(&image, v->start, v->end);
		if (r == 0)
			r = adopt_vma(t, v);
		if (r == 0)
			r = add_region(t, v, out);
	}
	if (r == 0)
		r = forget_lost(t, maps, &image);
	range_set_free(&image);
	return r;
}

void layout_unregister_all(struct tracker *t)
{
	struct vma_list maps;

	if (maps_read(t->pid, &maps) < 0)
		return; /* gone: nothing left to unregister */
	/* Whole VMAs: one that grew in place (mremap, brk) carries the
	 * registration beyond the range we registered. */
	for (size_t j = 0; j < maps.n; j++)
		if (range_set_overlaps(&t->registered, maps.v[j].start, maps.v[j].end))
			layout_unregister(t, maps.v[j].start, maps.v[j].end);
	vma_list_free(&maps);
	range_set_clear(&t->registered);
}
