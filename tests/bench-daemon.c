// SPDX-License-Identifier: GPL-2.0-only
#include "bench-daemon.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/util.h"

static json_object *ctl_json(const struct wpmigd *d, const char *const *args)
{
	const char *argv[16] = { "--json" };
	char *out = NULL, *err = NULL;
	json_object *o = NULL;
	size_t n = 1;

	for (; *args && n < 15; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	int rc = ctl_run(d->sock, &out, &err, argv);
	if (rc == 0)
		o = json_tokener_parse(out);
	if (!o)
		fprintf(stderr, "wpmig-ctl %s %s: exit %d: %s", argv[1], argv[2] ? argv[2] : "", rc,
			err && err[0] ? err : "no answer\n");
	free(out);
	free(err);
	return o;
}

static double get_d(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_double(v) : 0;
}

static uint64_t get_u(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_uint64(v) : 0;
}

/*
 * The result's per-pass table must add up to its totals: one row per pass,
 * data and zero pages summing to the pages copied over all passes
 * (copied_pages; pages counts each page the generation holds once).
 * 0, or -EBADMSG.
 */
static int check_pass_rows(json_object *o, const struct bench_ck *c)
{
	json_object *rows;
	uint64_t sum = 0, copied = get_u(o, "copied_pages");

	if (!json_object_object_get_ex(o, "pass_rows", &rows))
		return c->passes ? -EBADMSG : 0;
	size_t n = json_object_array_length(rows);
	for (size_t i = 0; i < n; i++) {
		json_object *r = json_object_array_get_idx(rows, i);
		sum += get_u(r, "data_pages") + get_u(r, "zero_pages");
	}
	if (n == c->passes && sum == copied)
		return 0;
	fprintf(stderr, "pass table does not add up: %zu rows, %" PRIu64 " pages; result: %"
		PRIu64 " passes, %" PRIu64 " pages copied\n", n, sum, c->passes, copied);
	return -EBADMSG;
}

int bench_checkpoint(const struct wpmigd *d, pid_t pid, const char *set, const char *peer,
		     struct bench_ck *c)
{
	char p[16];
	json_object *o;

	snprintf(p, sizeof(p), "%d", (int)pid);
	o = peer ? ctl_json(d, (const char *const[]){ "checkpoint", p, "--set", set, "--peer",
						      peer, NULL })
		 : ctl_json(d, (const char *const[]){ "checkpoint", p, "--set", set, NULL });
	if (!o)
		return -1;
	*c = (struct bench_ck){
		.generation = get_u(o, "generation"), .parent = get_u(o, "parent"),
		.pages = get_u(o, "pages"), .data_pages = get_u(o, "data_pages"),
		.zero_pages = get_u(o, "zero_pages"), .bytes = get_u(o, "bytes"),
		.final_pages = get_u(o, "final_pages"), .passes = get_u(o, "passes"),
		.pause_ms = get_d(o, "pause_ms"), .duration_ms = get_d(o, "duration_ms"),
		.final_scan_ms = get_d(o, "final_scan_ms"), .final_copy_ms = get_d(o, "final_copy_ms"),
	};
	int r = check_pass_rows(o, c);
	json_object_put(o);
	return r < 0 ? -1 : 0;
}

int bench_restore(const struct wpmigd *d, pid_t pid, const char *set, uint64_t gen,
		  struct bench_rs *r)
{
	char p[16], img[256];
	json_object *o;

	snprintf(p, sizeof(p), "%d", (int)pid);
	snprintf(img, sizeof(img), "%s/%" PRIu64, set, gen);
	o = ctl_json(d, (const char *const[]){ "restore", p, img, NULL });
	if (!o)
		return -1;
	*r = (struct bench_rs){ .pages = get_u(o, "pages"), .pause_ms = get_d(o, "pause_ms"),
				.duration_ms = get_d(o, "duration_ms") };
	json_object_put(o);
	return 0;
}

int bench_verify(const struct wpmigd *d, const char *set, uint64_t gen)
{
	char img[256];

	if (gen)
		snprintf(img, sizeof(img), "%s/%" PRIu64, set, gen);
	else
		snprintf(img, sizeof(img), "%s", set);
	return CTL(d, NULL, NULL, "images", "verify", img) == 0 ? 0 : -EBADMSG;
}

int bench_rm(const struct wpmigd *d, const char *set)
{
	return CTL(d, NULL, NULL, "images", "rm", set) == 0 ? 0 : -EIO;
}

double proc_cpu_s(pid_t pid)
{
	char path[64], *text = NULL, *p;
	unsigned long long ut = 0, st = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_full_file(path, &text, NULL) == 0 && (p = strrchr(text, ')')))
		sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st);
	free(text);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

long proc_hwm_kib(pid_t pid)
{
	char path[64], *text = NULL, *p;
	long kib = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (read_full_file(path, &text, NULL) == 0 && (p = strstr(text, "VmHWM:")))
		kib = strtol(p + 6, NULL, 10);
	free(text);
	return kib;
}

double load1(void)
{
	char *text = NULL;
	double l = -1;

	if (read_full_file("/proc/loadavg", &text, NULL) == 0)
		l = strtod(text, NULL);
	free(text);
	return l;
}
