// SPDX-License-Identifier: GPL-2.0-only
/*
 * The store's bookkeeping (argv[1] picks one):
 *   abort  abort and a failed commit leave no file, no temp and no new set
 *   admin  set names, listing fields, begin rules (-ESTALE, -ENOENT,
 *          -EBUSY), rm of sets and generations, temp cleanup at open,
 *          progress callbacks, sparse export
 *   rm     rm of sets holding directories and files the store did not put there
 *   special  FIFOs, symbolic links and directories where the store expects
 *          its files: refused at once, never waited on (alarm() catches a
 *          call that blocks)
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "store-testlib.h"
#include "basic/util.h"

#define R0 0x55550000000ULL

static char *scratch;

static void small_plan(struct tl_plan *p, bool full, uint64_t pages, uint64_t seed)
{
	*p = (struct tl_plan){ .full = full, .n_regions = 2, .chunk_pages = 8, .threads = 2 };
	p->regions[0] = (struct range){ R0, R0 + pages * TL_PG };
	p->regions[1] = (struct range){ R0 + (pages + 4) * TL_PG, R0 + (2 * pages + 4) * TL_PG };
	p->n_passes = 2;
	for (size_t i = 0; i < 2; i++) {
		p->passes[i].seq = i + 1;
		for (size_t r = 0; r < 2; r++) {
			uint64_t a = p->regions[r].start, step = (seed + i + r) % 3 + 1;

			for (uint64_t pg = 0; pg < pages; pg += step + 1)
				range_set_add(i ? &p->passes[i].zero : &p->passes[i].data,
					      a + pg * TL_PG, a + (pg + step) * TL_PG);
		}
	}
}

static char *set_path(const char *dir, const char *set)
{
	char *p;

	return asprintf(&p, "%s/images/%s", dir, set) < 0 ? NULL : p;
}

static bool has_set(struct store *st, const char *set)
{
	char **names;
	size_t n;
	bool found = false;

	if (store_list_sets(st, &names, &n) < 0)
		return false;
	for (size_t i = 0; i < n; i++)
		found |= !strcmp(names[i], set);
	store_names_free(names, n);
	return found;
}

static void test_abort(void)
{
	char *dir = tl_tmpdir("abort"), *sp = set_path(dir, "a");
	struct tl_model m = { 0 };
	struct tl_plan p;
	struct sink *s;
	struct store *st;
	uint64_t g;

	CHECK(store_open(dir, &st) == 0, "open");
	/* A new set whose first generation is aborted does not exist after. */
	small_plan(&p, true, 40, 1);
	CHECK(tl_write_partial(st, "a", &p, 0, 3, &s) == 0, "partial");
	CHECK(tl_count_files(sp, ".tmp-") == 1, "temp file while writing");
	s->ops->abort(s);
	CHECK(!has_set(st, "a") && access(sp, F_OK) < 0, "aborted new set still there");
	/* With a generation in place, an aborted second one leaves it alone. */
	CHECK(tl_write_gen(st, "a", &p, 0, &m, &g) == 0 && g == 1, "gen 1");
	tl_plan_free(&p);
	small_plan(&p, false, 40, 2);
	CHECK(tl_write_partial(st, "a", &p, 1, 5, &s) == 0, "partial 2");
	s->ops->abort(s);
	CHECK(tl_count_files(sp, ".tmp-") == 0 && tl_count_files(sp, "gen-") == 1, "files after abort");
	CHECK(tl_check_gen(st, "a", &m, 0, scratch) == 0, "gen 1 after abort");
	/* A commit that fails (regions out of order) drops the generation. */
	struct pass_region bad[2] = { { .start = R0 + 8 * TL_PG, .end = R0 + 9 * TL_PG, .backing = -1 },
				      { .start = R0, .end = R0 + TL_PG, .backing = -1 } };
	struct gen_summary sum;
	CHECK(tl_write_partial(st, "a", &p, 1, SIZE_MAX, &s) == 0, "full write");
	CHECK(s->ops->commit(s, bad, 2, &sum) == -EINVAL, "unsorted regions accepted");
	CHECK(tl_count_files(sp, ".tmp-") == 0, "temp left by failed commit");
	s->ops->abort(s);
	/* The number is reused: the next generation is 2 again. */
	CHECK(tl_write_gen(st, "a", &p, 1, &m, &g) == 0 && g == 2, "gen 2 got %llu",
	      (unsigned long long)g);
	CHECK(tl_check_gen(st, "a", &m, 1, scratch) == 0, "gen 2 content");
	tl_plan_free(&p);
	tl_model_free(&m);
	store_close(st);
	tl_rmrf(dir);
	free(sp);
	free(dir);
}

static void test_names(struct store *st)
{
	static const char *const bad[] = { "", ".", "..", "../x", "a/b", "/abs", ".hidden",
					   "sp ace", "nl\n", "x\\y", "*" };
	char longname[STORE_SET_NAME_MAX + 2];
	struct sink *s;
	uint64_t g;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		CHECK(!store_set_name_valid(bad[i]), "'%s' valid", bad[i]);
		CHECK(store_begin(st, bad[i], 1, true, 0, &s, &g) == -EINVAL, "begin '%s'", bad[i]);
	}
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	CHECK(!store_set_name_valid(longname), "long name valid");
	longname[STORE_SET_NAME_MAX] = 0;
	CHECK(store_set_name_valid(longname), "max length invalid");
	CHECK(store_set_name_valid("pid-1234") && store_set_name_valid("vm:web_01@host+x"), "good");
	CHECK(store_image_open(st, "../../etc", 1, &(struct store_image *){ NULL }) == -EINVAL,
	      "image open with a path");
}

static void check_listing(struct store *st, const char *dir, int64_t t0)
{
	struct store_gen_info *v;
	size_t n;
	char path[512];
	struct stat sb;

	CHECK(store_list_generations(st, "x", &v, &n) == 0 && n == 3, "list");
	for (size_t i = 0; i < n && n == 3; i++) {
		snprintf(path, sizeof(path), "%s/images/x/gen-%08zu.img", dir, i + 1);
		stat(path, &sb);
		CHECK(v[i].generation == i + 1 && v[i].parent == i && v[i].error == 0, "gen %zu", i);
		CHECK(v[i].full == (i != 1) && v[i].pid == 4242 && v[i].n_regions == 2, "gen %zu", i);
		CHECK(v[i].region_bytes == 2 * 30 * TL_PG, "region bytes %llu",
		      (unsigned long long)v[i].region_bytes);
		CHECK(v[i].disk_bytes == (uint64_t)sb.st_size, "disk bytes");
		CHECK(v[i].raw_bytes == v[i].data_pages * TL_PG && v[i].data_pages, "raw bytes");
		CHECK(v[i].live_data_pages + v[i].live_zero_pages <= 60, "live pages");
		CHECK(v[i].created_ns >= t0 && v[i].created_ns <= t0 + 600 * 1000000000LL, "time");
	}
	free(v);
}

static void check_rm(struct store *st, const char *dir, struct tl_model *m)
{
	struct store_image *img;

	struct store_rm_info info;

	CHECK(store_rm_generation(st, "x", 2, &info) == -ENOTEMPTY &&
	      strstr(info.blocker, "generation 3 is an increment over it"), "rm of a middle "
	      "generation: %s", info.blocker);
	CHECK(store_rm_generation(st, "x", 7, NULL) == -ENOENT, "rm of a missing generation");
	CHECK(store_rm_generation(st, "x", 3, NULL) == 0, "rm newest");
	tl_model_drop_last(m);
	CHECK(store_image_open(st, "x", 0, &img) == 0 && store_image_info(img)->generation == 2,
	      "newest after rm");
	store_image_close(img);
	CHECK(tl_check_gen(st, "x", m, 1, scratch) == 0, "gen 2 after rm of 3");
	CHECK(store_rm_set(st, "x", NULL) == 0 && !has_set(st, "x"), "rm set");
	CHECK(store_image_open(st, "x", 0, &img) == -ENOENT, "open removed set");
	CHECK(store_rm_set(st, "x", NULL) == -ENOENT, "rm removed set");
}

static void check_begin_rules(struct store *st, const char *dir)
{
	char *sp = set_path(dir, "x"), tmp[600];
	struct sink *s, *s2;
	struct store *st2;
	uint64_t g;
	int fd;

	CHECK(store_begin(st, "y", 1, false, 0, &s, &g) == -ENOENT, "increment of nothing");
	CHECK(!has_set(st, "y"), "refused begin left a set");
	CHECK(store_begin(st, "x", 1, false, 2, &s, &g) == -ESTALE, "stale parent");
	CHECK(store_begin(st, "x", 1, false, 3, &s, &g) == 0 && g == 4, "begin 4");
	CHECK(store_begin(st, "x", 1, true, 0, &s2, &g) == -EBUSY, "second writer");
	CHECK(store_rm_set(st, "x", NULL) == -EBUSY && store_rm_generation(st, "x", 3, NULL) == -EBUSY, "rm busy");
	/* Opening the store while a writer runs must not take its temp file. */
	CHECK(store_open(dir, &st2) == 0 && tl_count_files(sp, ".tmp-") == 1, "live temp kept");
	store_close(st2);
	s->ops->abort(s);
	/* Debris of a dead writer goes at the next open. */
	snprintf(tmp, sizeof(tmp), "%s/.tmp-gen-00000009.img", sp);
	fd = open(tmp, O_CREAT | O_WRONLY, 0600);
	close(fd);
	CHECK(store_open(dir, &st2) == 0 && tl_count_files(sp, ".tmp-") == 0, "debris kept");
	store_close(st2);
	free(sp);
}

struct prog {
	uint64_t calls, done, total;
};

static void on_progress(void *ud, uint64_t done, uint64_t total)
{
	struct prog *p = ud;

	CHECK(done <= total && done >= p->done, "progress %llu/%llu", (unsigned long long)done,
	      (unsigned long long)total);
	p->calls++;
	p->done = done;
	p->total = total;
}

/* Export keeps zero ranges as holes, and progress reaches the total. */
static void check_export_sparse(struct store *st)
{
	struct store_image *img;
	struct prog pr = { 0 };
	struct store_progress sp = { on_progress, &pr };
	char path[600];
	struct stat sb;

	CHECK(store_image_open(st, "x", 3, &img) == 0, "open");
	CHECK(store_image_export(img, scratch, &sp, NULL) == 0, "export");
	CHECK(pr.calls && pr.done == pr.total && pr.total == 60, "export progress %llu/%llu",
	      (unsigned long long)pr.done, (unsigned long long)pr.total);
	snprintf(path, sizeof(path), "%s/%08llx-%08llx.bin", scratch, R0, R0 + 30 * TL_PG);
	CHECK(stat(path, &sb) == 0 && sb.st_size == 30 * (off_t)TL_PG, "size");
	CHECK((uint64_t)sb.st_blocks * 512 < 30 * TL_PG, "not sparse: %llu blocks",
	      (unsigned long long)sb.st_blocks);
	pr = (struct prog){ 0 };
	CHECK(store_image_verify(img, NULL, NULL, &sp, NULL) == 0, "verify");
	CHECK(pr.calls && pr.done == pr.total && pr.total, "verify progress");
	store_image_close(img);
	tl_rmrf(scratch);
}

/* Names are the addresses as maps prints them: 00200000-00202000 at the low end. */
static void check_export_names(struct store *st)
{
	struct tl_plan p = { .full = true, .n_regions = 2, .chunk_pages = 4, .threads = 1 };
	struct store_image *img;
	char path[600];
	struct stat sb;
	uint64_t g;

	p.regions[0] = (struct range){ 0x200000, 0x202000 };
	p.regions[1] = (struct range){ 0x7ffd12340000, 0x7ffd12361000 };
	CHECK(tl_write_gen(st, "low", &p, 0, NULL, &g) == 0, "write");
	CHECK(store_image_open(st, "low", g, &img) == 0 && store_image_export(img, scratch, NULL, NULL) == 0,
	      "export");
	snprintf(path, sizeof(path), "%s/00200000-00202000.bin", scratch);
	CHECK(stat(path, &sb) == 0 && sb.st_size == 0x2000, "%s", path);
	snprintf(path, sizeof(path), "%s/7ffd12340000-7ffd12361000.bin", scratch);
	CHECK(stat(path, &sb) == 0 && sb.st_size == 0x21000, "%s", path);
	CHECK(tl_count_files(scratch, "") == 2, "files");
	store_image_close(img);
	tl_rmrf(scratch);
	store_rm_set(st, "low", NULL);
}

static void test_admin(void)
{
	char *dir = tl_tmpdir("admin");
	struct tl_model m = { 0 };
	struct tl_plan p;
	struct store *st;
	struct timespec ts;
	uint64_t g;

	clock_gettime(CLOCK_REALTIME, &ts);
	CHECK(store_open(dir, &st) == 0, "open");
	test_names(st);
	for (int i = 0; i < 3; i++) {
		small_plan(&p, i != 1, 30, (uint64_t)i);
		CHECK(tl_write_gen(st, "x", &p, (uint64_t)i, &m, &g) == 0 && g == (uint64_t)i + 1, "gen");
		tl_plan_free(&p);
	}
	check_listing(st, dir, (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec);
	check_export_sparse(st);
	check_export_names(st);
	check_begin_rules(st, dir);
	check_rm(st, dir, &m);
	tl_model_free(&m);
	store_close(st);
	tl_rmrf(dir);
	free(dir);
}

/* ---- rm of sets holding what the store did not put there ---- */

static void one_gen(struct store *st, const char *set)
{
	struct tl_plan p;
	uint64_t g;

	small_plan(&p, true, 10, 1);
	CHECK(tl_write_gen(st, set, &p, 0, NULL, &g) == 0 && g == 1, "write %s", set);
	tl_plan_free(&p);
}

static void test_rm(void)
{
	char *dir = tl_tmpdir("rm"), path[600];
	struct store_gen_info *v = NULL;
	struct store_rm_info info;
	struct store *st;
	struct stat sb;
	size_t n = 0;

	CHECK(store_open(dir, &st) == 0, "open");
	/* an empty directory named like generation 2: listed damaged, removed */
	one_gen(st, "g");
	snprintf(path, sizeof(path), "%s/images/g/gen-00000002.img", dir);
	CHECK(mkdir(path, 0700) == 0, "mkdir");
	CHECK(store_list_generations(st, "g", &v, &n) == 0 && n == 2 && v[1].error == -EBADMSG &&
	      v[1].error_what && !strcmp(v[1].error_what, "not a regular file"), "listing");
	free(v);
	snprintf(path, sizeof(path), "%s/images/g/gen-00000001.img", dir);
	CHECK(stat(path, &sb) == 0, "stat");
	CHECK(store_rm_set(st, "g", &info) == 0 && !has_set(st, "g"), "rm g");
	CHECK(info.bytes_freed == (uint64_t)sb.st_size, "freed %llu, want %lld",
	      (unsigned long long)info.bytes_freed, (long long)sb.st_size);
	/* one that is not empty, or a file that is not the store's: refused,
	 * named, nothing removed */
	one_gen(st, "h");
	snprintf(path, sizeof(path), "%s/images/h/gen-00000002.img/x", dir);
	CHECK(mkdir(dirname(strdupa(path)), 0700) == 0 && mkdir(path, 0700) == 0, "mkdir");
	CHECK(store_rm_set(st, "h", &info) == -ENOTEMPTY &&
	      !strcmp(info.blocker, "gen-00000002.img (a directory that is not empty)"),
	      "rm h: %s", info.blocker);
	CHECK(store_rm_generation(st, "h", 2, &info) == -ENOTEMPTY, "rm h/2: %s", info.blocker);
	CHECK(tl_count_files(set_path(dir, "h"), "gen-") == 2, "rm h removed something");
	one_gen(st, "k");
	snprintf(path, sizeof(path), "%s/images/k/notes.txt", dir);
	CHECK(close(open(path, O_CREAT | O_WRONLY, 0600)) == 0, "create");
	CHECK(store_rm_set(st, "k", &info) == -ENOTEMPTY &&
	      !strcmp(info.blocker, "notes.txt (not a file of the store)"), "rm k: %s",
	      info.blocker);
	CHECK(has_set(st, "k") && tl_count_files(set_path(dir, "k"), "gen-") == 1, "rm k removed");
	/* the newest generation alone */
	snprintf(path, sizeof(path), "%s/images/k/gen-00000001.img", dir);
	CHECK(stat(path, &sb) == 0, "stat");
	CHECK(store_rm_generation(st, "k", 1, &info) == 0 &&
	      info.bytes_freed == (uint64_t)sb.st_size && access(path, F_OK) < 0, "rm k/1");
	store_close(st);
	tl_rmrf(dir);
	free(dir);
}

/* ---- special files: every call must return, and refuse ---- */

static const char *hung_in;

static void on_alarm(int sig)
{
	static const char msg[] = "FAIL: a store call blocked: ";

	(void)!write(2, msg, sizeof(msg) - 1);
	(void)!write(2, hung_in, strlen(hung_in));
	(void)!write(2, "\n", 1);
	_exit(1);
}

/* Run one store call with a 5 s alarm: a call that blocks fails the test. */
#define BOUNDED(what, call)                                                  \
	({                                                                   \
		hung_in = (what);                                            \
		alarm(5);                                                    \
		int _r = (call);                                             \
		alarm(0);                                                    \
		_r;                                                          \
	})

static void test_special(void)
{
	char *dir = tl_tmpdir("special"), *sp = set_path(dir, "f"), path[600];
	struct store_image *img = NULL;
	struct store_gen_info *v = NULL;
	struct tl_plan p;
	struct store *st;
	uint64_t g;
	size_t n = 0;

	signal(SIGALRM, on_alarm);
	CHECK(store_open(dir, &st) == 0, "open");
	for (int i = 0; i < 3; i++) {
		small_plan(&p, i == 0, 20, (uint64_t)i);
		CHECK(tl_write_gen(st, "f", &p, (uint64_t)i, NULL, &g) == 0 && g == (uint64_t)i + 1,
		      "gen %d", i + 1);
		tl_plan_free(&p);
	}
	/* generation 3 a FIFO, generation 2 a symbolic link to generation 1 */
	snprintf(path, sizeof(path), "%s/gen-00000003.img", sp);
	CHECK(unlink(path) == 0 && mkfifo(path, 0600) == 0, "mkfifo");
	snprintf(path, sizeof(path), "%s/gen-00000002.img", sp);
	CHECK(unlink(path) == 0 && symlink("gen-00000001.img", path) == 0, "symlink");
	CHECK(BOUNDED("list", store_list_generations(st, "f", &v, &n)) == 0 && n == 3, "list");
	CHECK(n == 3 && v[0].error == 0 && v[1].error == -EBADMSG && v[2].error == -EBADMSG,
	      "listing errors %d %d %d", n == 3 ? v[0].error : 1, n == 3 ? v[1].error : 1,
	      n == 3 ? v[2].error : 1);
	free(v);
	CHECK(BOUNDED("open newest", store_image_open(st, "f", 0, &img)) == -EBADMSG,
	      "newest (a FIFO) opened");
	CHECK(BOUNDED("open 2", store_image_open(st, "f", 2, &img)) == -EBADMSG, "link opened");
	CHECK(BOUNDED("open 1", store_image_open(st, "f", 1, &img)) == 0, "gen 1 not opened");
	/* export over a FIFO and a link named like the region's file */
	CHECK(mkdir(scratch, 0700) == 0, "mkdir");
	snprintf(path, sizeof(path), "%s/%08llx-%08llx.bin", scratch, R0, R0 + 20 * TL_PG);
	CHECK(mkfifo(path, 0600) == 0, "mkfifo");
	CHECK(BOUNDED("export onto a FIFO", store_image_export(img, scratch, NULL, NULL)) == -EEXIST,
	      "export onto a FIFO");
	CHECK(unlink(path) == 0 && symlink("/etc/passwd", path) == 0, "symlink");
	CHECK(BOUNDED("export onto a link", store_image_export(img, scratch, NULL, NULL)) == -EEXIST,
	      "export onto a link");
	store_image_close(img);
	tl_rmrf(scratch);
	/* the set's lock file a FIFO: replaced by a lock file */
	snprintf(path, sizeof(path), "%s/.lock", sp);
	CHECK(unlink(path) == 0 && mkfifo(path, 0600) == 0, "mkfifo lock");
	struct sink *s;
	CHECK(BOUNDED("begin", store_begin(st, "f", 1, true, 0, &s, &g)) == 0 && g == 4,
	      "begin with a FIFO lock");
	s->ops->abort(s);
	/* rm takes a link and a FIFO named like generations with the rest */
	CHECK(BOUNDED("rm", store_rm_set(st, "f", NULL)) == 0 && !has_set(st, "f"), "rm f");
	store_close(st);
	tl_rmrf(dir);
	free(sp);
	free(dir);
}

int main(int argc, char **argv)
{
	scratch = tl_tmpdir("export");
	rmdir(scratch);
	if (argc < 2 || !strcmp(argv[1], "abort"))
		test_abort();
	if (argc < 2 || !strcmp(argv[1], "admin"))
		test_admin();
	if (argc < 2 || !strcmp(argv[1], "special"))
		test_special();
	if (argc < 2 || !strcmp(argv[1], "rm"))
		test_rm();
	tl_rmrf(scratch);
	free(scratch);
	if (test_failures)
		fprintf(stderr, "%d check(s) failed\n", test_failures);
	return test_failures ? 1 : 0;
}
