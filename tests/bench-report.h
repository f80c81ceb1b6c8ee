/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Records of the benchmarks for the performance report
 * (tests/perf-report.py): with WPMIG_BENCH_REPORT=FILE in the environment
 * each call appends one JSON line to FILE; without it they do nothing, and
 * a benchmark prints its figures as before.  Figures go in as every run's
 * value; the report takes medians and min–max itself.
 */
#pragma once

#include <stdbool.h>

/* A figure beside its reference, measured in the same run. */
struct brep_row {
	const char *id;       /* unique in a report: "ckpt.full.1024.mixed" */
	const char *section;  /* where the report lists it */
	const char *what;     /* the figure, as a reader says it */
	const char *unit;
	const double *v;      /* every run */
	unsigned n;
	/* The reference: runs of its own, or another row's figure by id. */
	const char *ref, *ref_unit;
	const double *ref_v;
	unsigned ref_n;
	const char *ref_id;
	/* "<= 2" judges the median; "ratio >= 0.8" the median over the
	 * reference's median; NULL: no target. */
	const char *target;
	const char *note;
};

void brep_row(const struct brep_row *r);
/* A point of a plot: x, and y of every run at that x. */
void brep_point(const char *plot, const char *series, double x, const double *y, unsigned n);
/* A fact about the machine or the run ("zero_page", "fault_us"...). */
void brep_fact(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A figure that could not be measured here, and why. */
void brep_skip(const char *id, const char *section, const char *what, const char *why);
/* Is a report being written? */
bool brep_on(void);
