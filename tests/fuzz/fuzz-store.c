// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target: the image store's reader, on corrupted generations.
 * The input is one or two generation files:
 *
 *   u32 n (little endian) | n bytes: generation 1 | the rest: generation 2
 *
 * (no generation 2 when the rest is empty; n past the end: all of it is
 * generation 1).  With the top bit of n set, every checksum the files
 * carry (header, footer's index sum, each chunk's payload and meta sums)
 * is recomputed first, as a hostile writer would: only the bounds and
 * consistency checks stand in the way then.  Without it, a change fails a
 * checksum, as damage on disk does.  The files go into a set of a private
 * store on a
 * tmpfs, and the set goes through what `wpmig-ctl images` does with it:
 * list, open the newest generation (and generation 1 under it), verify
 * every chunk, read a page at both ends of every region, export (when the
 * regions add up to at most 64 MiB, so a hostile size costs time, not a
 * finding).  Seeds: corpus-store/, written by fuzz-gen-store from real
 * generations (full and incremental, raw and zstd chunks, zero ranges,
 * several regions), and that generator runs again before each CI run so
 * the seeds follow the current format.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/format.h"
#include "store/store.h"
#include "basic/sum.h"

#define EXPORT_MAX (64ULL << 20)

struct fuzz {
	char state[64], set_dir[128], export_dir[128];
	struct store *st;
	uint8_t *page;
};

/* Make every checksum of one generation file image (len bytes at f) agree
 * with its content.  Field access through memcpy: offsets are hostile. */
static void fix_sums(uint8_t *f, size_t len)
{
	struct disk_header h;
	struct disk_footer ft;
	struct disk_index ix;

	if (len < sizeof(h) + sizeof(ft))
		return;
	memcpy(&ft, f + len - sizeof(ft), sizeof(ft));
	if (ft.index_off >= sizeof(h) && ft.index_off <= len - sizeof(ft) &&
	    ft.index_len <= len - sizeof(ft) - ft.index_off && ft.index_len >= sizeof(ix)) {
		memcpy(&ix, f + ft.index_off, sizeof(ix));
		for (uint64_t i = 0; i < ix.n_chunks && i < 4096; i++) {
			uint64_t off, at = ft.index_off + sizeof(ix) + i * 8;
			struct disk_chunk c;

			if (at + 8 > ft.index_off + ft.index_len)
				break;
			memcpy(&off, f + at, 8);
			if (off % 8 || off < sizeof(h) || off > ft.index_off ||
			    ft.index_off - off < sizeof(c))
				continue;
			memcpy(&c, f + off, sizeof(c));
			uint64_t meta = (uint64_t)c.n_ext * sizeof(struct ext) + (uint64_t)c.n_data_pages * 8;
			if (meta + c.payload_len > ft.index_off - off - sizeof(c))
				continue;
			uint8_t *ext = f + off + sizeof(c), *payload = ext + meta;
			c.payload_sum = XXH3_64bits(payload, c.payload_len);
			c.meta_sum = chunk_meta_sum(&c, (const struct ext *)ext,
						    (const uint64_t *)(ext + (size_t)c.n_ext * sizeof(struct ext)));
			memcpy(f + off, &c, sizeof(c));
		}
		ft.index_sum = XXH3_64bits(f + ft.index_off, ft.index_len);
		memcpy(f + len - sizeof(ft), &ft, sizeof(ft));
	}
	memcpy(&h, f, sizeof(h));
	h.sum = XXH3_64bits(&h, offsetof(struct disk_header, sum));
	memcpy(f, &h, sizeof(h));
}

static void write_file(const char *dir, const char *name, const uint8_t *data, size_t len)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (len && write(fd, data, len) != (ssize_t)len))
		abort();
	close(fd);
}

static void empty_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)))
		unlinkat(dirfd(d), e->d_name, 0); /* "." and ".." fail: fine */
	closedir(d);
}

static void bad(void *userdata, const struct store_bad *b)
{
	(*(uint64_t *)userdata)++;
}

static void read_ends(struct fuzz *f, struct store_image *img)
{
	size_t n;
	const struct pass_region *r = store_image_regions(img, &n);

	for (size_t i = 0; i < n && i < 16; i++) {
		if (r[i].end <= r[i].start || r[i].end - r[i].start < 4096)
			continue;
		store_image_read(img, r[i].start, 4096, f->page);
		store_image_read(img, r[i].end - 4096, 4096, f->page);
	}
	store_image_read(img, 0, 4096, f->page); /* outside every region, mostly */
}

static void use(struct fuzz *f, uint64_t generation)
{
	struct store_image *img;
	uint64_t n_bad = 0;

	if (store_image_open(f->st, "s", generation, &img) < 0)
		return;
	store_image_verify(img, bad, &n_bad, NULL, &n_bad);
	read_ends(f, img);
	if (store_image_info(img)->region_bytes <= EXPORT_MAX) {
		store_image_export(img, f->export_dir, NULL, NULL);
		empty_dir(f->export_dir);
	}
	store_image_close(img);
}

static void setup(struct fuzz *f)
{
	snprintf(f->state, sizeof(f->state), "/dev/shm/wpmig-fuzz-store.XXXXXX");
	if (!mkdtemp(f->state)) {
		snprintf(f->state, sizeof(f->state), "/tmp/wpmig-fuzz-store.XXXXXX");
		if (!mkdtemp(f->state))
			abort();
	}
	if (store_open(f->state, &f->st) < 0)
		abort();
	snprintf(f->set_dir, sizeof(f->set_dir), "%s/images/s", f->state);
	snprintf(f->export_dir, sizeof(f->export_dir), "%s/export", f->state);
	if (mkdir(f->set_dir, 0700) < 0 || mkdir(f->export_dir, 0700) < 0)
		abort();
	f->page = malloc(4096);
	if (!f->page)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz f;
	struct store_gen_info *info;
	size_t n_info;
	uint8_t *copy;
	uint32_t n1;
	bool fix;

	if (!f.st)
		setup(&f);
	if (size < 4)
		return 0;
	memcpy(&n1, data, 4);
	fix = n1 >> 31;
	n1 &= ~(1u << 31);
	data += 4;
	size -= 4;
	if (n1 > size)
		n1 = (uint32_t)size;
	empty_dir(f.set_dir);
	copy = malloc(size + 1); /* aligned for the fix-ups' 8-byte fields */
	if (!copy)
		abort();
	memcpy(copy, data, size);
	if (fix) {
		fix_sums(copy, n1);
		fix_sums(copy + n1, size - n1);
	}
	write_file(f.set_dir, "gen-00000001.img", copy, n1);
	if (size > n1)
		write_file(f.set_dir, "gen-00000002.img", copy + n1, size - n1);
	free(copy);
	if (store_list_generations(f.st, "s", &info, &n_info) == 0)
		free(info);
	use(&f, 0);
	if (size > n1)
		use(&f, 1);
	return 0;
}
