// SPDX-License-Identifier: GPL-2.0-only
/*
 * Sections: a generation's named, typed blobs (thread state, device
 * state), each a record among the chunks with its own checksums, listed in
 * the index.  A section belongs to its generation alone: nothing is
 * resolved through the parents.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "basic/sum.h"
#include "basic/util.h"

uint64_t gen_file_record_end(const struct gen_file *gf, uint64_t off)
{
	uint64_t end = gf->foot.index_off;
	size_t lo = 0, hi = gf->ix->n_chunks;

	while (lo < hi) { /* the first chunk after off */
		size_t mid = lo + (hi - lo) / 2;

		if (gf->chunk_off[mid] <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < gf->ix->n_chunks)
		end = gf->chunk_off[lo];
	for (uint32_t i = 0; i < gf->ix->n_sections; i++)
		if (gf->sections[i].offset > off && gf->sections[i].offset < end)
			end = gf->sections[i].offset;
	return end;
}

int gen_file_read_section(const struct gen_file *gf, uint32_t idx, uint8_t **ret)
{
	const struct disk_section_ref *ref = &gf->sections[idx];
	struct disk_section h;
	uint8_t *buf;
	int r = store_pread_full(gf->fd, &h, sizeof(h), ref->offset);

	*ret = NULL;
	if (r < 0)
		return r;
	/* The record must say what the (checked) index says. */
	if (h.magic != STORE_SECTION_MAGIC ||
	    XXH3_64bits(&h, offsetof(struct disk_section, header_sum)) != h.header_sum ||
	    h.type != ref->type || h.length != ref->length || h.sum != ref->sum ||
	    memcmp(h.name, ref->name, sizeof(h.name)))
		return -EBADMSG;
	buf = malloc(ref->length ? ref->length : 1);
	if (!buf)
		return -ENOMEM;
	r = store_pread_full(gf->fd, buf, ref->length, ref->offset + sizeof(h));
	if (r == 0 && XXH3_64bits(buf, ref->length) != ref->sum)
		r = -EBADMSG;
	if (r < 0) {
		free(buf);
		return r;
	}
	*ret = buf;
	return 0;
}

size_t store_image_sections(const struct store_image *img, struct store_section *out,
			    size_t max)
{
	const struct gen_file *gf = img->chain[0];

	for (uint32_t i = 0; i < gf->ix->n_sections && i < max; i++) {
		const struct disk_section_ref *ref = &gf->sections[i];

		out[i] = (struct store_section){ .type = ref->type, .length = ref->length };
		memcpy(out[i].name, ref->name, sizeof(out[i].name));
	}
	return gf->ix->n_sections;
}

int store_image_read_section(struct store_image *img, const char *name, uint32_t type,
			     void **buf, size_t *len)
{
	const struct gen_file *gf = img->chain[0];

	for (uint32_t i = 0; i < gf->ix->n_sections; i++) {
		if (strcmp(gf->sections[i].name, name))
			continue;
		if (type && gf->sections[i].type != type)
			return -EMEDIUMTYPE;
		*len = gf->sections[i].length;
		return gen_file_read_section(gf, i, (uint8_t **)buf);
	}
	return -ENOENT;
}
