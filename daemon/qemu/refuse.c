// SPDX-License-Identifier: GPL-2.0-only
/*
 * What wpmig refuses about a guest's RAM, each with the problem and the fix
 * in one sentence (qemu_ram_refusal() in backend.h).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "basic/util.h"
#include "qemu/backend.h"
#include "track/maps.h"

#define MAX_NAMED_PIDS 8

static int refuse(char *why, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int refuse(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return -EOPNOTSUPP;
}

static int check_backend(const struct qemu_ram *ram, const struct qemu_backend *b, char *why,
			 size_t len)
{
	if (b->kind == QEMU_BACKEND_RAM)
		return refuse(why, len,
			      "guest RAM '%s' is anonymous memory (plain -m or "
			      "memory-backend-ram) that only QEMU can see; start QEMU with "
			      "-object memory-backend-file,id=ram0,size=SIZE,mem-path=FILE,"
			      "share=on -machine memory-backend=ram0 (or memory-backend-memfd)",
			      b->id);
	if (b->kind == QEMU_BACKEND_OTHER)
		return refuse(why, len,
			      "memory backend '%s' is a %s, which has no file wpmig can read "
			      "or write: use memory-backend-file (mem-path on /dev/shm) or "
			      "memory-backend-memfd, with share=on", b->id, b->type);
	if (!b->share)
		return refuse(why, len,
			      "memory backend '%s' is share=off: guest RAM is a private "
			      "copy-on-write mapping that only QEMU sees; start it with "
			      "share=on", b->id);
	if (!b->start)
		return refuse(why, len,
			      "memory backend '%s' (%" PRIu64 " bytes) has no whole shared "
			      "mapping in QEMU process %d's /proc/PID/maps", b->id, b->size,
			      (int)ram->pid);
	if (b->hugetlb)
		return refuse(why, len,
			      "memory backend '%s' is on hugetlbfs: not supported yet (a "
			      "hugetlb file refuses pwrite, EINVAL, so the destination cannot "
			      "write pages into it, and writes are tracked per 2 MiB page); use "
			      "/dev/shm or memory-backend-memfd without hugetlb", b->id);
	for (size_t j = 0; j < ram->n; j++) {
		const struct qemu_backend *o = &ram->b[j];

		if (o != b && b->kind == QEMU_BACKEND_MEMFD && o->kind == QEMU_BACKEND_MEMFD &&
		    o->size == b->size)
			return refuse(why, len,
				      "memfd backends '%s' and '%s' have the same size, so their "
				      "mappings cannot be told apart; give them different sizes "
				      "or use memory-backend-file", o->id, b->id);
	}
	return 0;
}

static int vfio_fd(void *ud, const char *fd, const char *target)
{
	if (strncmp(target, "/dev/vfio/", 10) != 0)
		return 0;
	snprintf(ud, 64, "%s", target);
	return 1;
}

/* A VFIO device in QOM (peripheral or peripheral-anon), into name. */
static bool vfio_device(struct qmp *q, int timeout_ms, char *name, size_t len)
{
	static const char *const parents[] = { "/machine/peripheral", "/machine/peripheral-anon" };
	bool found = false;

	for (size_t p = 0; p < ARRAY_SIZE(parents) && !found; p++) {
		json_object *list = NULL;

		if (qmp_executev(q, "qom-list", timeout_ms, &list, NULL, "path",
				 json_object_new_string(parents[p]), NULL) < 0)
			continue;
		for (size_t i = 0; i < qmp_array_length(list) && !found; i++) {
			json_object *e = json_object_array_get_idx(list, i);
			const char *type = qmp_str(e, "type");

			if (type && strstr(type, "vfio")) {
				snprintf(name, len, "%s/%s (%s)", parents[p], qmp_str(e, "name"),
					 type);
				found = true;
			}
		}
		json_object_put(list);
	}
	return found;
}

/* Processes other than QEMU (and us) mapping backend b's file. */
static size_t other_mappers(const struct qemu_ram *ram, const struct qemu_backend *b,
			    pid_t *pids, size_t max)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	size_t n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)) && n < max) {
		struct vma_list maps = { 0 };
		pid_t pid;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = (pid_t)atoi(de->d_name);
		if (pid == ram->pid || pid == getpid() || maps_read(pid, &maps) < 0)
			continue;
		for (size_t k = 0; k < maps.n; k++) {
			const struct vma *v = &maps.v[k];

			if (v->ino == b->ino && v->dev_major == b->dev_major &&
			    v->dev_minor == b->dev_minor) {
				pids[n++] = pid;
				break;
			}
		}
		vma_list_free(&maps);
	}
	closedir(d);
	return n;
}

static int check_tracking(struct qmp *q, int timeout_ms, const struct qemu_ram *ram,
			  char *why, size_t len)
{
	char name[128] = "";
	pid_t pids[MAX_NAMED_PIDS];

	if (proc_fd_foreach(ram->pid, vfio_fd, name) > 0 ||
	    (q && vfio_device(q, timeout_ms, name, sizeof(name))))
		return refuse(why, len,
			      "QEMU process %d has a VFIO device (%s): an assigned device writes "
			      "guest RAM by DMA, which never faults in QEMU's memory and cannot "
			      "be tracked; unplug it (device_del) before migrating",
			      (int)ram->pid, name);
	for (size_t i = 0; i < ram->n; i++) {
		const struct qemu_backend *b = &ram->b[i];
		size_t n = other_mappers(ram, b, pids, MAX_NAMED_PIDS);
		char list[MAX_NAMED_PIDS * 12] = "";

		if (n == 0)
			continue;
		for (size_t k = 0, o = 0; k < n; k++)
			o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%d", k ? ", " : "",
					      (int)pids[k]);
		return refuse(why, len,
			      "the memory of backend '%s' is also mapped by process %s (a "
			      "vhost-user backend?): its writes never fault in QEMU's memory and "
			      "cannot be tracked; use a device model inside QEMU (no vhost-user) "
			      "while migrating", b->id, list);
	}
	return 0;
}

int qemu_ram_refusal(struct qmp *q, int timeout_ms, const struct qemu_ram *ram, bool tracked,
		     char *why, size_t len)
{
	int r;

	if (ram->n == 0)
		return refuse(why, len,
			      "QEMU process %d has no memory backend object: guest RAM given "
			      "with plain -m is anonymous memory only QEMU can see; start it with "
			      "-object memory-backend-file,id=ram0,size=SIZE,mem-path=FILE,"
			      "share=on -machine memory-backend=ram0 (or memory-backend-memfd)",
			      (int)ram->pid);
	for (size_t i = 0; i < ram->n; i++) {
		r = check_backend(ram, &ram->b[i], why, len);
		if (r < 0)
			return r;
	}
	return tracked ? check_tracking(q, timeout_ms, ram, why, len) : 0;
}
