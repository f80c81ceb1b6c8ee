/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers of the peer tests and benchmark: pairs of private daemons sharing
 * a key (optionally inside a network namespace), checkpoints streamed
 * between them, the receiver's images verified and exported and compared
 * with the source process's memory, and the fault proxy.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "wpmigd-harness.h"

struct pd {
	struct wpmigd d;
	char key[192];      /* peer_key_file */
	char listen[160];   /* "" or the peer address it listens on */
	char netns[64];     /* "" or the namespace it runs in */
	char cpus[16];      /* "" or the CPUs it may run on (taskset -c) */
	char extra[512];    /* more config lines */
};

/* A key file (mode 0600) in a fresh directory; path in buf. */
int pk_make(char *buf, size_t len);
/* Start a daemon with key (may be NULL: none), listen (may be NULL), extra
 * config lines, inside netns (may be NULL). */
int pd_start(struct pd *p, const char *key, const char *listen, const char *extra,
	     const char *netns);
/* The same, pinned to cpus ("0", "1-3"). */
int pd_start_on(struct pd *p, const char *key, const char *listen, const char *extra,
		const char *cpus);
/* Start it again on the same state directory and config. */
int pd_restart(struct pd *p);
void pd_cleanup(struct pd *p);
/* A free TCP port on 127.0.0.1 (best effort: nothing holds it). */
int free_port(void);

struct ckres {
	int rc;
	uint64_t generation, parent, bytes, raw_bytes, data_pages, pages;
	double duration_ms;
	char err[1024];
	char pass_rows[16384]; /* the result's pass_rows, as JSON text */
};

/* wpmig-ctl --json checkpoint PID --peer PEER --set SET [--leave-stopped]
 * [more args] (peer may be NULL: the local store). */
int pd_checkpoint(struct pd *src, pid_t pid, const char *peer, const char *set,
		  bool leave_stopped, const char *more, struct ckres *res);
/* Committed generations of set on p, oldest first; how many (<0 error). */
int pd_generations(struct pd *p, const char *set, uint64_t *gens, int max);
/* images verify SET/GEN: 0 when every checksum holds. */
int pd_verify(struct pd *p, const char *set, uint64_t gen);
/* Export SET/GEN and compare each region file with /proc/PID/mem (the
 * process should be stopped): mismatching pages, or <0 on error. */
long pd_compare(struct pd *p, const char *set, uint64_t gen, pid_t pid);
/* VmRSS of the daemon in KiB, and its peak (VmHWM). */
long pd_rss(struct pd *p);
long pd_hwm(struct pd *p);

/* The fault proxy (tests/peer-proxy.c) between listen and target. */
struct proxy {
	pid_t pid;
	char log[192];
};
int proxy_start(struct proxy *x, const char *listen, const char *target, const char *mode);
void proxy_stop(struct proxy *x);
