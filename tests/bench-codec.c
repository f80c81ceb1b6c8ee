// SPDX-License-Identifier: GPL-2.0-only
/*
 * Codec and store throughput on mixed pages (runs of zero, text-like and
 * random pages, about one third each), beside a reference measured in the
 * same run: one thread of plain ZSTD level 1 over the same chunks.
 *
 *   bench-codec [--quick] [--mib N] [--reps N] [--chunk-kib N]
 *               [--levels L,L,...] [--dir STATE_DIR]
 *
 * The store figure is a full generation written to a state dir on disk
 * (default: a fresh dir under /var/tmp), commit with fsync included.
 *
 * Speeds are input bytes per second (1 GB = 1e9 bytes), medians over reps.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <zstd.h>

#include "bench-report.h"
#include "bench.h"
#include "pagegen.h"
#include "basic/util.h"
#include "pipeline/codec.h"
#include "store/store.h"

#define PG PAGE_SIZE_4K

struct bench_data {
	uint8_t *buf;
	uint64_t *addrs;
	size_t pages, chunk_pages;
	size_t kind_pages[PG_KINDS];
};

struct bench_opts {
	size_t mib, chunk_kib;
	int reps, levels[8], n_levels;
	bool quick;
	const char *dir;
};

/* Runs of 1..64 pages of a random kind; returns the page count per kind. */
static void fill_mixed(struct bench_data *d, uint64_t seed)
{
	size_t i = 0;

	while (i < d->pages) {
		int kind = (int)(pg_rand(&seed) % PG_KINDS);
		size_t run = 1 + pg_rand(&seed) % 64;

		for (; run && i < d->pages; run--, i++) {
			pg_fill(d->buf + i * PG, kind, &seed);
			d->kind_pages[kind]++;
		}
	}
	for (i = 0; i < d->pages; i++)
		d->addrs[i] = 0x7f0000000000ULL + i * PG;
}

static double bench_zero_detect(const struct bench_data *d)
{
	size_t n = MIN(d->pages, (size_t)65536);
	uint8_t *z = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	volatile size_t zeros = 0;
	uint64_t t;

	memset(z, 0, n * PG); /* real pages, not the shared zero page */
	t = now_ns();
	for (size_t i = 0; i < n; i++)
		zeros += (size_t)page_is_zero(z + i * PG);
	t = now_ns() - t;
	munmap(z, n * PG);
	return (double)(n * PG) / (double)t;
}

/* One thread of ZSTD level 1 over every chunk, zero pages included. */
static double bench_reference(const struct bench_data *d, double *ratio)
{
	size_t chunk = d->chunk_pages * PG, cap = ZSTD_compressBound(chunk), out = 0;
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	void *dst = malloc(cap);
	uint64_t t = now_ns();

	for (size_t off = 0; off < d->pages * PG; off += chunk) {
		size_t len = MIN(chunk, d->pages * PG - off);

		out += ZSTD_compressCCtx(cctx, dst, cap, d->buf + off, len, 1);
	}
	t = now_ns() - t;
	*ratio = (double)(d->pages * PG) / (double)out;
	free(dst);
	ZSTD_freeCCtx(cctx);
	return (double)(d->pages * PG) / (double)t;
}

struct enc_job {
	const struct bench_data *d;
	int level;
	atomic_size_t *next;
	uint64_t out_bytes;
	int (*put)(void *ud, const struct enc_chunk *ch);
	void *ud;
	int err;
};

static void *enc_worker(void *arg)
{
	struct enc_job *j = arg;
	struct codec *c = codec_new(j->level);
	struct enc_chunk ch = { 0 };
	size_t n_chunks = (j->d->pages + j->d->chunk_pages - 1) / j->d->chunk_pages, i;

	while (!j->err && (i = atomic_fetch_add(j->next, 1)) < n_chunks) {
		size_t first = i * j->d->chunk_pages, n = MIN(j->d->chunk_pages, j->d->pages - first);

		j->err = codec_encode(c, 1, j->d->addrs + first, n, j->d->buf + first * PG, &ch);
		j->out_bytes += ch.payload_len;
		if (!j->err && j->put)
			j->err = j->put(j->ud, &ch);
	}
	enc_chunk_free(&ch);
	codec_free(c);
	return NULL;
}

static int run_encoders(const struct bench_data *d, int level, int threads,
		 int (*put)(void *ud, const struct enc_chunk *ch), void *ud, uint64_t *out_bytes)
{
	struct enc_job jobs[8];
	pthread_t th[8];
	atomic_size_t next = 0;
	int err = 0;

	*out_bytes = 0;
	for (int i = 0; i < threads; i++) {
		jobs[i] = (struct enc_job){ .d = d, .level = level, .next = &next, .put = put, .ud = ud };
		pthread_create(&th[i], NULL, enc_worker, &jobs[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		*out_bytes += jobs[i].out_bytes;
		if (jobs[i].err && !err)
			err = jobs[i].err;
	}
	return err;
}

static double bench_codec(const struct bench_data *d, int level, int threads, double *ratio)
{
	uint64_t out, t = now_ns();

	if (run_encoders(d, level, threads, NULL, NULL, &out) < 0)
		return 0;
	t = now_ns() - t;
	*ratio = (double)(d->pages * PG) / (double)out;
	return (double)(d->pages * PG) / (double)t;
}

static int parse_levels(char *s, struct bench_opts *o)
{
	o->n_levels = 0;
	for (char *tok = strtok(s, ","); tok && o->n_levels < 8; tok = strtok(NULL, ","))
		o->levels[o->n_levels++] = atoi(tok);
	return o->n_levels ? 0 : -EINVAL;
}

static int parse_args(int argc, char **argv, struct bench_opts *o)
{
	*o = (struct bench_opts){ .mib = 1024, .reps = 5, .chunk_kib = 1024, .dir = NULL };
	o->levels[0] = CODEC_DEFAULT_LEVEL;
	o->n_levels = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--quick")) {
			o->mib = 32;
			o->reps = 1;
			o->quick = true;
		} else if (v && !strcmp(a, "--mib")) {
			o->mib = (size_t)atol(argv[++i]);
		} else if (v && !strcmp(a, "--reps")) {
			o->reps = atoi(argv[++i]);
		} else if (v && !strcmp(a, "--chunk-kib")) {
			o->chunk_kib = (size_t)atol(argv[++i]);
		} else if (v && !strcmp(a, "--levels")) {
			if (parse_levels(argv[++i], o) < 0)
				return -EINVAL;
		} else if (v && !strcmp(a, "--dir")) {
			o->dir = argv[++i];
		} else {
			return -EINVAL;
		}
	}
	if (!o->mib || o->reps < 1 || o->reps > 32 || o->chunk_kib < 4 ||
	    o->chunk_kib * 1024 / PG > CODEC_MAX_PAGES)
		return -EINVAL;
	return 0;
}

static int put_store(void *ud, const struct enc_chunk *ch)
{
	struct sink *s = ud;

	return s->ops->put_chunk(s, ch);
}

/* One full generation of the whole buffer: encode, stream, commit (fsync). */
/* --quick: the smoke test also reads the image back and compares it. */
static int check_image(const struct bench_data *d, struct store *st, uint64_t gen)
{
	struct store_image *img;
	uint8_t *back = malloc(d->pages * PG);
	int r = back ? store_image_open(st, "bench", gen, &img) : -ENOMEM;

	if (r == 0) {
		r = store_image_read(img, d->addrs[0], d->pages * PG, back);
		if (r == 0)
			r = store_image_verify(img, NULL, NULL, NULL, NULL);
		if (r == 0 && memcmp(back, d->buf, d->pages * PG))
			r = -EILSEQ;
		store_image_close(img);
	}
	free(back);
	return r;
}

static int store_once(const struct bench_data *d, struct store *st, int threads, bool check,
		      double *gbps, double *commit_ms, uint64_t *file_bytes)
{
	struct pass_region reg = {
		.start = d->addrs[0], .end = d->addrs[d->pages - 1] + PG, .prot = 3,
		.kind = VMA_ANON, .backing = -1, .path = "",
	};
	struct gen_summary sum;
	struct sink *s;
	uint64_t gen, out, t = now_ns(), tc;
	int r = store_begin(st, "bench", 1, true, 0, &s, &gen);

	if (r < 0)
		return r;
	r = run_encoders(d, 0, threads, put_store, s, &out);
	tc = now_ns();
	if (r == 0)
		r = s->ops->commit(s, &reg, 1, &sum);
	if (r < 0) {
		s->ops->abort(s);
		return r;
	}
	s->ops->close(s);
	*commit_ms = ns_to_ms(now_ns() - tc);
	*gbps = (double)(d->pages * PG) / (double)(now_ns() - t);
	*file_bytes = sum.bytes_stored;
	if (check)
		r = check_image(d, st, gen);
	return r < 0 ? r : store_rm_set(st, "bench", NULL);
}

/* One line of the report: measured once per rep, right after that rep's reference. */
struct config {
	const char *what;
	int level, threads;
	bool store;
	double gbps[32], rel[32], ratio, commit_ms[32];
	uint64_t file_bytes;
};

static int measure(const struct bench_data *d, struct store *st, struct config *c, int rep,
		   double ref, bool check)
{
	int r = 0;

	if (c->store)
		r = store_once(d, st, c->threads, check, &c->gbps[rep], &c->commit_ms[rep],
			       &c->file_bytes);
	else
		c->gbps[rep] = bench_codec(d, c->level, c->threads, &c->ratio);
	c->rel[rep] = c->gbps[rep] / ref;
	return r;
}

/* For the report: every rep's figure beside that rep's reference. */
static void report_config(const struct config *c, const double *ref, int reps)
{
	char id[48], what[96];

	snprintf(id, sizeof(id), "codec.%s.%d.%d", c->store ? "store" : "encode", c->level,
		 c->threads);
	snprintf(what, sizeof(what), "%s, zstd level %d, %d thread%s (in-process)",
		 c->store ? "encode + store write + commit" : "codec encode", c->level, c->threads,
		 c->threads > 1 ? "s" : "");
	brep_row(&(struct brep_row){ .id = id, .section = "Codec and store", .what = what,
				     .unit = "GB/s", .v = c->gbps, .n = (unsigned)reps,
				     .ref = "zstd level 1, one thread, same chunks", .ref_unit = "GB/s",
				     .ref_v = ref, .ref_n = (unsigned)reps });
}

static void print_config(struct config *c, int reps)
{
	printf("%-13s level %-3d %d thread%s  %6.2f GB/s  %.2fx reference", c->what, c->level,
	       c->threads, c->threads > 1 ? "s" : " ", median(c->gbps, reps), median(c->rel, reps));
	if (c->store)
		printf("  (commit+fsync %.0f ms, file %.0f MB)\n", median(c->commit_ms, reps),
		       (double)c->file_bytes / 1e6);
	else
		printf("  ratio %.2f\n", c->ratio);
}

static void print_load(const char *when)
{
	char *text = NULL;

	if (read_full_file("/proc/loadavg", &text, NULL) == 0)
		printf("load average %s: %s", when, text);
	free(text);
}

/* Reference, codec at each level and store write, interleaved rep by rep. */
static int run(const struct bench_data *d, const struct bench_opts *o, struct store *st)
{
	struct config cfg[20];
	double ref[32], ratio = 0, zero[32];
	int n = 0, r = 0;

	for (int l = 0; l < o->n_levels; l++)
		for (int t = 1; t <= 2; t++)
			cfg[n++] = (struct config){ .what = "codec", .level = o->levels[l], .threads = t };
	for (int t = 1; t <= 2; t++)
		cfg[n++] = (struct config){ .what = "store write", .level = CODEC_DEFAULT_LEVEL,
					    .threads = t, .store = true };
	for (int rep = 0; r == 0 && rep < o->reps; rep++) {
		zero[rep] = bench_zero_detect(d);
		ref[rep] = bench_reference(d, &ratio);
		for (int i = 0; r == 0 && i < n; i++)
			r = measure(d, st, &cfg[i], rep, ref[rep], o->quick);
	}
	if (r < 0)
		return r;
	brep_row(&(struct brep_row){ .id = "codec.zero", .section = "Codec and store",
				     .what = "zero-page detection, one thread", .unit = "GB/s",
				     .v = zero, .n = (unsigned)o->reps, .ref = "memcpy",
				     .ref_id = "ref.memcpy" });
	for (int i = 0; i < n; i++)
		report_config(&cfg[i], ref, o->reps);
	printf("zero detection          1 thread   %6.2f GB/s\n", median(zero, o->reps));
	printf("reference zstd level 1  1 thread   %6.2f GB/s  ratio %.2f\n", median(ref, o->reps),
	       ratio);
	for (int i = 0; i < n; i++)
		print_config(&cfg[i], o->reps);
	return 0;
}

static int bench_all(const struct bench_data *d, const struct bench_opts *o)
{
	char tmpl[] = "/var/tmp/wpmig-bench-XXXXXX", images[64];
	const char *dir = o->dir ? o->dir : mkdtemp(tmpl);
	struct store *st;
	int r = dir ? store_open(dir, &st) : -errno;

	if (r < 0) {
		fprintf(stderr, "store in %s: %s\n", dir ? dir : tmpl, strerror(-r));
		return r;
	}
	print_load("before");
	r = run(d, o, st);
	print_load("after");
	store_close(st);
	if (!o->dir) {
		snprintf(images, sizeof(images), "%s/images", dir);
		rmdir(images);
		rmdir(dir);
	}
	if (r < 0)
		fprintf(stderr, "bench: %s\n", strerror(-r));
	return r;
}

int main(int argc, char **argv)
{
	struct bench_data d = { 0 };
	struct bench_opts o;
	if (parse_args(argc, argv, &o) < 0) {
		fprintf(stderr, "usage: %s [--quick] [--mib N] [--reps N] [--chunk-kib N] "
				"[--levels L,L] [--dir STATE_DIR]\n", argv[0]);
		return 2;
	}
	d.pages = o.mib * 256;
	d.chunk_pages = o.chunk_kib * 1024 / PG;
	d.buf = mmap(NULL, d.pages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	d.addrs = calloc(d.pages, sizeof(*d.addrs));
	if (d.buf == MAP_FAILED || !d.addrs)
		return 1;
	fill_mixed(&d, 42);
	printf("data: %zu MiB mixed pages (zero %.1f%%, text %.1f%%, random %.1f%%), "
	       "chunks of %zu KiB,\n  medians of %d rep(s), each measured beside its own reference run, zstd %s\n",
	       o.mib, 100.0 * (double)d.kind_pages[PG_ZERO] / (double)d.pages,
	       100.0 * (double)d.kind_pages[PG_TEXT] / (double)d.pages,
	       100.0 * (double)d.kind_pages[PG_RANDOM] / (double)d.pages,
	       o.chunk_kib, o.reps, ZSTD_versionString());
	int r = bench_all(&d, &o);
	munmap(d.buf, d.pages * PG);
	free(d.addrs);
	return r < 0 ? 1 : 0;
}
