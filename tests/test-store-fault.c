// SPDX-License-Identifier: GPL-2.0-only
/*
 * The store under faults (argv[1] picks one):
 *   crash   a child writes generation after generation and is SIGKILLed at
 *           random points, many times: every listed generation reads back
 *           equal to the model and verifies, no temp file survives an open
 *   enospc  a 2 MiB tmpfs (private mount namespace; skipped if it cannot be
 *           mounted) fills up mid-generation, and at every point of a
 *           commit: clean -ENOSPC, earlier generations intact, no temp
 * (test-store-corrupt.c: damaged, truncated and hostile files.)
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "pagegen.h"
#include "store-testlib.h"
#include "basic/util.h"

#define BASE 0x600000000000ULL

static char *scratch;

/* The plan of generation g, the same in the writer and in the checker. */
static void plan_for(uint64_t g, uint64_t pages, unsigned n_regions, struct tl_plan *p)
{
	uint64_t rng = g * 1000003 + pages;

	*p = (struct tl_plan){ .full = g % 10 == 1, .n_regions = n_regions, .chunk_pages = 32,
			       .threads = 2, .n_passes = 2 };
	for (unsigned i = 0; i < n_regions; i++)
		p->regions[i] = (struct range){ BASE + i * 0x100000000ULL,
						BASE + i * 0x100000000ULL + pages * TL_PG };
	for (size_t k = 0; k < p->n_passes; k++) {
		p->passes[k].seq = k + 1;
		for (unsigned i = 0; i < n_regions; i++)
			tl_random_run(&p->passes[k], p->regions[i].start, p->regions[i].end,
				      p->full && !k, &rng);
	}
}

static uint64_t newest(struct store *st, const char *set)
{
	struct store_gen_info *v = NULL;
	size_t n = 0;
	uint64_t g = 0;

	if (store_list_generations(st, set, &v, &n) == 0 && n)
		g = v[n - 1].generation;
	free(v);
	return g;
}

/* Write generations until killed, or max of them (0: no limit). */
static _Noreturn void crash_child(const char *dir, int max)
{
	struct store *st;

	if (store_open(dir, &st) < 0)
		_exit(2);
	for (int i = 0; !max || i < max; i++) {
		uint64_t g = newest(st, "c"), got;
		struct tl_plan p;

		plan_for(g + 1, 256, 4, &p);
		if (tl_write_gen(st, "c", &p, g, NULL, &got) < 0)
			_exit(3);
		tl_plan_free(&p);
	}
	_exit(0);
}

/* How long a child takes to start and write one generation, on this
 * machine, now (the kill points are spread over a few of these). */
static uint64_t one_generation_ns(const char *dir)
{
	uint64_t best = UINT64_MAX;

	for (int i = 0; i < 3; i++) {
		uint64_t t = now_ns();
		pid_t pid = fork();

		if (pid == 0)
			crash_child(dir, 1);
		waitpid(pid, NULL, 0);
		best = MIN(best, now_ns() - t);
	}
	return best;
}

/* Everything listed is whole: contiguous numbers, readable, as modelled. */
static void check_after_crash(const char *dir, struct tl_model *m, uint64_t *rng)
{
	struct store_gen_info *v = NULL;
	struct store *st;
	size_t n = 0;
	char *sp;

	CHECK(store_open(dir, &st) == 0, "open");
	CHECK(asprintf(&sp, "%s/images/c", dir) > 0, "path");
	CHECK(tl_count_files(sp, ".tmp-") <= 0, "temp file survived open");
	CHECK(store_list_generations(st, "c", &v, &n) == 0 || n == 0, "list");
	for (size_t i = 0; i < n; i++)
		CHECK(v[i].generation == i + 1 && v[i].error == 0, "gen %zu listed as %llu error %d",
		      i + 1, (unsigned long long)v[i].generation, v[i].error);
	while (m->n < n) {
		struct tl_plan p;

		plan_for(m->n + 1, 256, 4, &p);
		tl_model_add(m, m->n + 1, &p);
		tl_plan_free(&p);
	}
	if (n) { /* the newest (its chain verifies every file down to a full one) and one more */
		CHECK(tl_check_gen(st, "c", m, n - 1, scratch) == 0, "newest gen %zu", n);
		CHECK(tl_check_gen(st, "c", m, pg_rand(rng) % n, scratch) == 0, "older gen");
	}
	free(v);
	free(sp);
	store_close(st);
}

static void test_crash(void)
{
	char *dir = tl_tmpdir("crash"), *sp;
	struct tl_model m = { 0 };
	uint64_t rng = 12345;
	int mid_write = 0, iters = 100;

	CHECK(asprintf(&sp, "%s/images/c", dir) > 0, "path");
	uint64_t t1 = one_generation_ns(dir);
	for (int it = 0; it < iters; it++) {
		pid_t pid = fork();

		if (pid == 0)
			crash_child(dir, 0);
		usleep((useconds_t)((t1 / 4 + pg_rand(&rng) % (3 * t1)) / 1000));
		kill(pid, SIGKILL);
		int status;
		waitpid(pid, &status, 0);
		CHECK(WIFSIGNALED(status), "child ended by itself: %d", status);
		mid_write += tl_count_files(sp, ".tmp-") > 0;
		check_after_crash(dir, &m, &rng);
	}
	printf("crash: %d kills spread over 0.25-3.25 x %.1f ms (one generation), %d in the middle "
	       "of a generation, %zu generations committed\n", iters, ns_to_ms(t1), mid_write, m.n);
	CHECK(mid_write > 0 && m.n > 2, "kills never hit a write (%d) or nothing committed (%zu)",
	      mid_write, m.n);
	tl_model_free(&m);
	tl_rmrf(dir);
	free(sp);
	free(dir);
}

/* ---- ENOSPC ---- */

static uint64_t free_bytes(const char *dir)
{
	struct statvfs sv;

	return statvfs(dir, &sv) == 0 ? (uint64_t)sv.f_bavail * sv.f_bsize : 0;
}

static int fill(const char *path, uint64_t bytes)
{
	static uint8_t buf[65536];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0)
		return -errno;
	memset(buf, 0xa5, sizeof(buf));
	while (bytes) {
		ssize_t w = write(fd, buf, MIN(bytes, sizeof(buf)));

		if (w <= 0)
			break;
		bytes -= (uint64_t)w;
	}
	close(fd);
	return 0;
}

/* After any outcome of a write: nothing half done is left or listed. */
static void check_clean(struct store *st, const char *sp, size_t want_gens, struct tl_model *m)
{
	CHECK(tl_count_files(sp, ".tmp-") == 0, "temp left");
	CHECK((size_t)tl_count_files(sp, "gen-") == want_gens, "%d generations, want %zu",
	      tl_count_files(sp, "gen-"), want_gens);
	CHECK(tl_check_gen(st, "e", m, 0, scratch) == 0, "gen 1 damaged");
}

/* Free space from just below to just above what a generation needs. */
static void sweep_commit_points(struct store *st, const char *dir, const char *sp,
				struct tl_model *m)
{
	char filler[600];
	struct tl_plan p;
	uint64_t g, need, base = free_bytes(dir);
	int ok = 0, nospc = 0, in_commit = 0;

	/* fragmented enough that the index needs pages of its own */
	plan_for(2, 160, 4, &p);
	CHECK(tl_write_gen(st, "e", &p, 1, NULL, &g) == 0, "trial write");
	need = base - free_bytes(dir);
	store_rm_generation(st, "e", 2, NULL);
	snprintf(filler, sizeof(filler), "%s/filler", dir);
	for (uint64_t room = need > 8 * TL_PG ? need - 8 * TL_PG : 0; room <= need + 4 * TL_PG;
	     room += TL_PG) {
		if (free_bytes(dir) > room)
			fill(filler, free_bytes(dir) - room);
		struct pass_region regs[32];
		struct gen_summary sum;
		struct sink *s = NULL;
		int r = tl_write_partial(st, "e", &p, 1, SIZE_MAX, &s);

		tl_pass_regions(&p, regs);
		if (r == 0) {
			r = s->ops->commit(s, regs, p.n_regions, &sum);
			in_commit += r == -ENOSPC;
		}
		if (s)
			(r ? s->ops->abort : s->ops->close)(s);
		CHECK(r == 0 || r == -ENOSPC, "room %llu: %d", (unsigned long long)room, r);
		ok += r == 0;
		nospc += r == -ENOSPC;
		if (r == 0) {
			CHECK(tl_model_add(m, 2, &p) == 0 && tl_check_gen(st, "e", m, 1, scratch) == 0,
			      "gen 2 written at room %llu", (unsigned long long)room);
			tl_model_drop_last(m);
			store_rm_generation(st, "e", 2, NULL);
		}
		check_clean(st, sp, 1, m);
		unlink(filler);
	}
	printf("enospc: %d generations failed cleanly (%d of them in commit), %d fit; "
	       "%llu bytes needed\n", nospc, in_commit, ok, (unsigned long long)need);
	CHECK(ok && in_commit && nospc > in_commit, "the sweep missed the edges");
	tl_plan_free(&p);
}

static void test_enospc(void)
{
	char *dir = tl_tmpdir("enospc"), *sp;
	struct tl_model m = { 0 };
	struct tl_plan p;
	struct store *st;
	uint64_t g;

	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", dir, "tmpfs", 0, "size=2m") < 0) {
		rmdir(dir);
		SKIP("cannot mount a small tmpfs: %s", strerror(errno));
	}
	CHECK(asprintf(&sp, "%s/images/e", dir) > 0, "path");
	CHECK(store_open(dir, &st) == 0, "open");
	plan_for(1, 64, 1, &p);
	CHECK(tl_write_gen(st, "e", &p, 0, &m, &g) == 0, "gen 1");
	tl_plan_free(&p);
	uint64_t before = free_bytes(dir);
	/* 16 MiB of pages, much of it random: the disk fills mid-generation */
	plan_for(2, 2048, 2, &p);
	int r = tl_write_gen(st, "e", &p, 1, NULL, &g);
	CHECK(r == -ENOSPC, "full disk gave %d", r);
	tl_plan_free(&p);
	check_clean(st, sp, 1, &m);
	CHECK(free_bytes(dir) >= before, "space not given back: %llu < %llu",
	      (unsigned long long)free_bytes(dir), (unsigned long long)before);
	sweep_commit_points(st, dir, sp, &m);
	tl_model_free(&m);
	store_close(st);
	umount(dir);
	rmdir(dir);
	free(sp);
	free(dir);
}

int main(int argc, char **argv)
{
	scratch = tl_tmpdir("export");
	rmdir(scratch);
	if (argc < 2 || !strcmp(argv[1], "crash"))
		test_crash();
	if (argc < 2 || !strcmp(argv[1], "enospc"))
		test_enospc();
	tl_rmrf(scratch);
	free(scratch);
	if (test_failures)
		fprintf(stderr, "%d check(s) failed\n", test_failures);
	return test_failures ? 1 : 0;
}
