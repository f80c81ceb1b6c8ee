// SPDX-License-Identifier: GPL-2.0-only
#include "basic/ranges.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Index of the first range whose end is >= start (may touch start). */
static size_t lower_bound(const struct range_set *s, uint64_t start)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->r[mid].end < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int reserve(struct range_set *s, size_t extra)
{
	if (s->n + extra <= s->cap)
		return 0;
	size_t ncap = s->cap ? s->cap * 2 : 16;
	while (ncap < s->n + extra)
		ncap *= 2;
	struct range *nr = reallocarray(s->r, ncap, sizeof(*nr));
	if (!nr)
		return -ENOMEM;
	s->r = nr;
	s->cap = ncap;
	return 0;
}

int range_set_add(struct range_set *s, uint64_t start, uint64_t end)
{
	size_t i, j;

	if (start >= end)
		return 0;
	/* Fast path: appending in order, as scans do. */
	if (s->n && s->r[s->n - 1].end >= start && s->r[s->n - 1].start <= start) {
		if (end > s->r[s->n - 1].end)
			s->r[s->n - 1].end = end;
		return 0;
	}
	if (!s->n || s->r[s->n - 1].end < start) {
		if (reserve(s, 1) < 0)
			return -ENOMEM;
		s->r[s->n++] = (struct range){ start, end };
		return 0;
	}
	i = lower_bound(s, start);
	/* Ranges i..j-1 touch or overlap [start, end). */
	for (j = i; j < s->n && s->r[j].start <= end; j++)
		;
	if (i == j) {
		if (reserve(s, 1) < 0)
			return -ENOMEM;
		memmove(&s->r[i + 1], &s->r[i], (s->n - i) * sizeof(*s->r));
		s->r[i] = (struct range){ start, end };
		s->n++;
		return 0;
	}
	if (s->r[i].start < start)
		start = s->r[i].start;
	if (s->r[j - 1].end > end)
		end = s->r[j - 1].end;
	s->r[i] = (struct range){ start, end };
	memmove(&s->r[i + 1], &s->r[j], (s->n - j) * sizeof(*s->r));
	s->n -= j - i - 1;
	return 0;
}

int range_set_remove(struct range_set *s, uint64_t start, uint64_t end)
{
	size_t i;

	if (start >= end)
		return 0;
	for (i = lower_bound(s, start); i < s->n && s->r[i].start < end;) {
		struct range *r = &s->r[i];

		if (r->end <= start) {
			i++;
			continue;
		}
		if (r->start < start && r->end > end) {
			/* Split in two. */
			if (reserve(s, 1) < 0)
				return -ENOMEM;
			r = &s->r[i];
			memmove(&s->r[i + 1], &s->r[i], (s->n - i) * sizeof(*s->r));
			s->n++;
			s->r[i].end = start;
			s->r[i + 1].start = end;
			return 0;
		}
		if (r->start < start) {
			r->end = start;
			i++;
		} else if (r->end > end) {
			r->start = end;
			i++;
		} else {
			memmove(&s->r[i], &s->r[i + 1], (s->n - i - 1) * sizeof(*s->r));
			s->n--;
		}
	}
	return 0;
}

int range_set_clip(const struct range_set *s, uint64_t start, uint64_t end,
		   struct range_set *out)
{
	for (size_t i = lower_bound(s, start); i < s->n && s->r[i].start < end; i++) {
		uint64_t a = s->r[i].start > start ? s->r[i].start : start;
		uint64_t b = s->r[i].end < end ? s->r[i].end : end;
		int r = range_set_add(out, a, b);

		if (r < 0)
			return r;
	}
	return 0;
}

bool range_set_contains(const struct range_set *s, uint64_t start, uint64_t end)
{
	size_t i = lower_bound(s, start);

	if (start >= end)
		return true;
	/* Merged ranges: containment means one range covers it all. */
	while (i < s->n && s->r[i].end <= start)
		i++;
	return i < s->n && s->r[i].start <= start && s->r[i].end >= end;
}

bool range_set_overlaps(const struct range_set *s, uint64_t start, uint64_t end)
{
	size_t i = lower_bound(s, start);

	while (i < s->n && s->r[i].end <= start)
		i++;
	return i < s->n && s->r[i].start < end;
}

uint64_t range_set_bytes(const struct range_set *s)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < s->n; i++)
		sum += s->r[i].end - s->r[i].start;
	return sum;
}

void range_set_clear(struct range_set *s)
{
	s->n = 0;
}

void range_set_free(struct range_set *s)
{
	if (!s)
		return;
	free(s->r);
	*s = (struct range_set){ 0 };
}

void range_set_swap(struct range_set *a, struct range_set *b)
{
	struct range_set t = *a;

	*a = *b;
	*b = t;
}
