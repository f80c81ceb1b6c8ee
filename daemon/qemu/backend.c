// SPDX-License-Identifier: GPL-2.0-only
/* A QEMU guest's RAM backends: discovery, refusals, access (backend.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "basic/util.h"
#include "qemu/backend.h"
#include "track/maps.h"

#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

const char *qemu_backend_kind_name(enum qemu_backend_kind k)
{
	switch (k) {
	case QEMU_BACKEND_FILE:
		return "memory-backend-file";
	case QEMU_BACKEND_MEMFD:
		return "memory-backend-memfd";
	case QEMU_BACKEND_RAM:
		return "memory-backend-ram";
	default:
		return "memory backend";
	}
}

const struct qemu_backend *qemu_ram_find(const struct qemu_ram *ram, const char *id)
{
	for (size_t i = 0; i < ram->n; i++)
		if (strcmp(ram->b[i].id, id) == 0)
			return &ram->b[i];
	return NULL;
}

static int qom_get_string(struct qmp *q, const char *id, const char *prop, int timeout_ms,
			  char *out, size_t len, struct qmp_error *err)
{
	char path[QEMU_BACKEND_ID_MAX + 16];
	json_object *v = NULL;
	int r;

	snprintf(path, sizeof(path), "/objects/%s", id);
	r = qmp_executev(q, "qom-get", timeout_ms, &v, err, "path", json_object_new_string(path),
			 "property", json_object_new_string(prop), NULL);
	if (r < 0)
		return r;
	snprintf(out, len, "%s", json_object_is_type(v, json_type_string) ?
		 json_object_get_string(v) : "");
	json_object_put(v);
	return 0;
}

/* query-memdev: id, size, share of every backend. */
static int list_memdevs(struct qmp *q, int timeout_ms, struct qemu_ram *ram,
			struct qmp_error *err)
{
	json_object *list = NULL;
	int r = qmp_execute(q, "query-memdev", NULL, timeout_ms, &list, err);

	if (r < 0)
		return r;
	ram->n = 0;
	for (size_t i = 0; i < qmp_array_length(list); i++) {
		json_object *m = json_object_array_get_idx(list, i), *v;
		struct qemu_backend *b;
		const char *id = qmp_str(m, "id");

		if (!id || ram->n == QEMU_MAX_BACKENDS)
			continue;
		b = &ram->b[ram->n++];
		memset(b, 0, sizeof(*b));
		snprintf(b->id, sizeof(b->id), "%s", id);
		if (json_object_object_get_ex(m, "size", &v))
			b->size = (uint64_t)json_object_get_int64(v);
		if (json_object_object_get_ex(m, "share", &v))
			b->share = json_object_get_boolean(v);
	}
	json_object_put(list);
	return 0;
}

static int describe(struct qmp *q, int timeout_ms, struct qemu_backend *b,
		    struct qmp_error *err)
{
	int r = qom_get_string(q, b->id, "type", timeout_ms, b->type, sizeof(b->type), err);

	if (r < 0)
		return r;
	if (strcmp(b->type, "memory-backend-file") == 0) {
		b->kind = QEMU_BACKEND_FILE;
		return qom_get_string(q, b->id, "mem-path", timeout_ms, b->mem_path,
				      sizeof(b->mem_path), err);
	}
	if (strcmp(b->type, "memory-backend-memfd") == 0)
		b->kind = QEMU_BACKEND_MEMFD;
	else if (strcmp(b->type, "memory-backend-ram") == 0)
		b->kind = QEMU_BACKEND_RAM;
	else
		b->kind = QEMU_BACKEND_OTHER;
	return 0;
}

/* Does VMA v look like backend b's mapping?  QEMU maps a backend whole,
 * shared, at file offset 0; a file backend under its mem-path (the name as
 * QEMU's mount namespace shows it), a memfd as /memfd:<type> (deleted). */
static bool vma_matches(const struct vma *v, const struct qemu_backend *b)
{
	size_t n;

	if (!v->shared || v->end - v->start != b->size || v->pgoff != 0)
		return false;
	if (b->kind == QEMU_BACKEND_MEMFD)
		return strncmp(v->path, "/memfd:", 7) == 0;
	if (b->kind != QEMU_BACKEND_FILE || !b->mem_path[0])
		return false;
	n = strlen(b->mem_path);
	/* mem-path may name a directory, in which QEMU creates a file. */
	return strncmp(v->path, b->mem_path, n) == 0 &&
	       (v->path[n] == '\0' || v->path[n] == '/' || v->path[n] == ' ');
}

static void find_mappings(struct qemu_ram *ram, const struct vma_list *maps)
{
	for (size_t i = 0; i < ram->n; i++) {
		struct qemu_backend *b = &ram->b[i];

		for (size_t k = 0; k < maps->n; k++) {
			const struct vma *v = &maps->v[k];
			bool taken = false;

			if (!vma_matches(v, b))
				continue;
			for (size_t j = 0; j < i; j++)
				taken |= ram->b[j].start == v->start;
			if (taken)
				continue;
			b->start = v->start;
			b->end = v->end;
			b->pgoff = v->pgoff;
			b->dev_major = v->dev_major;
			b->dev_minor = v->dev_minor;
			b->ino = v->ino;
			break;
		}
	}
}

/* Page size and hugetlbfs, from the backing file itself. */
static void probe_backing(pid_t pid, struct qemu_backend *b)
{
	_cleanup_close_ int fd = -1;
	struct statfs sf;

	b->page_size = PAGE_SIZE_4K;
	if (!b->start || qemu_backend_open(pid, b, &fd) < 0)
		return;
	if (fstatfs(fd, &sf) == 0 && (unsigned long)sf.f_type == HUGETLBFS_MAGIC) {
		b->hugetlb = true;
		b->page_size = (uint64_t)sf.f_bsize;
	}
}

int qemu_ram_discover(struct qmp *q, int timeout_ms, struct qemu_ram *ram,
		      struct qmp_error *err)
{
	struct vma_list maps = { 0 };
	int r;

	memset(ram, 0, sizeof(*ram));
	ram->pid = qmp_pid(q);
	r = list_memdevs(q, timeout_ms, ram, err);
	for (size_t i = 0; r == 0 && i < ram->n; i++)
		r = describe(q, timeout_ms, &ram->b[i], err);
	if (r < 0)
		return r;
	r = maps_read(ram->pid, &maps);
	if (r < 0)
		return r;
	find_mappings(ram, &maps);
	vma_list_free(&maps);
	for (size_t i = 0; i < ram->n; i++)
		probe_backing(ram->pid, &ram->b[i]);
	return 0;
}

struct fd_match {
	int pidfd;
	const struct qemu_backend *b;
	int fd;
};

static int match_fd(void *ud, const char *name, const char *target)
{
	struct fd_match *m = ud;
	struct stat st;
	int fd;

	if (strncmp(target, "socket:", 7) == 0 || strncmp(target, "pipe:", 5) == 0 ||
	    strncmp(target, "anon_inode:", 11) == 0)
		return 0;
	fd = (int)syscall(SYS_pidfd_getfd, m->pidfd, atoi(name), 0);
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_ino == m->b->ino &&
	    major(st.st_dev) == m->b->dev_major && minor(st.st_dev) == m->b->dev_minor) {
		m->fd = fd;
		return 1;
	}
	close(fd);
	return 0;
}

int qemu_backend_open(pid_t pid, const struct qemu_backend *b, int *ret_fd)
{
	struct fd_match m = { .b = b, .fd = -1 };
	struct stat st;
	char path[96];
	int fd;

	if (!b->start)
		return -ENOENT;
	m.pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (m.pidfd < 0)
		return -errno;
	proc_fd_foreach(pid, match_fd, &m);
	close(m.pidfd);
	if (m.fd >= 0) {
		*ret_fd = m.fd;
		return 0;
	}
	/* QEMU closed its fd (or never kept one): the mapped file itself.  A
	 * magic link (no O_NOFOLLOW); non-blocking, and it must still be the
	 * regular file found in maps (QEMU may have remapped since). */
	snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid,
		 b->start, b->end);
	fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_ino != b->ino ||
	    major(st.st_dev) != b->dev_major || minor(st.st_dev) != b->dev_minor) {
		close(fd);
		return -ESTALE;
	}
	*ret_fd = fd;
	return 0;
}
