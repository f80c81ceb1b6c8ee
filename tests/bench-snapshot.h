/* SPDX-License-Identifier: GPL-2.0-only */
/* gcore and CRIU on the workload, for bench-scale (bench-snapshot.c). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "wpmigd-harness.h"

struct snap {
	double stall_ms;  /* the longest the process was kept from running (its ticker) */
	double own_ms;    /* the tool's own account (CRIU: frozen_time), 0: none */
	double wall_ms;   /* the command, start to end */
	uint64_t bytes;   /* the core file, CRIU's pages-*.img */
	char why[256];    /* on failure */
};

/* gcore -o DIR/core PID: 0, or <0 with why; the core is removed. */
int snap_gcore(struct wl *w, const char *dir, struct snap *out);
/* 0 when a criu >= 4.0 is on PATH (why: its version), else <0 and why not. */
int snap_criu_usable(char *why, size_t len);
/* criu dump --leave-running into DIR/criu: 0, or <0 with why; removed after. */
int snap_criu(struct wl *w, const char *dir, struct snap *out);
/* criu pre-dump --track-mem (the first step of an incremental dump):
 * 0 when it worked; why says what happened either way. */
int snap_criu_incremental(struct wl *w, const char *dir, char *why, size_t len);
