/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the daemon-level benchmarks ask wpmigd through wpmig-ctl --json,
 * and what they read about a process from /proc.
 */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "wpmigd-harness.h"

/* A checkpoint's result (CheckpointResult of proto/control.proto). */
struct bench_ck {
	uint64_t generation, parent, pages, data_pages, zero_pages, bytes, final_pages, passes;
	double pause_ms, duration_ms, final_scan_ms, final_copy_ms;
};

/* checkpoint PID --set SET [--peer PEER]: 0, or -1 with the error printed (also when
 * the result's per-pass table does not add up to its totals). */
int bench_checkpoint(const struct wpmigd *d, pid_t pid, const char *set, const char *peer,
		     struct bench_ck *out);

struct bench_rs {
	uint64_t pages;
	double pause_ms, duration_ms;
};

/* restore PID SET/GEN: 0, or -1 with the error printed. */
int bench_restore(const struct wpmigd *d, pid_t pid, const char *set, uint64_t gen,
		  struct bench_rs *out);
/* images verify SET[/GEN] (gen 0: the newest, its whole chain): 0 when clean. */
int bench_verify(const struct wpmigd *d, const char *set, uint64_t gen);
/* images rm SET. */
int bench_rm(const struct wpmigd *d, const char *set);
/* utime + stime of a process, in seconds. */
double proc_cpu_s(pid_t pid);
/* VmHWM (peak RSS) of a process in KiB. */
long proc_hwm_kib(pid_t pid);
/* The 1-minute load average. */
double load1(void);
