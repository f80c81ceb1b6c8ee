// SPDX-License-Identifier: GPL-2.0-only
/*
 * `wpmig-ctl images` against a real wpmigd whose store the test writes
 * itself (tests/store-testlib.c), then damages: kernel-independent.
 *
 *   damaged  list marks a damaged generation instead of printing zeros,
 *            show counts each region's data pages and names the generation
 *            at fault, a damaged header is damage (not "another
 *            protocol"), a failed export names its region and page and
 *            leaves no file, rm takes SET/GEN and sets holding special
 *            entries
 *
 *   test-images damaged
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store-testlib.h"
#include "wpmigd-harness.h"
#include "basic/util.h"
#include "store/format.h"

#define R0 TL_RANDOM_WINDOW /* raw pages: a flipped byte is a page's damage */

static json_object *jget(json_object *o, const char *key)
{
	json_object *v = NULL;

	return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static uint64_t ju64(json_object *o, const char *key)
{
	return json_object_get_uint64(jget(o, key));
}

/* Generation n (from 1) of the first set of an `images` --json answer. */
static json_object *jgen(json_object *root, size_t n)
{
	json_object *sets = jget(root, "sets"), *gens;

	if (!sets || json_object_array_length(sets) < 1)
		return NULL;
	gens = jget(json_object_array_get_idx(sets, 0), "generations");
	return gens && json_object_array_length(gens) >= n ? json_object_array_get_idx(gens, n - 1)
							   : NULL;
}

/* Three generations of set a: regions of 16 and 8 raw pages. */
static void write_set(const char *state)
{
	struct store *st;
	uint64_t g;

	CHECK(store_open(state, &st) == 0, "store open");
	for (int i = 0; i < 3; i++) {
		struct tl_plan p = { .full = i == 0, .n_regions = 2, .chunk_pages = 4, .threads = 1,
				     .n_passes = 1 };
		p.regions[0] = (struct range){ R0, R0 + 16 * TL_PG };
		p.regions[1] = (struct range){ R0 + 32 * TL_PG, R0 + 40 * TL_PG };
		p.passes[0].seq = 1;
		/* generation 1 all data; later ones a few pages of the first region */
		range_set_add(&p.passes[0].data, R0, R0 + (i ? 3 : 16) * TL_PG);
		if (!i)
			range_set_add(&p.passes[0].data, R0 + 32 * TL_PG, R0 + 40 * TL_PG);
		CHECK(tl_write_gen(st, "a", &p, (uint64_t)i, NULL, &g) == 0 && g == (uint64_t)i + 1,
		      "write generation %d", i + 1);
		tl_plan_free(&p);
	}
	store_close(st);
}

static void flip_byte(const char *path, off_t off, uint8_t mask)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	uint8_t b = 0;

	CHECK(fd >= 0 && pread(fd, &b, 1, off) == 1, "read %s", path);
	b ^= mask;
	CHECK(pwrite(fd, &b, 1, off) == 1, "write %s", path);
	close(fd);
}

static void test_damaged(void)
{
	struct wpmigd d = { 0 };
	char gen[3][512], exp[512], *out = NULL, *err = NULL;
	json_object *root;
	int rc;

	CHECK(wpmigd_start(&d, "", NULL) == 0, "daemon start");
	write_set(d.state);
	for (int i = 0; i < 3; i++)
		snprintf(gen[i], sizeof(gen[i]), "%s/images/a/gen-%08d.img", d.state, i + 1);

	/* show: each region's data pages, adding up to the generation's */
	rc = CTL(&d, &out, &err, "--json", "images", "show", "a/1");
	root = json_tokener_parse(out ? out : "");
	json_object *g1 = jgen(root, 1), *regs = jget(g1, "regions");
	CHECK(rc == 0 && regs && json_object_array_length(regs) == 2, "show a/1: %d %s", rc, err);
	if (regs && json_object_array_length(regs) == 2)
		CHECK(ju64(json_object_array_get_idx(regs, 0), "data_pages") == 16 &&
		      ju64(json_object_array_get_idx(regs, 1), "data_pages") == 8 &&
		      ju64(g1, "data_pages") == 24, "region data pages: %s", out);
	json_object_put(root);
	free(out);
	free(err);

	/* generation 3 truncated: list marks it damaged, show names it */
	CHECK(truncate(gen[2], 100) == 0, "truncate");
	rc = CTL(&d, &out, &err, "images", "list");
	CHECK(rc == 0 && strstr(out, "3      DAMAGED: truncated: shorter than a header, an index "
				"and a footer"), "list: %d\n%s", rc, out);
	CHECK(!strstr(out, " 0 data "), "a damaged generation listed with zeros:\n%s", out);
	printf("%s", out);
	free(out);
	free(err);
	rc = CTL(&d, &out, &err, "images", "show", "a");
	CHECK(rc == 1 && strstr(err, "a: the newest generation, a/3: damaged: truncated"),
	      "show a: %d %s", rc, err);
	printf("%s", err);
	free(out);
	free(err);

	/* a damaged header (the version field) is damage, not "not supported" */
	flip_byte(gen[1], offsetof(struct disk_header, version), 0x40);
	rc = CTL(&d, &out, &err, "images", "show", "a/2");
	CHECK(rc == 1 && strstr(err, "a/2: damaged: header checksum mismatch") &&
	      !strstr(err, "not supported"), "show a/2: %d %s", rc, err);
	printf("%s", err);
	free(out);
	free(err);

	/* export of a damaged page: names region and page, writes no file */
	struct stat sb;
	CHECK(stat(gen[0], &sb) == 0, "stat");
	flip_byte(gen[0], sb.st_size / 3, 0x01);
	snprintf(exp, sizeof(exp), "%s/export", d.dir);
	rc = CTL(&d, &out, &err, "images", "export", "a/1", exp);
	CHECK(rc == 1 && strstr(err, "region 7e0000000000-7e0000010000, page 7e000000") &&
	      strstr(err, "page checksum mismatch; no file written"), "export: %d %s", rc, err);
	CHECK(tl_count_files(exp, "") == 0, "export left %d files", tl_count_files(exp, ""));
	printf("%s", err);
	free(out);
	free(err);

	/* rm of one generation, then of a set holding a directory named like one */
	rc = CTL(&d, &out, &err, "images", "rm", "a/3");
	CHECK(rc == 0 && strstr(out, "freed"), "rm a/3: %d %s%s", rc, out, err);
	CHECK(access(gen[2], F_OK) < 0, "a/3 still there");
	free(out);
	free(err);
	char dir5[600];
	snprintf(dir5, sizeof(dir5), "%s/images/a/gen-00000005.img", d.state);
	CHECK(mkdir(dir5, 0700) == 0, "mkdir");
	rc = CTL(&d, &out, &err, "images", "rm", "a");
	CHECK(rc == 0, "rm a: %d %s", rc, err);
	snprintf(dir5, sizeof(dir5), "%s/images/a", d.state);
	CHECK(access(dir5, F_OK) < 0, "set a still there");
	free(out);
	free(err);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit status");
	wpmigd_cleanup(&d);
}

int main(int argc, char **argv)
{
	static const struct subtest tests[] = { { "damaged", test_damaged } };

	return run_subtests(argc, argv, tests, ARRAY_SIZE(tests));
}
