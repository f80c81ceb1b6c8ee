/* SPDX-License-Identifier: GPL-2.0-only */
/* Helpers of the attach tests (tests/test-attach-*.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"

#define RUNNING_STATES "RSD"

void sleep_us(uint64_t us);

/* State letter of every thread of pid, as a string; returns how many. */
size_t task_states(pid_t pid, char *out, size_t len);
/* Wait up to ms for every thread to be in one of the states `allowed`. */
bool wait_states(pid_t pid, const char *allowed, int ms, char *states, size_t len);

/* Pages of pid with the uffd-wp bit; *empty (may be NULL) gets those not
 * present.  -1 when the process cannot be read. */
long wp_pages_ex(pid_t pid, long *empty);
long wp_pages(pid_t pid);

struct selfcheck {
	bool ok;
	unsigned long usr1, rt;
	char line[256];
};

/* The workload's own verdict on its registers, blocked calls and signals. */
bool selfcheck(struct wl *w, struct selfcheck *c);
void check_clean(struct wl *w, const char *when);
/* The workload's busy threads' loop count. */
unsigned long busy_loops(struct wl *w);
/* The workload with --selfcheck (and --busy N when busy is set). */
int start_selfcheck_target(struct wl *w, const char *busy);

/* Does why name pid as a whole number? */
bool why_names_pid(const char *why, pid_t pid);

/* Attach, a pass, a freeze with a final pass: a failure is a test failure. */
struct tracker *attach_or_fail(pid_t pid, const char *when);
void one_pass(struct tracker *t, unsigned flags, const char *when);
void frozen_pass(struct tracker *t, pid_t pid, const char *when);

/* A process tracing target (PTRACE_SEIZE only: it keeps running) until
 * *release_fd is closed; its pid. */
pid_t start_other_tracer(pid_t target, int *release_fd);

struct attach_case {
	const char *name;
	void (*fn)(void);
};

/* Runs the case named by argv[1] (or all) under a 240 s alarm. */
int attach_test_main(int argc, char **argv, const struct attach_case *cases, size_t n);
