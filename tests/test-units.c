// SPDX-License-Identifier: GPL-2.0-only
/*
 * Pure-logic unit tests: range sets (against a bitmap model), the maps
 * parser, the read planner, size and number parsing.  No process, no
 * kernel feature.  Run all, or name tests on the command line.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "basic/ranges.h"
#include "basic/util.h"
#include "track/maps.h"
#include "track/reader.h"

struct unit_test {
	const char *name;
	void (*fn)(void);
};

static struct unit_test tests[64];
static size_t n_tests;

#define TEST(name)                                                             \
	static void test_##name(void);                                         \
	__attribute__((constructor)) static void register_##name(void)         \
	{                                                                      \
		tests[n_tests++] = (struct unit_test){ #name, test_##name };   \
	}                                                                      \
	static void test_##name(void)

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(uint64_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return n ? rng_state % n : rng_state;
}

/* ---- range sets ---- */

/* Sorted, non-empty, and merged: neighbours neither overlap nor touch. */
static bool set_is_canonical(const struct range_set *s)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->r[i].start >= s->r[i].end)
			return false;
		if (i && s->r[i - 1].end >= s->r[i].start)
			return false;
	}
	return true;
}

static bool set_equals(const struct range_set *s, const struct range *want, size_t n)
{
	if (s->n != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s->r[i].start != want[i].start || s->r[i].end != want[i].end)
			return false;
	return true;
}

TEST(ranges_basic)
{
	struct range_set s = { 0 };

	range_set_add(&s, 100, 200);
	range_set_add(&s, 300, 400);
	range_set_add(&s, 200, 300); /* touching both: one range */
	CHECK(set_equals(&s, (struct range[]){ { 100, 400 } }, 1), "touching ranges merge");
	range_set_add(&s, 50, 60);
	range_set_add(&s, 500, 600);
	range_set_add(&s, 55, 550); /* overlaps all three */
	CHECK(set_equals(&s, (struct range[]){ { 50, 600 } }, 1), "overlap merges all");
	range_set_add(&s, 700, 700); /* empty: ignored */
	range_set_add(&s, 800, 700); /* reversed: ignored */
	CHECK(s.n == 1, "empty adds ignored, n=%zu", s.n);

	range_set_remove(&s, 100, 200); /* split */
	CHECK(set_equals(&s, (struct range[]){ { 50, 100 }, { 200, 600 } }, 2), "split");
	range_set_remove(&s, 0, 60);   /* clip the front */
	range_set_remove(&s, 550, 900); /* clip the back */
	CHECK(set_equals(&s, (struct range[]){ { 60, 100 }, { 200, 550 } }, 2), "clip ends");
	range_set_remove(&s, 100, 200); /* the gap exactly: no change */
	CHECK(set_equals(&s, (struct range[]){ { 60, 100 }, { 200, 550 } }, 2), "remove gap");
	range_set_remove(&s, 60, 550);
	CHECK(s.n == 0, "remove all, n=%zu", s.n);

	range_set_add(&s, 0x1000, 0x3000);
	CHECK(range_set_contains(&s, 0x1000, 0x3000), "contains itself");
	CHECK(range_set_contains(&s, 0x2000, 0x2000), "empty range is contained");
	CHECK(!range_set_contains(&s, 0xfff, 0x2000), "starts before");
	CHECK(!range_set_contains(&s, 0x2000, 0x3001), "ends after");
	CHECK(range_set_overlaps(&s, 0x2fff, 0x4000), "overlaps by one");
	CHECK(!range_set_overlaps(&s, 0x3000, 0x4000), "touching is no overlap");
	CHECK(!range_set_overlaps(&s, 0x0, 0x1000), "touching before is no overlap");
	CHECK(range_set_bytes(&s) == 0x2000, "bytes");

	/* Near the top of the address space. */
	range_set_add(&s, UINT64_MAX - 0x2000, UINT64_MAX);
	CHECK(range_set_contains(&s, UINT64_MAX - 1, UINT64_MAX), "top range");
	CHECK(range_set_bytes(&s) == 0x4000, "bytes with top range");

	struct range_set t = { 0 };
	range_set_add(&t, 5, 6);
	range_set_swap(&s, &t);
	CHECK(s.n == 1 && t.n == 2, "swap");
	range_set_clear(&t);
	CHECK(t.n == 0 && !range_set_overlaps(&t, 0, UINT64_MAX), "clear");
	range_set_free(&s);
	range_set_free(&t);
	range_set_free(&t); /* twice: harmless */
}

TEST(ranges_clip_appends)
{
	struct range_set s = { 0 }, out = { 0 };

	range_set_add(&s, 10, 20);
	range_set_add(&s, 30, 40);
	range_set_add(&s, 50, 60);
	range_set_add(&out, 40, 45); /* touches the clipped [35, 40) */
	range_set_clip(&s, 15, 55, &out);
	CHECK(set_equals(&out, (struct range[]){ { 15, 20 }, { 30, 45 }, { 50, 55 } }, 3),
	      "clip into a non-empty set merges");
	CHECK(set_is_canonical(&out), "clip result canonical");
	range_set_free(&s);
	range_set_free(&out);
}

#define MODEL_UNITS 512

/* The set against a bitmap of MODEL_UNITS units of `unit` bytes at `base`. */
static bool set_matches_model(const struct range_set *s, const bool *bits, uint64_t base,
			      uint64_t unit)
{
	struct range_set m = { 0 };
	bool ok;

	for (size_t i = 0; i < MODEL_UNITS; i++)
		if (bits[i])
			range_set_add(&m, base + i * unit, base + (i + 1) * unit);
	ok = m.n == s->n && (!m.n || !memcmp(m.r, s->r, m.n * sizeof(*m.r)));
	range_set_free(&m);
	return ok;
}

static void model_queries(const struct range_set *s, const bool *bits, uint64_t base,
			  uint64_t unit, size_t step)
{
	size_t a = rnd(MODEL_UNITS), b = a + rnd(MODEL_UNITS - a) + 1, set = 0;
	struct range_set part = { 0 };
	bool all = true, any = false;

	for (size_t i = a; i < b; i++) {
		all &= bits[i];
		any |= bits[i];
		set += bits[i];
	}
	CHECK(range_set_contains(s, base + a * unit, base + b * unit) == all,
	      "step %zu: contains [%zu,%zu) model says %d", step, a, b, all);
	CHECK(range_set_overlaps(s, base + a * unit, base + b * unit) == any,
	      "step %zu: overlaps [%zu,%zu) model says %d", step, a, b, any);
	range_set_clip(s, base + a * unit, base + b * unit, &part);
	CHECK(range_set_bytes(&part) == set * unit && set_is_canonical(&part),
	      "step %zu: clip [%zu,%zu) has %llu bytes, model %zu units", step, a, b,
	      (unsigned long long)range_set_bytes(&part), set);
	range_set_free(&part);
}

static void ranges_random_run(uint64_t base, uint64_t unit, size_t steps)
{
	bool bits[MODEL_UNITS] = { false };
	struct range_set s = { 0 };
	size_t fails_before = (size_t)test_failures;

	for (size_t step = 0; step < steps && (size_t)test_failures == fails_before; step++) {
		/* Mostly short ranges, sometimes long ones, some empty. */
		size_t a = rnd(MODEL_UNITS);
		size_t len = rnd(4) ? rnd(8) : rnd(MODEL_UNITS);
		size_t b = MIN(a + len, (size_t)MODEL_UNITS);
		bool add = rnd(100) < 55;
		int r = add ? range_set_add(&s, base + a * unit, base + b * unit)
			    : range_set_remove(&s, base + a * unit, base + b * unit);

		CHECK(r == 0, "step %zu: %s failed: %d", step, add ? "add" : "remove", r);
		for (size_t i = a; i < b; i++)
			bits[i] = add;
		CHECK(set_is_canonical(&s), "step %zu: set not sorted and merged", step);
		CHECK(set_matches_model(&s, bits, base, unit), "step %zu: %s [%zu,%zu) differs "
		      "from the bitmap", step, add ? "add" : "remove", a, b);
		size_t count = 0;
		for (size_t i = 0; i < MODEL_UNITS; i++)
			count += bits[i];
		CHECK(range_set_bytes(&s) == count * unit, "step %zu: bytes", step);
		model_queries(&s, bits, base, unit, step);
	}
	range_set_free(&s);
}

TEST(ranges_random)
{
	ranges_random_run(0, 1, 20000);
	ranges_random_run(0x7f0000000000ULL, PAGE_SIZE_4K, 20000);
	/* The last unit ends at 2^64 - 4096: no overflow on the way. */
	ranges_random_run(UINT64_MAX - (MODEL_UNITS + 1) * PAGE_SIZE_4K + 1, PAGE_SIZE_4K, 5000);
}

/* ---- /proc/PID/maps parsing ---- */

static const char sample_maps[] =
	"55d4c8a00000-55d4c8a02000 r--p 00000000 fd:01 1234567                    /usr/bin/cat\n"
	"55d4c8c00000-55d4c8c21000 rw-p 00000000 00:00 0                          [heap]\n"
	"7f1000000000-7f1000001000 rw-s 00000000 00:01 2049                       /memfd:wpmig-workload (deleted)\n"
	"7f1000001000-7f1000002000 rw-p 00000000 00:01 2050                       /memfd:priv (deleted)\n"
	"7f1000002000-7f1000003000 rw-s 00000000 00:01 3                          /dev/zero (deleted)\n"
	"7f1000003000-7f1000004000 rw-s 00000000 00:01 32769                      /SYSV00000000 (deleted)\n"
	"7f1000004000-7f1000005000 rw-p 00001000 fd:01 42                         /home/u/my file  (2).bin\n"
	"7f1000005000-7f1000006000 rw-p 00000000 fd:01 43                         /tmp/gone (deleted)\n"
	"7f1000006000-7f1000007000 rw-p 00000000 00:00 0                          [anon:wpmig buffer]\n"
	"7f1000007000-7f1000008000 rw-p 00000000 00:00 0 \n"
	"7f1000008000-7f1000009000 ---p 00000000 00:00 0\n"
	"7f1000200000-7f1000400000 rw-p 00000000 00:10 77                         /anon_hugepage (deleted)\n"
	"7f1000400000-7f1000600000 rw-s 00000000 00:10 78                         /dev/hugepages/vm-ram\n"
	"7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]\n"
	"7ffc00100000-7ffc00104000 r--p 00000000 00:00 0                          [vvar]\n"
	"7ffc00104000-7ffc00105000 r--p 00000000 00:00 0                          [vvar_vclock]\n"
	"7ffc00105000-7ffc00107000 r-xp 00000000 00:00 0                          [vdso]\n"
	"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n";

struct maps_want {
	uint64_t start, end, pgoff, ino;
	unsigned maj, min;
	const char *perms, *path;
	enum vma_kind kind;
	bool image;
};

static const struct maps_want sample_want[] = {
	{ 0x55d4c8a00000, 0x55d4c8a02000, 0, 1234567, 0xfd, 1, "r--p", "/usr/bin/cat", VMA_FILE_PRIVATE, false },
	{ 0x55d4c8c00000, 0x55d4c8c21000, 0, 0, 0, 0, "rw-p", "[heap]", VMA_ANON, true },
	{ 0x7f1000000000, 0x7f1000001000, 0, 2049, 0, 1, "rw-s", "/memfd:wpmig-workload (deleted)", VMA_SHARED, true },
	{ 0x7f1000001000, 0x7f1000002000, 0, 2050, 0, 1, "rw-p", "/memfd:priv (deleted)", VMA_FILE_PRIVATE, true },
	{ 0x7f1000002000, 0x7f1000003000, 0, 3, 0, 1, "rw-s", "/dev/zero (deleted)", VMA_SHARED, true },
	{ 0x7f1000003000, 0x7f1000004000, 0, 32769, 0, 1, "rw-s", "/SYSV00000000 (deleted)", VMA_SHARED, true },
	{ 0x7f1000004000, 0x7f1000005000, 0x1000, 42, 0xfd, 1, "rw-p", "/home/u/my file  (2).bin", VMA_FILE_PRIVATE, true },
	{ 0x7f1000005000, 0x7f1000006000, 0, 43, 0xfd, 1, "rw-p", "/tmp/gone (deleted)", VMA_FILE_PRIVATE, true },
	{ 0x7f1000006000, 0x7f1000007000, 0, 0, 0, 0, "rw-p", "[anon:wpmig buffer]", VMA_ANON, true },
	{ 0x7f1000007000, 0x7f1000008000, 0, 0, 0, 0, "rw-p", "", VMA_ANON, true },
	{ 0x7f1000008000, 0x7f1000009000, 0, 0, 0, 0, "---p", "", VMA_ANON, false },
	/* Private hugetlb: an inode on hugetlbfs, read as file-backed. */
	{ 0x7f1000200000, 0x7f1000400000, 0, 77, 0, 0x10, "rw-p", "/anon_hugepage (deleted)", VMA_FILE_PRIVATE, true },
	{ 0x7f1000400000, 0x7f1000600000, 0, 78, 0, 0x10, "rw-s", "/dev/hugepages/vm-ram", VMA_SHARED, true },
	{ 0x7ffc00000000, 0x7ffc00021000, 0, 0, 0, 0, "rw-p", "[stack]", VMA_ANON, true },
	{ 0x7ffc00100000, 0x7ffc00104000, 0, 0, 0, 0, "r--p", "[vvar]", VMA_SPECIAL, false },
	{ 0x7ffc00104000, 0x7ffc00105000, 0, 0, 0, 0, "r--p", "[vvar_vclock]", VMA_SPECIAL, false },
	{ 0x7ffc00105000, 0x7ffc00107000, 0, 0, 0, 0, "r-xp", "[vdso]", VMA_SPECIAL, false },
	{ 0xffffffffff600000, 0xffffffffff601000, 0, 0, 0, 0, "--xp", "[vsyscall]", VMA_SPECIAL, false },
};

static void check_vma(const struct vma *v, const struct maps_want *w)
{
	char perms[5] = { v->read ? 'r' : '-', v->write ? 'w' : '-', v->exec ? 'x' : '-',
			  v->shared ? 's' : 'p', 0 };

	CHECK(v->start == w->start && v->end == w->end, "%s: bounds %llx-%llx", w->path,
	      (unsigned long long)v->start, (unsigned long long)v->end);
	CHECK(v->pgoff == w->pgoff && v->ino == w->ino, "%s: pgoff %llx ino %llu", w->path,
	      (unsigned long long)v->pgoff, (unsigned long long)v->ino);
	CHECK(v->dev_major == w->maj && v->dev_minor == w->min, "%s: dev %x:%x", w->path,
	      v->dev_major, v->dev_minor);
	CHECK(!strcmp(perms, w->perms), "%s: perms %s, want %s", w->path, perms, w->perms);
	CHECK(!strcmp(v->path, w->path), "path '%s', want '%s'", v->path, w->path);
	CHECK(v->kind == w->kind, "%s: kind %s, want %s", w->path, vma_kind_name(v->kind),
	      vma_kind_name(w->kind));
	CHECK(vma_is_image(v) == w->image, "%s: is_image %d", w->path, vma_is_image(v));
}

TEST(maps_parse_sample)
{
	struct vma_list l = { 0 };
	char *text = strdup(sample_maps);
	int r = maps_parse(text, &l);

	CHECK(r == 0, "parse: %d", r);
	if (r < 0) {
		free(text);
		return;
	}
	CHECK(l.n == ARRAY_SIZE(sample_want), "%zu entries, want %zu", l.n, ARRAY_SIZE(sample_want));
	for (size_t i = 0; i < MIN(l.n, ARRAY_SIZE(sample_want)); i++)
		check_vma(&l.v[i], &sample_want[i]);
	vma_list_free(&l);
	vma_list_free(&l); /* twice: harmless */

	/* No trailing newline, and an empty text. */
	text = strdup("1000-2000 rw-p 00000000 00:00 0");
	CHECK(maps_parse(text, &l) == 0 && l.n == 1 && !strcmp(l.v[0].path, ""), "no newline");
	vma_list_free(&l);
	text = strdup("");
	CHECK(maps_parse(text, &l) == 0 && l.n == 0, "empty text");
	vma_list_free(&l);
}

/* Our own maps: the parser must take what the kernel prints, in order. */
TEST(maps_read_self)
{
	struct vma_list l = { 0 };
	bool heap_or_anon = false, vdso = false, stack = false;
	int r = maps_read(getpid(), &l);

	CHECK(r == 0 && l.n > 5, "maps_read(self): %d, %zu entries", r, l.n);
	for (size_t i = 0; i < l.n; i++) {
		vdso |= !strcmp(l.v[i].path, "[vdso]") && l.v[i].kind == VMA_SPECIAL;
		stack |= !strcmp(l.v[i].path, "[stack]") && l.v[i].kind == VMA_ANON;
		heap_or_anon |= l.v[i].kind == VMA_ANON && vma_is_image(&l.v[i]);
	}
	CHECK(vdso && stack && heap_or_anon, "vdso %d stack %d anon %d", vdso, stack, heap_or_anon);
	vma_list_free(&l);
	CHECK(maps_read(-5, &l) < 0, "maps_read of an invalid PID must fail");
}

static const char *const malformed_maps[] = {
	"garbage\n",
	"7f00-7e00 rw-p 00000000 00:00 0\n",          /* start > end */
	"7f00-7f00 rw-p 00000000 00:00 0\n",          /* empty */
	"7f00-8000 rw- 00000000 00:00 0\n",           /* 3 perms */
	"7f00-8000 rw-p 00000000 00:00\n",            /* no inode */
	"7f00-8000 rw-p zz 00:00 0\n",                /* offset */
	"7f00-8000 rw-p 00000000 0000 0\n",           /* device */
	"7f00 rw-p 00000000 00:00 0\n",               /* no end */
	"1000-2000 rw-p 0 00:00 0\nnot a line\n",     /* one bad line in many */
};

/* Each line well formed, but no moment's layout: the mappings changed
 * between two reads of the file (maps_read() reads it again). */
static const char *const torn_maps[] = {
	"1000-2000 rw-p 0 00:00 0\n0-3000 rw-p 0 00:00 0\n",    /* unsorted */
	"1000-3000 rw-p 0 00:00 0\n2000-4000 rw-p 0 00:00 0\n", /* overlapping */
};

TEST(maps_torn)
{
	for (size_t i = 0; i < ARRAY_SIZE(torn_maps); i++) {
		struct vma_list l = { 0 };
		char *text = strdup(torn_maps[i]);
		int r = maps_parse(text, &l);

		CHECK(r == -EAGAIN, "torn maps text not told apart: '%s' (%d)", torn_maps[i], r);
		if (r == 0)
			vma_list_free(&l);
		else
			free(text);
	}
}

TEST(maps_reject_malformed)
{
	for (size_t i = 0; i < ARRAY_SIZE(malformed_maps); i++) {
		struct vma_list l = { 0 };
		char *text = strdup(malformed_maps[i]);
		int r = maps_parse(text, &l);

		CHECK(r == -EINVAL, "accepted malformed maps text: '%s' (%d)", malformed_maps[i], r);
		if (r == 0)
			vma_list_free(&l);
		else
			free(text); /* not taken on failure */
	}
}

/*
 * Known bugs, run only when named (meson registers them should_fail): the
 * parsers take what strtoull() takes, so signs and "0" octal get through.
 * The kernel never prints such maps lines, but the contract says malformed
 * lines are rejected and parse_u64 reads decimal or 0x-hex only.
 */
static const char *const lenient_maps[] = {
	"1000--2000 rw-p 00000000 00:00 0\n",  /* end "-2000": near 2^64 */
	"+1000-2000 rw-p 00000000 00:00 0\n",
	"1000-2000 rwxz 00000000 00:00 0\n",   /* unknown sharing letter */
	"1000-2000 rw-p -1 00:00 0\n",         /* negative offset */
	"1000-2000 rw-p 00000000 00:00 -5\n",  /* negative inode */
};

TEST(maps_strict)
{
	for (size_t i = 0; i < ARRAY_SIZE(lenient_maps); i++) {
		struct vma_list l = { 0 };
		char *text = strdup(lenient_maps[i]);
		int r = maps_parse(text, &l);

		CHECK(r == -EINVAL, "accepted malformed maps text: '%s'", lenient_maps[i]);
		if (r == 0)
			vma_list_free(&l);
		else
			free(text);
	}
}

TEST(parse_strict)
{
	uint64_t v = 0;

	CHECK(parse_u64("010", &v) == 0 && v == 10, "parse_u64(\"010\") = %llu, want 10",
	      (unsigned long long)v);
	CHECK(parse_u64("+5", &v) == -EINVAL, "parse_u64(\"+5\") accepted");
	CHECK(parse_size("+5", &v) == -EINVAL, "parse_size(\"+5\") accepted");
}

/* ---- read planning ---- */

static void plan_check(const struct pass *p, uint64_t chunk_bytes, const char *what)
{
	uint64_t cb = MAX(chunk_bytes & ~(PAGE_SIZE_4K - 1), PAGE_SIZE_4K);
	struct range_set covered = { 0 }, want = { 0 };
	struct read_plan plan;
	size_t next_seg = 0;
	int r = read_plan_build(p, chunk_bytes, &plan);

	CHECK(r == 0, "%s: build: %d", what, r);
	if (r < 0)
		return;
	for (size_t c = 0; c < plan.n_chunks; c++) {
		const struct chunk *ch = &plan.chunks[c];
		const struct pass_region *pr = &p->regions[ch->region];
		uint64_t sum = 0;

		CHECK(ch->region < p->n_regions, "%s: chunk %zu region %zu", what, c, ch->region);
		CHECK(ch->first_seg == next_seg && ch->n_segs > 0,
		      "%s: chunk %zu segs %zu+%zu, next %zu", what, c, ch->first_seg, ch->n_segs,
		      next_seg);
		CHECK(ch->bytes > 0 && ch->bytes <= cb, "%s: chunk %zu has %llu bytes (max %llu)",
		      what, c, (unsigned long long)ch->bytes, (unsigned long long)cb);
		next_seg = ch->first_seg + ch->n_segs;
		for (size_t k = ch->first_seg; k < next_seg && k < plan.n_segs; k++) {
			const struct range *g = &plan.segs[k];

			CHECK(g->start < g->end && !(g->start % PAGE_SIZE_4K) && !(g->end % PAGE_SIZE_4K),
			      "%s: seg %zu %llx-%llx", what, k, (unsigned long long)g->start,
			      (unsigned long long)g->end);
			CHECK(g->start >= pr->start && g->end <= pr->end,
			      "%s: seg %llx-%llx outside its region %llx-%llx", what,
			      (unsigned long long)g->start, (unsigned long long)g->end,
			      (unsigned long long)pr->start, (unsigned long long)pr->end);
			CHECK(!k || plan.segs[k - 1].end <= g->start, "%s: seg %zu out of order", what, k);
			sum += g->end - g->start;
			range_set_add(&covered, g->start, g->end);
		}
		CHECK(sum == ch->bytes, "%s: chunk %zu segs sum %llu != %llu", what, c,
		      (unsigned long long)sum, (unsigned long long)ch->bytes);
	}
	CHECK(next_seg == plan.n_segs, "%s: %zu segs, chunks cover %zu", what, plan.n_segs, next_seg);
	/* Exactly the data inside the regions, each byte once. */
	for (size_t i = 0; i < p->n_regions; i++)
		range_set_clip(&p->data, p->regions[i].start, p->regions[i].end, &want);
	CHECK(want.n == covered.n && !memcmp(want.r, covered.r, want.n * sizeof(*want.r)),
	      "%s: plan covers %llu bytes in %zu ranges, data %llu in %zu", what,
	      (unsigned long long)range_set_bytes(&covered), covered.n,
	      (unsigned long long)range_set_bytes(&want), want.n);
	CHECK(plan.bytes == range_set_bytes(&want), "%s: plan.bytes %llu", what,
	      (unsigned long long)plan.bytes);
	range_set_free(&covered);
	range_set_free(&want);
	read_plan_free(&plan);
}

TEST(read_plan)
{
	/* Two adjacent regions (data merged across their border), a gap, a
	 * large region; plus data outside every region (never planned). */
	struct pass_region regions[] = {
		{ .start = 0x100000, .end = 0x140000 },
		{ .start = 0x140000, .end = 0x180000 },
		{ .start = 0x400000, .end = 0x2400000 },
	};
	struct pass p = { .regions = regions, .n_regions = ARRAY_SIZE(regions) };
	static const uint64_t chunk_sizes[] = { 1, 4096, 4097, 3 * 4096 + 5, 65536, 1 << 20, 64 << 20 };

	range_set_add(&p.data, 0x13e000, 0x142000);
	range_set_add(&p.data, 0x200000, 0x300000); /* in no region */
	for (int round = 0; round < 40; round++) {
		for (size_t i = 0; i < 300; i++) {
			uint64_t a = 0x400000 + rnd(0x2000) * PAGE_SIZE_4K;
			range_set_add(&p.data, a, a + (1 + rnd(rnd(4) ? 2 : 64)) * PAGE_SIZE_4K);
		}
		if (round == 20)
			range_set_add(&p.data, 0x100000, 0x2400000); /* everything */
		for (size_t k = 0; k < ARRAY_SIZE(chunk_sizes); k++) {
			char what[64];

			snprintf(what, sizeof(what), "round %d chunk %llu", round,
				 (unsigned long long)chunk_sizes[k]);
			plan_check(&p, chunk_sizes[k], what);
		}
		if (round == 20)
			range_set_clear(&p.data);
	}
	range_set_clear(&p.data);
	struct read_plan plan;
	CHECK(read_plan_build(&p, 1 << 20, &plan) == 0 && plan.n_chunks == 0 && plan.bytes == 0,
	      "empty data: empty plan");
	read_plan_free(&plan);
	range_set_free(&p.data);
}

/* ---- parse_size / parse_u64 ---- */

struct parse_case {
	const char *in;
	int r;
	uint64_t v;
};

TEST(parse_size)
{
	static const struct parse_case cases[] = {
		{ "0", 0, 0 },           { "4096", 0, 4096 },      { "1K", 0, 1024 },
		{ "1k", 0, 1024 },       { "2M", 0, 2 << 20 },     { "3G", 0, 3ULL << 30 },
		{ "1T", 0, 1ULL << 40 }, { "16KiB", 0, 16384 },    { "16KB", 0, 16384 },
		{ "1g", 0, 1ULL << 30 }, { "16777215T", 0, 16777215ULL << 40 },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "", -EINVAL, 0 },      { "K", -EINVAL, 0 },      { "-1", -EINVAL, 0 },
		{ " 1", -EINVAL, 0 },    { "1 ", -EINVAL, 0 },     { "1.5G", -EINVAL, 0 },
		{ "1X", -EINVAL, 0 },    { "1KX", -EINVAL, 0 },    { "1Kib", -EINVAL, 0 },
		{ "1KiBs", -EINVAL, 0 }, { "0x10", -EINVAL, 0 },   { "1B", -EINVAL, 0 },
		{ "16777216T", -ERANGE, 0 },  { "18446744073709551616", -ERANGE, 0 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uint64_t v = 0xdead;
		int r = parse_size(cases[i].in, &v);

		CHECK(r == cases[i].r && (r < 0 || v == cases[i].v),
		      "parse_size(\"%s\") = %d, %llu; want %d, %llu", cases[i].in, r,
		      (unsigned long long)v, cases[i].r, (unsigned long long)cases[i].v);
		CHECK(r == 0 || v == 0xdead, "parse_size(\"%s\") wrote its result on failure",
		      cases[i].in);
	}
	CHECK(parse_size(NULL, &(uint64_t){ 0 }) == -EINVAL, "NULL");
}

TEST(parse_number)
{
	static const struct parse_case cases[] = {
		{ "0", 0, 0 },        { "7", 0, 7 },            { "100", 0, 100 },
		{ "010", -EINVAL, 0 }, { "00", -EINVAL, 0 },    { "0x10", -EINVAL, 0 },
		{ "+1", -EINVAL, 0 },  { "-1", -EINVAL, 0 },    { " 1", -EINVAL, 0 },
		{ "1 ", -EINVAL, 0 },  { "", -EINVAL, 0 },      { "101", -ERANGE, 0 },
		{ "99999999999999999999", -ERANGE, 0 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uint64_t v = 0xdead;
		int r = parse_number(cases[i].in, 100, &v);

		CHECK(r == cases[i].r && (r < 0 ? v == 0xdead : v == cases[i].v),
		      "parse_number(\"%s\", 100) = %d, %llu; want %d, %llu", cases[i].in, r,
		      (unsigned long long)v, cases[i].r, (unsigned long long)cases[i].v);
	}
	CHECK(parse_size("010M", &(uint64_t){ 0 }) == -EINVAL, "parse_size(\"010M\") accepted");
	CHECK(check_addr_syntax("host:80") == 0 && check_addr_syntax("[::1]:80") == 0 &&
	      check_addr_syntax("::1") == 0 && check_addr_syntax("unix:/run/x") == 0 &&
	      check_addr_syntax("a-b.c_d") == 0, "good addresses refused");
	CHECK(check_addr_syntax("a b:1") < 0 && check_addr_syntax("host:080") < 0 &&
	      check_addr_syntax("host:0x50") < 0 && check_addr_syntax("host:0") < 0 &&
	      check_addr_syntax(":80") < 0 && check_addr_syntax("[::1") < 0 &&
	      check_addr_syntax("unix:rel") < 0, "bad addresses taken");
}

TEST(parse_u64)
{
	static const struct parse_case cases[] = {
		{ "0", 0, 0 },          { "12345", 0, 12345 },     { "0x1f", 0, 31 },
		{ "0XFF", 0, 255 },     { "18446744073709551615", 0, UINT64_MAX },
		{ "0xffffffffffffffff", 0, UINT64_MAX },
		{ "", -EINVAL, 0 },     { "-1", -EINVAL, 0 },      { " 1", -EINVAL, 0 },
		{ "1 ", -EINVAL, 0 },   { "12a", -EINVAL, 0 },     { "0x", -EINVAL, 0 },
		{ "1K", -EINVAL, 0 },   { "18446744073709551616", -ERANGE, 0 },
		{ "0x10000000000000000", -ERANGE, 0 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uint64_t v = 0xdead;
		int r = parse_u64(cases[i].in, &v);

		CHECK(r == cases[i].r && (r < 0 || v == cases[i].v),
		      "parse_u64(\"%s\") = %d, %llu; want %d, %llu", cases[i].in, r,
		      (unsigned long long)v, cases[i].r, (unsigned long long)cases[i].v);
	}
	CHECK(parse_u64(NULL, &(uint64_t){ 0 }) == -EINVAL, "NULL");
}

int main(int argc, char **argv)
{
	size_t ran = 0;

	for (size_t i = 0; i < n_tests; i++) {
		bool wanted = argc < 2 && strncmp(tests[i].name, "known_", 6);
		int before = test_failures;

		for (int a = 1; a < argc; a++)
			wanted |= !strcmp(argv[a], tests[i].name);
		if (!wanted)
			continue;
		tests[i].fn();
		ran++;
		fprintf(stderr, "%-24s %s\n", tests[i].name, test_failures == before ? "ok" : "FAILED");
	}
	if (!ran) {
		fprintf(stderr, "no test matched\n");
		return 2;
	}
	return test_failures ? 1 : 0;
}
