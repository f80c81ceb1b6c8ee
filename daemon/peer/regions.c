// SPDX-License-Identifier: GPL-2.0-only
#include "peer/regions.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "basic/util.h"

#define MOVE_SEARCH_MAX 1024 /* look for moves only among this many changes */

static const char *path_of(const struct pass_region *r)
{
	return r->path ? r->path : "";
}

/* Equal in everything but the address. */
static bool same_attrs(const struct pass_region *a, const struct pass_region *b)
{
	return a->end - a->start == b->end - b->start && a->pgoff == b->pgoff &&
	       a->ino == b->ino && a->dev_major == b->dev_major && a->dev_minor == b->dev_minor &&
	       a->prot == b->prot && a->flags == b->flags && a->kind == b->kind &&
	       a->shared == b->shared && !strcmp(path_of(a), path_of(b));
}

static bool same(const struct pass_region *a, const struct pass_region *b)
{
	return a->start == b->start && same_attrs(a, b);
}

static Wpmig__Peer__Region *region_msg(const struct pass_region *r)
{
	Wpmig__Peer__Region *m = malloc(sizeof(*m));

	if (!m)
		return NULL;
	wpmig__peer__region__init(m);
	m->start = r->start;
	m->end = r->end;
	m->pgoff = r->pgoff;
	m->ino = r->ino;
	m->dev_major = r->dev_major;
	m->dev_minor = r->dev_minor;
	m->prot = r->prot;
	m->shared = r->shared;
	m->kind = (uint32_t)r->kind;
	m->flags = r->flags;
	m->path = (char *)path_of(r); /* borrowed: the table outlives the message */
	return m;
}

static int add_move(Wpmig__Peer__RegionChanges *out, uint64_t from, uint64_t to)
{
	Wpmig__Peer__Move *mv = malloc(sizeof(*mv));

	if (!mv)
		return -ENOMEM;
	wpmig__peer__move__init(mv);
	mv->from = from;
	mv->to = to;
	out->moved[out->n_moved++] = mv;
	return 0;
}

/* Pair removed and added regions that only changed address. */
static int find_moves(const struct pass_region *old, const struct pass_region *new_r,
		      bool *old_gone, bool *new_added, size_t n_old, size_t n_new,
		      Wpmig__Peer__RegionChanges *out)
{
	size_t changes = 0;

	for (size_t i = 0; i < n_old; i++)
		changes += old_gone[i];
	if (changes > MOVE_SEARCH_MAX)
		return 0;
	for (size_t j = 0; j < n_new; j++) {
		for (size_t i = 0; new_added[j] && i < n_old; i++) {
			if (!old_gone[i] || !same_attrs(&old[i], &new_r[j]))
				continue;
			if (add_move(out, old[i].start, new_r[j].start) < 0)
				return -ENOMEM;
			old_gone[i] = new_added[j] = false;
		}
	}
	return 0;
}

static int fill_changes(const struct pass_region *old, const struct pass_region *new_r,
			const bool *old_gone, const bool *new_added, size_t n_old, size_t n_new,
			Wpmig__Peer__RegionChanges *out)
{
	out->removed = malloc((n_old ? n_old : 1) * sizeof(*out->removed));
	out->added = calloc(n_new ? n_new : 1, sizeof(*out->added));
	if (!out->removed || !out->added)
		return -ENOMEM;
	for (size_t i = 0; i < n_old; i++)
		if (old_gone[i])
			out->removed[out->n_removed++] = old[i].start;
	for (size_t j = 0; j < n_new; j++) {
		if (!new_added[j])
			continue;
		out->added[out->n_added] = region_msg(&new_r[j]);
		if (!out->added[out->n_added++])
			return -ENOMEM;
	}
	return 0;
}

int regions_diff(const struct pass_region *old, size_t n_old, const struct pass_region *new_r,
		 size_t n_new, Wpmig__Peer__RegionChanges *out)
{
	_cleanup_free_ bool *old_gone = calloc(n_old + 1, sizeof(bool));
	_cleanup_free_ bool *new_added = calloc(n_new + 1, sizeof(bool));
	size_t i = 0, j = 0;
	int r;

	wpmig__peer__region_changes__init(out);
	out->moved = calloc(MIN(n_old, n_new) + 1, sizeof(*out->moved));
	if (!old_gone || !new_added || !out->moved)
		return -ENOMEM;
	/* Both tables are sorted by start: walk them together. */
	while (i < n_old || j < n_new) {
		if (j == n_new || (i < n_old && old[i].start < new_r[j].start)) {
			old_gone[i++] = true;
		} else if (i == n_old || new_r[j].start < old[i].start) {
			new_added[j++] = true;
		} else {
			if (!same(&old[i], &new_r[j]))
				old_gone[i] = new_added[j] = true;
			i++;
			j++;
		}
	}
	r = find_moves(old, new_r, old_gone, new_added, n_old, n_new, out);
	if (r == 0)
		r = fill_changes(old, new_r, old_gone, new_added, n_old, n_new, out);
	out->n_regions = (uint32_t)n_new;
	out->table_sum = regions_table_sum(new_r, n_new);
	return r;
}

void regions_changes_free(Wpmig__Peer__RegionChanges *m)
{
	for (size_t i = 0; m->added && i < m->n_added; i++)
		free(m->added[i]);
	for (size_t i = 0; m->moved && i < m->n_moved; i++)
		free(m->moved[i]);
	free(m->added);
	free(m->moved);
	free(m->removed);
	wpmig__peer__region_changes__init(m);
}

/* Index of the region of old starting at start, or -1 (old is sorted). */
static ssize_t find_start(const struct pass_region *old, size_t n, uint64_t start)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (old[mid].start == start)
			return (ssize_t)mid;
		if (old[mid].start < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static struct pass_region from_msg(const Wpmig__Peer__Region *m)
{
	return (struct pass_region){
		.start = m->start, .end = m->end, .pgoff = m->pgoff, .ino = m->ino,
		.dev_major = m->dev_major, .dev_minor = m->dev_minor, .prot = m->prot,
		.shared = m->shared, .kind = (enum vma_kind)m->kind, .flags = m->flags,
		.backing = -1, .path = (char *)m->path,
	};
}

static int cmp_start(const void *a, const void *b)
{
	uint64_t x = ((const struct pass_region *)a)->start, y = ((const struct pass_region *)b)->start;

	return x < y ? -1 : x > y;
}

/* Removed and moved regions of old, applied into t (borrowed paths). */
static int apply_old(const struct pass_region *old, size_t n_old,
		     const Wpmig__Peer__RegionChanges *m, struct pass_region *t, size_t *n,
		     const char **why)
{
	_cleanup_free_ uint8_t *gone = calloc(n_old + 1, 1);

	if (!gone)
		return *why = "out of memory", -ENOMEM;
	for (size_t k = 0; k < m->n_removed; k++) {
		ssize_t i = find_start(old, n_old, m->removed[k]);
		if (i < 0 || gone[i])
			return *why = "regions: removed region not in the parent", -EBADMSG;
		gone[i] = 1;
	}
	for (size_t k = 0; k < m->n_moved; k++) {
		ssize_t i = find_start(old, n_old, m->moved[k]->from);
		if (i < 0 || gone[i] || old[i].end - old[i].start > UINT64_MAX - m->moved[k]->to)
			return *why = "regions: moved region not in the parent", -EBADMSG;
		gone[i] = 1;
		t[*n] = old[i];
		t[*n].start = m->moved[k]->to;
		t[(*n)++].end = m->moved[k]->to + (old[i].end - old[i].start);
	}
	for (size_t i = 0; i < n_old; i++)
		if (!gone[i])
			t[(*n)++] = old[i];
	return 0;
}

int regions_apply(const struct pass_region *old, size_t n_old,
		  const Wpmig__Peer__RegionChanges *m, struct pass_region **ret, size_t *ret_n,
		  const char **why)
{
	size_t cap = n_old + m->n_added, n = 0;
	_cleanup_free_ struct pass_region *t = calloc(cap + 1, sizeof(*t));
	int r;

	if (!t)
		return *why = "out of memory", -ENOMEM;
	r = apply_old(old, n_old, m, t, &n, why);
	if (r < 0)
		return r;
	for (size_t k = 0; k < m->n_added; k++)
		t[n++] = from_msg(m->added[k]);
	qsort(t, n, sizeof(*t), cmp_start);
	for (size_t i = 1; i < n; i++)
		if (t[i].start < t[i - 1].end)
			return *why = "regions: the new table overlaps", -EBADMSG;
	if (n != m->n_regions || regions_table_sum(t, n) != m->table_sum)
		return *why = "regions: the rebuilt table differs from the source's", -EBADMSG;
	r = regions_copy(t, n, ret);
	if (r < 0)
		return *why = "out of memory", r;
	*ret_n = n;
	return 0;
}
