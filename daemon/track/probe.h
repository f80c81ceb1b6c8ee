/* SPDX-License-Identifier: GPL-2.0-only */
/* Probe the running kernel for every feature wpmig needs. */
#pragma once

#include <stdbool.h>

struct probe_result {
	const char *name;
	bool ok;
	char detail[160];
};

#define PROBE_MAX 12

/* Fills res (PROBE_MAX entries at most); returns the number filled. */
int probe_run(struct probe_result *res);
bool probe_all_ok(const struct probe_result *res, int n);
