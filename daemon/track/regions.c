// SPDX-License-Identifier: GPL-2.0-only
#include "track/regions.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "basic/sum.h"

static const char *path_of(const struct pass_region *r)
{
	return r->path ? r->path : "";
}

uint64_t regions_table_sum(const struct pass_region *r, size_t n)
{
	XXH3_state_t *st = XXH3_createState();
	uint64_t sum;

	if (!st)
		return 0;
	XXH3_64bits_reset(st);
	for (size_t i = 0; i < n; i++) {
		const char *p = path_of(&r[i]);
		uint64_t w[4] = { r[i].start, r[i].end, r[i].pgoff, r[i].ino };
		uint32_t v[7] = { r[i].dev_major, r[i].dev_minor, r[i].prot, r[i].flags,
				  (uint32_t)r[i].kind, r[i].shared, (uint32_t)strlen(p) };

		XXH3_64bits_update(st, w, sizeof(w));
		XXH3_64bits_update(st, v, sizeof(v));
		XXH3_64bits_update(st, p, strlen(p));
	}
	sum = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return sum;
}

void regions_free(struct pass_region *r, size_t n)
{
	for (size_t i = 0; r && i < n; i++)
		free(r[i].path);
	free(r);
}

int regions_copy(const struct pass_region *r, size_t n, struct pass_region **ret)
{
	struct pass_region *c = calloc(n ? n : 1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		c[i] = r[i];
		c[i].backing = -1;
		c[i].path = strdup(path_of(&r[i]));
		if (!c[i].path) {
			regions_free(c, i);
			return -ENOMEM;
		}
	}
	*ret = c;
	return 0;
}
