/* SPDX-License-Identifier: GPL-2.0-only */
/* Test helpers: a tiny check macro, the workload process, a shadow image. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "basic/ranges.h"
#include "track/tracker.h"

#define EXIT_SKIP 77

extern int test_failures;

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                        \
			fputc('\n', stderr);                                 \
			test_failures++;                                     \
		}                                                            \
	} while (0)

#define SKIP(...)                                                            \
	do {                                                                 \
		fprintf(stderr, "SKIP: " __VA_ARGS__);                       \
		fputc('\n', stderr);                                         \
		exit(EXIT_SKIP);                                             \
	} while (0)

/* The workload (tests/workload.c) as a child with command pipes. */
struct wl {
	pid_t pid;
	FILE *in, *out;
};

/* Starts $WPMIG_WORKLOAD (or ./workload) with args; NULL-terminated. */
/*
 * A program the tests run: $env when set (meson sets it), else rel to the
 * directory of the running test (the build tree: "../daemon/wpmigd"), so a
 * bench run by hand finds its daemon.  The string lives until exit.
 */
const char *test_bin(const char *env, const char *rel);

int wl_start(struct wl *w, const char *const *args);
/* Sends a command; reply gets the answer line; 0 when it starts with OK. */
int wl_cmd(struct wl *w, char *reply, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Region bounds by workload name. */
int wl_region(struct wl *w, const char *name, uint64_t *start, uint64_t *end);
void wl_stop(struct wl *w);

/* Set of open fds of a process, as text, for before/after comparison. */
char *proc_fds(pid_t pid);
/* Does any VmFlags line of /proc/PID/smaps carry "uw"? (-1 on error) */
int proc_has_uffd_wp(pid_t pid);
/* AnonHugePages (THPs mapped by a PMD) of the VMA starting at start, in kB; UINT64_MAX if none. */
uint64_t proc_anon_huge_kb(pid_t pid, uint64_t start);

/* An image kept by address, built by applying passes. */
struct shadow_region {
	uint64_t start, end;
	uint8_t *buf;
};

struct shadow {
	struct shadow_region *r;
	size_t n;
};

/* Apply a pass: regions re-laid by address, zero then data (read now). */
int shadow_apply(struct shadow *s, struct tracker *t, const struct pass *p);
/* Compare every region with /proc/PID/mem; prints the first mismatches. */
int shadow_compare(const struct shadow *s, pid_t pid, uint64_t *bad_pages);
void shadow_free(struct shadow *s);

/* Is every page of the written list (page indices of [start,end)) in data or zero? */
uint64_t missing_pages(const struct pass *p, uint64_t start, const uint64_t *pages, size_t n);
