/* SPDX-License-Identifier: GPL-2.0-only */
/* /proc/PID/maps: parse the text into a list of VMAs and classify them. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum vma_kind {
	VMA_ANON,         /* private anonymous: heap, stack, malloc, [anon:...] */
	VMA_FILE_PRIVATE, /* private mapping of a file (COW over page cache) */
	VMA_SHARED,       /* shared mapping: shmem, memfd, SysV shm, file */
	VMA_SPECIAL,      /* [vvar], [vdso], [vsyscall], [uprobes], memfd_secret:
			     never tracked, not in images */
};

struct vma {
	uint64_t start, end;
	uint64_t pgoff;
	uint64_t ino;
	uint32_t dev_major, dev_minor;
	bool read, write, exec, shared;
	enum vma_kind kind;
	const char *path; /* points into the list's text; "" when none */
};

struct vma_list {
	struct vma *v;
	size_t n;
	char *text; /* owns the strings the entries point to */
};

/*
 * Parse maps text (takes ownership of text on success): -EINVAL for a
 * malformed line, -EAGAIN for lines out of address order or overlapping
 * (the text of a layout that changed while it was read).
 */
int maps_parse(char *text, struct vma_list *out);
/* /proc/PID/maps, read again while the layout changes under the read;
 * -EAGAIN if it never holds still. */
int maps_read(pid_t pid, struct vma_list *out);
void vma_list_free(struct vma_list *l);
const char *vma_kind_name(enum vma_kind k);

/* A VMA wpmig puts into images: writable and not special. */
static inline bool vma_is_image(const struct vma *v)
{
	return v->write && v->kind != VMA_SPECIAL;
}
