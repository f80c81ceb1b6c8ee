// SPDX-License-Identifier: GPL-2.0-only
#include "track/maps.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/util.h"

static const char *const special_names[] = {
	"[vvar]", "[vvar_vclock]", "[vdso]", "[vsyscall]", "[uprobes]",
};

static enum vma_kind classify(const struct vma *v)
{
	const char *p = v->path;

	for (size_t i = 0; i < ARRAY_SIZE(special_names); i++)
		if (!strcmp(p, special_names[i]))
			return VMA_SPECIAL;
	/* memfd_secret(2): unmapped from the kernel's direct map, readable by
	 * no one but its owner; it cannot be in an image. */
	if (!strncmp(p, "/secretmem", 10))
		return VMA_SPECIAL;
	if (v->shared)
		return VMA_SHARED;
	/* Private: anonymous unless backed by an inode (memfd, file). */
	if (v->ino == 0 || p[0] == '[')
		return VMA_ANON;
	return VMA_FILE_PRIVATE;
}

/* An unsigned number in base at *p (no sign, at least one digit). */
static int number(const char **p, int base, unsigned long long *ret)
{
	char *end;

	if (!(base == 16 ? isxdigit((unsigned char)**p) : isdigit((unsigned char)**p)))
		return -EINVAL;
	errno = 0;
	*ret = strtoull(*p, &end, base);
	if (errno)
		return -EINVAL;
	*p = end;
	return 0;
}

static bool one_of(char c, const char *set)
{
	return c && strchr(set, c);
}

static int expect(const char **p, char c)
{
	if (**p != c)
		return -EINVAL;
	(*p)++;
	return 0;
}

/* "START-END PERMS OFFSET MAJ:MIN INODE [PATH]", strictly; 0 or -EINVAL. */
static int parse_line(char *line, struct vma *v)
{
	unsigned long long start, end, pgoff, maj, min, ino;
	const char *p = line, *perms;

	if (number(&p, 16, &start) || expect(&p, '-') || number(&p, 16, &end) ||
	    expect(&p, ' '))
		return -EINVAL;
	perms = p;
	if (!one_of(perms[0], "r-") || !one_of(perms[1], "w-") || !one_of(perms[2], "x-") ||
	    !one_of(perms[3], "ps"))
		return -EINVAL;
	p += 4;
	if (expect(&p, ' ') || number(&p, 16, &pgoff) || expect(&p, ' ') ||
	    number(&p, 16, &maj) || expect(&p, ':') || number(&p, 16, &min) || expect(&p, ' ') ||
	    number(&p, 10, &ino) || (*p && *p != ' '))
		return -EINVAL;
	if (start >= end || maj > UINT32_MAX || min > UINT32_MAX)
		return -EINVAL;
	while (*p == ' ')
		p++;
	*v = (struct vma){
		.start = start, .end = end, .pgoff = pgoff, .ino = ino,
		.dev_major = (uint32_t)maj, .dev_minor = (uint32_t)min,
		.read = perms[0] == 'r', .write = perms[1] == 'w',
		.exec = perms[2] == 'x', .shared = perms[3] == 's',
		.path = p,
	};
	v->kind = classify(v);
	return 0;
}

int maps_parse(char *text, struct vma_list *out)
{
	size_t n = 0, cap = 0;
	struct vma *v = NULL;
	char *save = NULL;

	for (char *line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct vma *nv = reallocarray(v, ncap, sizeof(*v));

			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
			cap = ncap;
		}
		if (parse_line(line, &v[n]) < 0) {
			free(v);
			return -EINVAL;
		}
		if (n && v[n].start < v[n - 1].end) {
			free(v);
			return -EAGAIN;
		}
		n++;
	}
	*out = (struct vma_list){ .v = v, .n = n, .text = text };
	return 0;
}

/*
 * The kernel prints the maps in several read() calls and lets the layout
 * change between them: a mapping that grew by a merge after one call
 * printed it is printed again by the next, overlapping.  Such a text is no
 * moment's layout: read it again.  (Seen with targets whose threads map and
 * unmap stacks as they come and go; tests/test-maps.c.)
 */
#define MAPS_READ_TRIES 64

int maps_read(pid_t pid, struct vma_list *out)
{
	char path[64];
	int r = -EAGAIN;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	for (int i = 0; i < MAPS_READ_TRIES && r == -EAGAIN; i++) {
		char *text;

		r = read_full_file(path, &text, NULL);
		if (r < 0)
			return r;
		r = maps_parse(text, out);
		if (r < 0)
			free(text);
	}
	return r;
}

void vma_list_free(struct vma_list *l)
{
	if (!l)
		return;
	free(l->v);
	free(l->text);
	*l = (struct vma_list){ 0 };
}

const char *vma_kind_name(enum vma_kind k)
{
	switch (k) {
	case VMA_ANON: return "anon";
	case VMA_FILE_PRIVATE: return "file-private";
	case VMA_SHARED: return "shared";
	case VMA_SPECIAL: return "special";
	}
	return "?";
}
