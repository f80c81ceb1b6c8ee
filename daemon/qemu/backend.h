/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A QEMU guest's RAM backends, found through QMP and /proc/PID: which
 * memory-backend objects exist (query-memdev, qom-get of type, mem-path),
 * where each is mapped in the QEMU process (/proc/PID/maps), and whether
 * wpmig can move or checkpoint them (qemu_ram_refusal()).  A backend's
 * pages are reached through the QEMU process, never by path (the daemon's
 * sandbox may not see the path): qemu_backend_open() takes QEMU's own fd of
 * the backing file or memfd with pidfd_getfd, /proc/PID/map_files as the
 * fallback.
 *
 * Used by migrate (source and destination) and by VM checkpoints.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "qemu/qmp.h"

#define QEMU_MAX_BACKENDS 16
#define QEMU_BACKEND_ID_MAX 64

enum qemu_backend_kind {
	QEMU_BACKEND_FILE,  /* memory-backend-file */
	QEMU_BACKEND_MEMFD, /* memory-backend-memfd */
	QEMU_BACKEND_RAM,   /* memory-backend-ram (anonymous) */
	QEMU_BACKEND_OTHER,
};

struct qemu_backend {
	char id[QEMU_BACKEND_ID_MAX]; /* the object's id: "ram0" */
	char type[48];                /* its QOM type */
	char mem_path[256];           /* file backends: as QEMU names it */
	enum qemu_backend_kind kind;
	bool share;
	bool hugetlb;       /* backed by hugetlbfs (or a hugetlb memfd) */
	uint64_t size;      /* bytes */
	uint64_t page_size; /* of the mapping (smaps KernelPageSize) */
	/* The mapping in the QEMU process; start == 0 when none was found. */
	uint64_t start, end, pgoff;
	uint32_t dev_major, dev_minor;
	uint64_t ino;
};

struct qemu_ram {
	pid_t pid; /* the QEMU process */
	size_t n;
	struct qemu_backend b[QEMU_MAX_BACKENDS];
};

/*
 * Ask QEMU (through q, whose peer is the QEMU process) for its memory
 * backends and find their mappings.  QMP failures are returned (-EREMOTEIO
 * with *err when given); a backend without a mapping is left with start 0
 * for qemu_ram_refusal() to report.
 */
int qemu_ram_discover(struct qmp *q, int timeout_ms, struct qemu_ram *ram,
		      struct qmp_error *err);

/* The backend called id, or NULL. */
const struct qemu_backend *qemu_ram_find(const struct qemu_ram *ram, const char *id);

/*
 * 0 when every backend can be tracked and reached from outside QEMU, else
 * -EOPNOTSUPP with a sentence in why naming the problem and the fix: no
 * backend (anonymous -m RAM), share=off, memory-backend-ram, hugetlbfs, a
 * backend without a mapping or one that cannot be told apart from another,
 * a VFIO device, a backing file that another process maps too (its PIDs).
 * The last three matter only where writes must be tracked (tracked: the
 * source of a migration, a checkpointed guest), not where pages are only
 * written (a migration's destination).  q may be NULL (then QOM devices are
 * not checked, only QEMU's fds).
 */
int qemu_ram_refusal(struct qmp *q, int timeout_ms, const struct qemu_ram *ram, bool tracked,
		     char *why, size_t len);

/*
 * Open backend b of QEMU process pid for reading and writing at file
 * offsets (offset = guest-RAM offset + b->pgoff): QEMU's own fd of the file
 * or memfd, taken with pidfd_getfd and checked against the mapping's device
 * and inode; /proc/PID/map_files/START-END when QEMU holds no such fd.
 */
int qemu_backend_open(pid_t pid, const struct qemu_backend *b, int *ret_fd);

const char *qemu_backend_kind_name(enum qemu_backend_kind k);
