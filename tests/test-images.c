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
 *   names    set names the daemon takes are the client's too; a string with
 *            a NUL, a PID beyond 32 bits, an unknown images op: each refused
 *            for what it is
 *
 *   test-images damaged|names
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control.pb-c.h"
#include "frame.h"
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

/* ---- names, PIDs and ops as the protocol carries them ---- */

/* One raw request frame (payload as given), its answer: error and message. */
static int raw_call(const char *sock, const uint8_t *payload, size_t len, int *error, char *msg,
		    size_t msg_len)
{
	struct frame_header h = { .magic = FRAME_MAGIC, .version = WPMIG_PROTO_VERSION,
				  .type = FRAME_CTL_REQUEST, .length = (uint32_t)len };
	uint8_t hdr[FRAME_HEADER_SIZE];
	int fd = raw_connect(sock), r;

	if (fd < 0)
		return -errno;
	frame_header_encode(&h, hdr);
	r = write(fd, hdr, sizeof(hdr)) == sizeof(hdr) &&
	    write(fd, payload, len) == (ssize_t)len ? 0 : -EIO;
	if (r == 0)
		r = raw_read_response(fd, 5000, error, msg, msg_len);
	close(fd);
	return r;
}

static int raw_request(const char *sock, Wpmig__Request *req, int *error, char *msg,
		       size_t msg_len)
{
	uint8_t buf[512];
	size_t len = wpmig__request__pack(req, buf);

	return raw_call(sock, buf, len, error, msg, msg_len);
}

static void test_names(void)
{
	static const char *const names[] = {
		"vm:web@host+1", /* the daemon's characters */
		"a123456789b123456789c123456789d123456789e123456789f123456789g123456789h1234",
	};
	struct wpmigd d = { 0 };
	struct store *st;
	char msg[512], *out = NULL, *err = NULL;
	int error = 0, rc;

	CHECK(wpmigd_start(&d, "", NULL) == 0, "daemon start");
	/* sets with names the daemon takes: the client shows and removes them */
	CHECK(store_open(d.state, &st) == 0, "store open");
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		struct tl_plan p = { .full = true, .n_regions = 1, .chunk_pages = 4, .threads = 1,
				     .n_passes = 1 };
		uint64_t g;
		p.regions[0] = (struct range){ R0, R0 + 4 * TL_PG };
		p.passes[0].seq = 1;
		range_set_add(&p.passes[0].data, R0, R0 + 4 * TL_PG);
		CHECK(tl_write_gen(st, names[i], &p, 0, NULL, &g) == 0, "write %s", names[i]);
		tl_plan_free(&p);
		rc = CTL(&d, &out, &err, "images", "show", names[i]);
		CHECK(rc == 0 && strstr(out, names[i]), "show %s: %d %s", names[i], rc, err);
		free(out);
		free(err);
		rc = CTL(&d, &out, &err, "images", "rm", names[i]);
		CHECK(rc == 0, "rm %s: %d %s", names[i], rc, err);
		free(out);
		free(err);
	}
	store_close(st);
	/* the client refuses what the daemon would: a leading '-' */
	rc = CTL(&d, &out, &err, "checkpoint", "1", "--set", "-x");
	CHECK(rc == 2, "--set -x: %d %s", rc, err);
	free(out);
	free(err);

	/* a string with a NUL inside: refused, not cut short to "a" */
	static const uint8_t nul_set[] = {
		0x08, 0x05,                   /* Request.id = 5 */
		0x82, 0x01, 0x07,             /* Request.images (16), 7 bytes: */
		0x08, 0x01,                   /*   op = SHOW */
		0x12, 0x03, 'a', 0x00, 'b',   /*   set = "a\0b" */
	};
	CHECK(raw_call(d.sock, nul_set, sizeof(nul_set), &error, msg, sizeof(msg)) == 0 &&
	      error == -EINVAL && strstr(msg, "the string set holds a NUL byte"),
	      "set with a NUL: %d %s", error, msg);

	/* a PID beyond 32 bits: refused whole, not cut to its low bits (1) */
	Wpmig__Request req = WPMIG__REQUEST__INIT;
	Wpmig__TrackRequest tr = WPMIG__TRACK_REQUEST__INIT;
	tr.pid = (1LL << 40) + 1;
	req.id = 6;
	req.verb_case = WPMIG__REQUEST__VERB_TRACK;
	req.track = &tr;
	CHECK(raw_request(d.sock, &req, &error, msg, sizeof(msg)) == 0 && error == -EINVAL &&
	      strstr(msg, "invalid pid 1099511627777"), "pid 2^40+1: %d %s", error, msg);

	/* an images op this daemon does not know */
	Wpmig__ImagesRequest ir = WPMIG__IMAGES_REQUEST__INIT;
	ir.op = (Wpmig__ImagesOp)9;
	ir.set = (char *)"a";
	req.verb_case = WPMIG__REQUEST__VERB_IMAGES;
	req.images = &ir;
	CHECK(raw_request(d.sock, &req, &error, msg, sizeof(msg)) == 0 && error == -EOPNOTSUPP &&
	      strstr(msg, "unknown images operation 9"), "images op 9: %d %s", error, msg);
	printf("last answer: %d %s\n", error, msg);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit status");
	wpmigd_cleanup(&d);
}

int main(int argc, char **argv)
{
	static const struct subtest tests[] = { { "damaged", test_damaged }, { "names", test_names } };

	return run_subtests(argc, argv, tests, ARRAY_SIZE(tests));
}
