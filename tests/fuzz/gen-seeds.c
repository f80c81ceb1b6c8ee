// SPDX-License-Identifier: GPL-2.0-only
/*
 * Writes the seed corpus of the control and store fuzz targets, well
 * formed, so the fuzzers start past the checksums:
 *
 *   fuzz-gen-seeds control DIR   request streams a client sends
 *   fuzz-gen-seeds store DIR     generation files written by the store
 *
 * tests/fuzz/build-and-run.sh runs it before every run (the store's format
 * may have changed since the committed seeds were written); regenerate the
 * committed ones with `build/tests/fuzz-gen-seeds store tests/fuzz/corpus-store`.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control.pb-c.h"
#include "frame.h"
#include "basic/ranges.h"
#include "pipeline/codec.h"
#include "store/store.h"

#define PG 4096u

static void die(const char *what, int r)
{
	fprintf(stderr, "fuzz-gen-seeds: %s: %s\n", what, strerror(r < 0 ? -r : r));
	exit(1);
}

static void put(const char *dir, const char *name, const void *a, size_t alen, const void *b,
		size_t blen)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "we");
	if (!f)
		die(path, errno);
	if ((alen && fwrite(a, 1, alen, f) != alen) || (blen && fwrite(b, 1, blen, f) != blen))
		die(path, EIO);
	if (fclose(f))
		die(path, errno);
}

/* ---- control: request frames ---- */

struct stream {
	uint8_t *buf;
	size_t len;
};

static void frame(struct stream *s, Wpmig__Request *r)
{
	uint8_t *f;
	size_t len;

	if (frame_pack(FRAME_CTL_REQUEST, &r->base, 0, &f, &len) < 0)
		die("frame_pack", ENOMEM);
	s->buf = realloc(s->buf, s->len + len);
	if (!s->buf)
		die("realloc", ENOMEM);
	memcpy(s->buf + s->len, f, len);
	s->len += len;
	free(f);
}

static void control(const char *dir)
{
	Wpmig__CheckRequest check = WPMIG__CHECK_REQUEST__INIT;
	Wpmig__StatusRequest status = WPMIG__STATUS_REQUEST__INIT;
	Wpmig__CheckpointRequest ckpt = WPMIG__CHECKPOINT_REQUEST__INIT;
	Wpmig__ImagesRequest images = WPMIG__IMAGES_REQUEST__INIT;
	Wpmig__Request r = WPMIG__REQUEST__INIT;
	struct stream all = { 0 };
	char name[32];

	for (uint32_t id = 0; id < 4; id++) {
		struct stream one = { 0 };

		r.id = id;
		switch (id) {
		case 0:
			r.verb_case = WPMIG__REQUEST__VERB_CHECK, r.check = &check;
			break;
		case 1:
			status.pid = 1234;
			r.verb_case = WPMIG__REQUEST__VERB_STATUS, r.status = &status;
			break;
		case 2:
			ckpt.pid = 1234, ckpt.set = (char *)"db-1", ckpt.peer = (char *)"10.0.0.2:7369";
			r.verb_case = WPMIG__REQUEST__VERB_CHECKPOINT, r.checkpoint = &ckpt;
			break;
		default:
			images.op = WPMIG__IMAGES_OP__IMAGES_EXPORT, images.set = (char *)"db-1";
			images.generation = 2, images.dir = (char *)"/var/lib/wpmig/export/x";
			r.verb_case = WPMIG__REQUEST__VERB_IMAGES, r.images = &images;
		}
		frame(&one, &r);
		frame(&all, &r);
		snprintf(name, sizeof(name), "request-%u", id);
		put(dir, name, one.buf, one.len, NULL, 0);
		/* the same frame cut short: the daemon waits, then sees EOF */
		snprintf(name, sizeof(name), "partial-%u", id);
		put(dir, name, one.buf, one.len - 1, NULL, 0);
		free(one.buf);
	}
	/* more requests in flight than the target's limit (8) */
	for (uint32_t id = 4; id < 12; id++) {
		r.id = id;
		r.verb_case = WPMIG__REQUEST__VERB_CHECK, r.check = &check;
		frame(&all, &r);
	}
	put(dir, "stream", all.buf, all.len, NULL, 0);
	free(all.buf);
}

/* ---- store: generation files ---- */

/* kind 0: text (zstd shrinks it), 1: random (stored raw) */
static void fill(uint8_t *p, unsigned kind, unsigned salt)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL * (salt + 1);

	for (unsigned i = 0; i < PG; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		p[i] = kind == 0 ? (uint8_t)"wpmig seed text "[(i + salt) % 16] : (uint8_t)x;
	}
}

/* Encode and put n pages from addr (kinds: 0 text, 1 random, 2 zero). */
static void pages(struct sink *s, struct codec *c, uint64_t seq, uint64_t addr, unsigned n,
		  unsigned kind)
{
	uint64_t addrs[16];
	uint8_t *buf = calloc(n, PG);
	struct enc_chunk e = { 0 };
	int r;

	for (unsigned i = 0; i < n; i++) {
		addrs[i] = addr + (uint64_t)i * PG;
		if (kind < 2)
			fill(buf + (size_t)i * PG, kind, i + (unsigned)seq);
	}
	r = codec_encode(c, seq, addrs, n, buf, &e);
	if (r == 0)
		r = s->ops->put_chunk(s, &e);
	if (r < 0)
		die("put_chunk", r);
	enc_chunk_free(&e);
	free(buf);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t *buf;

	if (fd < 0 || fstat(fd, &sb) < 0)
		die(path, errno);
	buf = malloc((size_t)sb.st_size + 1);
	if (!buf || read(fd, buf, (size_t)sb.st_size) != sb.st_size)
		die(path, EIO);
	close(fd);
	*len = (size_t)sb.st_size;
	return buf;
}

static void generation(struct store *st, bool full, uint64_t parent, struct codec *c)
{
	struct pass_region regions[] = {
		{ .start = 0x400000, .end = 0x420000, .prot = 3, .backing = -1, .path = (char *)"" },
		{ .start = 0x7f0000000000, .end = 0x7f0000010000, .prot = 3, .shared = true,
		  .backing = -1, .path = (char *)"/memfd:seed (deleted)" },
	};
	struct range_set zero = { 0 };
	struct gen_summary sum;
	struct sink *s;
	uint64_t gen;
	int r = store_begin(st, "s", 1234, full, parent, &s, &gen);

	if (r < 0)
		die("store_begin", r);
	if (full) {
		pages(s, c, 1, 0x400000, 8, 0);       /* zstd */
		pages(s, c, 1, 0x408000, 4, 1);       /* raw */
		pages(s, c, 2, 0x400000, 2, 1);       /* a later pass wins */
		pages(s, c, 1, 0x7f0000000000, 3, 2); /* zero pages in a chunk */
		range_set_add(&zero, 0x410000, 0x420000);
	} else {
		pages(s, c, 1, 0x402000, 2, 0);
		pages(s, c, 1, 0x7f0000004000, 1, 1);
		range_set_add(&zero, 0x408000, 0x409000);
	}
	r = s->ops->put_zero(s, 1, &zero);
	if (r == 0)
		r = s->ops->commit(s, regions, full ? 2 : 1, &sum);
	if (r < 0)
		die("commit", r);
	s->ops->close(s);
	range_set_free(&zero);
}

static void store(const char *dir)
{
	char state[] = "/tmp/wpmig-gen-seeds.XXXXXX", path[256];
	struct codec *c = codec_new(1);
	struct store *st;
	uint8_t *g1, *g2;
	size_t l1, l2;
	uint32_t n;
	int r;

	if (!c || !mkdtemp(state))
		die("setup", errno);
	r = store_open(state, &st);
	if (r < 0)
		die("store_open", r);
	generation(st, true, 0, c);
	generation(st, false, 1, c);
	store_close(st);
	codec_free(c);
	snprintf(path, sizeof(path), "%s/images/s/gen-00000001.img", state);
	g1 = slurp(path, &l1);
	unlink(path);
	snprintf(path, sizeof(path), "%s/images/s/gen-00000002.img", state);
	g2 = slurp(path, &l2);
	unlink(path);
	n = (uint32_t)l1; /* little endian: this only runs on x86-64 */
	put(dir, "full", &n, 4, g1, l1);
	uint8_t *both = malloc(l1 + l2);
	memcpy(both, g1, l1);
	memcpy(both + l1, g2, l2);
	put(dir, "chain", &n, 4, both, l1 + l2);
	/* the same with the fuzz target's "recompute every checksum" bit */
	n |= 1u << 31;
	put(dir, "full-sums-fixed", &n, 4, g1, l1);
	put(dir, "chain-sums-fixed", &n, 4, both, l1 + l2);
	/* the increment alone, over a missing parent */
	n = 0;
	put(dir, "orphan", &n, 4, g2, l2);
	free(both);
	free(g1);
	free(g2);
	snprintf(path, sizeof(path), "%s/images/s", state);
	DIR *d = opendir(path);
	for (struct dirent *e; d && (e = readdir(d));)
		unlinkat(dirfd(d), e->d_name, 0); /* the lock file; "." and ".." fail */
	if (d)
		closedir(d);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/images", state);
	rmdir(path);
	rmdir(state);
}

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[1], "control") && strcmp(argv[1], "store"))) {
		fprintf(stderr, "usage: fuzz-gen-seeds control|store DIR\n");
		return 2;
	}
	if (mkdir(argv[2], 0755) < 0 && errno != EEXIST)
		die(argv[2], errno);
	if (!strcmp(argv[1], "control"))
		control(argv[2]);
	else
		store(argv[2]);
	return 0;
}
