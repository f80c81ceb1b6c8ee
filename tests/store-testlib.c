// SPDX-License-Identifier: GPL-2.0-only
#include "store-testlib.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "pagegen.h"
#include "basic/util.h"
#include "pipeline/codec.h"

static uint64_t mix(uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t h = a * 0x9E3779B97F4A7C15ULL ^ (b + 0x632BE59BD9B4E019ULL) * 0xC2B2AE3D27D4EB4FULL;

	h ^= c * 0x165667B19E3779F9ULL;
	h ^= h >> 31;
	return h ? h : 1;
}

void tl_page(uint8_t *p, uint64_t gen, uint64_t seq, uint64_t addr)
{
	uint64_t h = mix(gen, seq, addr);
	int kinds[] = { PG_ZERO, PG_TEXT, PG_TEXT, PG_RANDOM, PG_RANDOM };
	int kind = kinds[h % 5];

	if (addr >= TL_RANDOM_WINDOW && addr < TL_RANDOM_WINDOW + 0x100000)
		kind = PG_RANDOM;
	else if (addr >= TL_TEXT_WINDOW && addr < TL_TEXT_WINDOW + 0x100000)
		kind = PG_TEXT;
	pg_fill(p, kind, &h);
	if (kind != PG_ZERO) /* make every page tell where it belongs */
		memcpy(p, &h, sizeof(h));
}

void tl_plan_free(struct tl_plan *p)
{
	for (size_t i = 0; i < p->n_passes; i++) {
		range_set_free(&p->passes[i].data);
		range_set_free(&p->passes[i].zero);
	}
	p->n_passes = 0;
}

static int push_entries(struct tl_gen *g, const struct range_set *s, uint64_t seq, bool data)
{
	for (size_t i = 0; i < s->n; i++) {
		struct tl_entry *n = reallocarray(g->e, g->n + 1, sizeof(*n));

		if (!n)
			return -ENOMEM;
		g->e = n;
		g->e[g->n++] = (struct tl_entry){ s->r[i].start, s->r[i].end, seq, data };
	}
	return 0;
}

int tl_model_add(struct tl_model *m, uint64_t gen, const struct tl_plan *plan)
{
	struct tl_gen *n = reallocarray(m->g, m->n + 1, sizeof(*n)), *g;

	if (!n)
		return -ENOMEM;
	m->g = n;
	g = &m->g[m->n++];
	*g = (struct tl_gen){ .gen = gen, .full = plan->full, .n_regions = plan->n_regions,
			      .sections = plan->sections };
	g->regions = calloc(plan->n_regions + 1, sizeof(*g->regions));
	memcpy(g->regions, plan->regions, plan->n_regions * sizeof(*g->regions));
	for (size_t i = 0; i < plan->n_passes; i++) {
		const struct tl_pass *ps = &plan->passes[i];

		if (push_entries(g, &ps->data, ps->seq, true) < 0 ||
		    push_entries(g, &ps->zero, ps->seq, false) < 0)
			return -ENOMEM;
	}
	return 0;
}

void tl_model_drop_last(struct tl_model *m)
{
	struct tl_gen *g = &m->g[--m->n];

	free(g->regions);
	free(g->e);
}

void tl_model_free(struct tl_model *m)
{
	while (m->n)
		tl_model_drop_last(m);
	free(m->g);
	m->g = NULL;
}

static bool in_regions(const struct tl_gen *g, uint64_t addr)
{
	for (size_t i = 0; i < g->n_regions; i++)
		if (addr >= g->regions[i].start && addr < g->regions[i].end)
			return true;
	return false;
}

/* The rule of the brief, page by page, the slow and obvious way. */
int tl_model_page(const struct tl_model *m, size_t gi, uint64_t addr, uint8_t *buf)
{
	for (size_t j = gi;; j--) {
		const struct tl_gen *g = &m->g[j];
		const struct tl_entry *best = NULL;

		if (!in_regions(g, addr))
			return j == gi ? -1 : 0; /* not mapped then: nothing older applies */
		for (size_t k = 0; k < g->n; k++)
			if (addr >= g->e[k].start && addr < g->e[k].end &&
			    (!best || g->e[k].seq >= best->seq))
				best = &g->e[k];
		if (best && best->data) {
			tl_page(buf, g->gen, best->seq, addr);
			return 1;
		}
		if (best || g->full || j == 0)
			return 0;
	}
}

void tl_random_run(struct tl_pass *ps, uint64_t a, uint64_t b, bool first_full, uint64_t *rng)
{
	while (a < b) {
		uint64_t len = (1 + pg_rand(rng) % 12) * TL_PG, e = MIN(b, a + len);
		unsigned d = (unsigned)(pg_rand(rng) % 10);

		if (first_full ? d < 8 : (d >= 4 && d < 8))
			range_set_add(&ps->data, a, e);
		else if (first_full || d >= 8)
			range_set_add(&ps->zero, a, e);
		a = e;
	}
}

/* ---- writing ---- */

struct job {
	uint64_t seq;
	const uint64_t *addrs;
	size_t n;
};

struct worker {
	struct sink *sink;
	uint64_t gen;
	const struct job *jobs;
	size_t n_jobs, first, step, max;
	int err;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct codec *c = codec_new(0);
	struct enc_chunk ch = { 0 };
	uint8_t *buf = malloc(CODEC_MAX_PAGES * TL_PG);

	for (size_t i = w->first; !w->err && i < w->n_jobs && i < w->max; i += w->step) {
		const struct job *j = &w->jobs[i];

		for (size_t k = 0; k < j->n; k++)
			tl_page(buf + k * TL_PG, w->gen, j->seq, j->addrs[k]);
		w->err = codec_encode(c, j->seq, j->addrs, j->n, buf, &ch);
		if (!w->err)
			w->err = w->sink->ops->put_chunk(w->sink, &ch);
	}
	enc_chunk_free(&ch);
	codec_free(c);
	free(buf);
	return NULL;
}

/* Every data page of every pass, cut into chunks of plan->chunk_pages. */
static int make_jobs(const struct tl_plan *plan, uint64_t **addrs, struct job **jobs, size_t *n_jobs)
{
	size_t total = 0, n = 0, k = 0;

	for (size_t i = 0; i < plan->n_passes; i++)
		total += range_set_bytes(&plan->passes[i].data) / TL_PG;
	*addrs = malloc((total + 1) * sizeof(**addrs));
	*jobs = malloc((total + 1) * sizeof(**jobs));
	if (!*addrs || !*jobs)
		return -ENOMEM;
	for (size_t i = 0; i < plan->n_passes; i++) {
		const struct tl_pass *ps = &plan->passes[i];
		size_t first = k;

		for (size_t r = 0; r < ps->data.n; r++)
			for (uint64_t a = ps->data.r[r].start; a < ps->data.r[r].end; a += TL_PG)
				(*addrs)[k++] = a;
		for (size_t f = first; f < k; f += plan->chunk_pages)
			(*jobs)[n++] = (struct job){ ps->seq, *addrs + f, MIN(plan->chunk_pages, k - f) };
	}
	*n_jobs = n;
	return 0;
}

void tl_section(uint64_t gen, unsigned k, char name[32], uint32_t *type, uint8_t **data,
		size_t *len)
{
	static const size_t lens[] = { 0, 1, 4095, 4096, 70001, 200000 };
	uint64_t h = mix(gen, k, 77);

	snprintf(name, 32, k == 1 ? "threads" : "s%u.g%llu_x-y", k, (unsigned long long)gen);
	*type = k + 1;
	*len = lens[(gen + k) % ARRAY_SIZE(lens)];
	*data = malloc(*len + 1);
	for (size_t i = 0; *data && i < *len; i++)
		(*data)[i] = (uint8_t)(mix(h, i / 8, 0) >> (8 * (i % 8)));
}

static int put_sections(struct sink *s, const struct tl_plan *plan, uint64_t gen)
{
	int r = 0;

	for (unsigned k = 0; r == 0 && k < plan->sections; k++) {
		char name[32];
		uint32_t type;
		uint8_t *data;
		size_t len;

		tl_section(gen, k, name, &type, &data, &len);
		r = data ? s->ops->put_section(s, name, type, data, len) : -ENOMEM;
		free(data);
	}
	return r;
}

static int feed(struct sink *s, const struct tl_plan *plan, uint64_t gen, size_t max_chunks)
{
	_cleanup_free_ uint64_t *addrs = NULL;
	_cleanup_free_ struct job *jobs = NULL;
	struct worker w[8];
	pthread_t th[8];
	unsigned t = MAX(1u, MIN(plan->threads, 8u)), started = 0;
	size_t n_jobs = 0;
	int r = make_jobs(plan, &addrs, &jobs, &n_jobs);

	for (; r == 0 && started < t; started++) {
		w[started] = (struct worker){ s, gen, jobs, n_jobs, started, t, max_chunks, 0 };
		pthread_create(&th[started], NULL, worker_main, &w[started]);
	}
	/* Zero ranges go in while the workers put chunks. */
	for (size_t i = 0; r == 0 && i < plan->n_passes; i++)
		r = s->ops->put_zero(s, plan->passes[i].seq, &plan->passes[i].zero);
	/* And the sections between the chunks. */
	if (r == 0)
		r = put_sections(s, plan, gen);
	for (unsigned i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
		if (!r)
			r = w[i].err;
	}
	return r;
}

void tl_pass_regions(const struct tl_plan *plan, struct pass_region *out)
{
	static const char *const paths[] = { "", "/memfd:guest-ram (deleted)", "[heap]" };

	for (size_t i = 0; i < plan->n_regions; i++)
		out[i] = (struct pass_region){
			.start = plan->regions[i].start, .end = plan->regions[i].end,
			.pgoff = i * 3, .ino = 1000 + i, .dev_major = 8, .dev_minor = (uint32_t)i,
			.prot = 3, .shared = i % 3 == 1, .kind = i % 3 == 1 ? VMA_SHARED : VMA_ANON,
			.flags = (uint32_t)i & 1, .backing = -1, .path = (char *)paths[i % 3],
		};
}

int tl_write_partial(struct store *st, const char *set, const struct tl_plan *plan,
		     uint64_t expect_parent, size_t max_chunks, struct sink **open_sink)
{
	uint64_t gen;
	int r = store_begin(st, set, 4242, plan->full, expect_parent, open_sink, &gen);

	if (r == 0)
		r = feed(*open_sink, plan, gen, max_chunks);
	return r;
}

int tl_write_gen(struct store *st, const char *set, const struct tl_plan *plan,
		 uint64_t expect_parent, struct tl_model *m, uint64_t *gen)
{
	struct pass_region regs[32];
	struct gen_summary sum;
	struct sink *s;
	int r = store_begin(st, set, 4242, plan->full, expect_parent, &s, gen);

	if (r < 0)
		return r;
	r = feed(s, plan, *gen, SIZE_MAX);
	tl_pass_regions(plan, regs);
	if (r == 0)
		r = s->ops->commit(s, regs, plan->n_regions, &sum);
	if (r < 0) {
		s->ops->abort(s);
		return r;
	}
	s->ops->close(s);
	if (sum.generation != *gen || sum.parent != (plan->full ? 0 : *gen - 1))
		return -EPROTO;
	return m ? tl_model_add(m, *gen, plan) : 0;
}

/* ---- checking ---- */

static int compare(const struct tl_model *m, size_t gi, uint64_t addr, const uint8_t *got,
		   uint64_t len, const char *what)
{
	uint8_t want[TL_PG];
	int bad = 0;

	for (uint64_t a = addr & ~(TL_PG - 1); a < addr + len; a += TL_PG) {
		uint64_t from = MAX(a, addr), to = MIN(a + TL_PG, addr + len);

		if (tl_model_page(m, gi, a, want) <= 0)
			memset(want, 0, sizeof(want));
		if (memcmp(got + (from - addr), want + (from - a), to - from)) {
			if (bad++ < 3)
				fprintf(stderr, "  gen %llu %s: page %#llx differs\n",
					(unsigned long long)m->g[gi].gen, what, (unsigned long long)a);
		}
	}
	return bad;
}

static int check_regions(struct store_image *img, const struct tl_gen *g)
{
	size_t n;
	const struct pass_region *r = store_image_regions(img, &n);
	int bad = n != g->n_regions;

	for (size_t i = 0; !bad && i < n; i++) {
		static const char *const paths[] = { "", "/memfd:guest-ram (deleted)", "[heap]" };

		bad += r[i].start != g->regions[i].start || r[i].end != g->regions[i].end ||
		       strcmp(r[i].path, paths[i % 3]) || r[i].ino != 1000 + i ||
		       r[i].shared != (i % 3 == 1) || r[i].pgoff != i * 3 || r[i].prot != 3;
	}
	if (bad)
		fprintf(stderr, "  gen %llu: region table differs\n", (unsigned long long)g->gen);
	return bad;
}

/* Listed in the order put, each read back with its bytes and type. */
static int check_sections(struct store_image *img, const struct tl_gen *g)
{
	struct store_section list[SECTION_MAX_COUNT];
	size_t n = store_image_sections(img, list, ARRAY_SIZE(list));
	int bad = n != g->sections;

	for (unsigned k = 0; !bad && k < g->sections; k++) {
		char name[32];
		uint32_t type;
		uint8_t *want;
		void *got = NULL;
		size_t len, got_len = 0;

		tl_section(g->gen, k, name, &type, &want, &len);
		bad += strcmp(list[k].name, name) || list[k].type != type || list[k].length != len;
		bad += store_image_read_section(img, name, type, &got, &got_len) != 0 ||
		       got_len != len || memcmp(got, want, len);
		bad += store_image_read_section(img, name, type + 1, &got, &got_len) != -EMEDIUMTYPE;
		free(want);
		free(got);
	}
	bad += store_image_read_section(img, "absent", 0, NULL, NULL) != -ENOENT;
	if (bad)
		fprintf(stderr, "  gen %llu: sections differ\n", (unsigned long long)g->gen);
	return bad;
}

static int check_reads(struct store_image *img, const struct tl_model *m, size_t gi)
{
	const struct tl_gen *g = &m->g[gi];
	uint64_t seed = g->gen;
	int bad = 0;

	for (size_t i = 0; i < g->n_regions; i++) {
		uint64_t a = g->regions[i].start, len = g->regions[i].end - a;
		uint8_t *buf = malloc(len);
		int r = store_image_read(img, a, len, buf);

		bad += r != 0 ? 1 : compare(m, gi, a, buf, len, "read");
		/* an odd, unaligned piece of it */
		uint64_t off = pg_rand(&seed) % len, sub = 1 + pg_rand(&seed) % (len - off);
		r = store_image_read(img, a + off, sub, buf);
		bad += r != 0 ? 1 : compare(m, gi, a + off, buf, sub, "sub-read");
		/* one byte before the region, when that is a hole */
		if (i == 0 || g->regions[i - 1].end < a)
			bad += store_image_read(img, a - 1, 2, buf) != -ENXIO;
		free(buf);
	}
	return bad;
}

static int check_export(struct store_image *img, const struct tl_model *m, size_t gi,
			const char *dir)
{
	const struct tl_gen *g = &m->g[gi];
	int bad = store_image_export(img, dir, NULL, NULL) != 0;

	bad += tl_count_files(dir, "") != (int)(g->n_regions + g->sections);
	for (unsigned k = 0; !bad && k < g->sections; k++) {
		char name[32], path[512];
		uint32_t type;
		uint8_t *want, *got = NULL;
		size_t len, got_len = 0;

		tl_section(g->gen, k, name, &type, &want, &len);
		snprintf(path, sizeof(path), "%s/%s.section", dir, name);
		bad += read_full_file(path, (char **)&got, &got_len) != 0 || got_len != len ||
		       memcmp(got, want, len);
		free(want);
		free(got);
	}
	for (size_t i = 0; !bad && i < g->n_regions; i++) {
		uint64_t a = g->regions[i].start, len = g->regions[i].end - a;
		char path[512];
		uint8_t *buf = malloc(len + 1);
		int fd;

		snprintf(path, sizeof(path), "%s/%08llx-%08llx.bin", dir, (unsigned long long)a,
			 (unsigned long long)g->regions[i].end);
		fd = open(path, O_RDONLY);
		if (fd < 0 || read(fd, buf, len + 1) != (ssize_t)len)
			bad++;
		else
			bad += compare(m, gi, a, buf, len, "export");
		if (fd >= 0)
			close(fd);
		free(buf);
	}
	tl_rmrf(dir);
	return bad;
}

int tl_check_gen(struct store *st, const char *set, const struct tl_model *m, size_t gi,
		 const char *scratch_dir)
{
	struct store_image *img;
	int bad, r = store_image_open(st, set, m->g[gi].gen, &img);

	if (r < 0) {
		fprintf(stderr, "  gen %llu: open: %s\n", (unsigned long long)m->g[gi].gen, strerror(-r));
		return 1;
	}
	bad = check_regions(img, &m->g[gi]);
	bad += check_sections(img, &m->g[gi]);
	bad += check_reads(img, m, gi);
	bad += check_export(img, m, gi, scratch_dir);
	bad += store_image_verify(img, NULL, NULL, NULL, NULL) != 0;
	store_image_close(img);
	return bad;
}

char *tl_tmpdir(const char *tag)
{
	const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp";
	char *p;

	if (asprintf(&p, "%s/wpmig-%s-XXXXXX", base, tag) < 0)
		return NULL;
	if (!mkdtemp(p)) {
		free(p);
		return NULL;
	}
	return p;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

void tl_rmrf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int tl_count_files(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    !strncmp(de->d_name, prefix, strlen(prefix)))
			n++;
	closedir(d);
	return n;
}
