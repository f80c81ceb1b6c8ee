// SPDX-License-Identifier: GPL-2.0-only
#include "bench-report.h"

#include <fcntl.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool brep_on(void)
{
	const char *f = getenv("WPMIG_BENCH_REPORT");

	return f && f[0];
}

/* One line, one write(2) to an O_APPEND file: benchmarks running one after
 * another (or a daemon's helper) never interleave within a record. */
static void emit(json_object *o)
{
	const char *path = getenv("WPMIG_BENCH_REPORT");

	if (path && path[0]) {
		const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		size_t len = strlen(s);
		char *line = malloc(len + 2);
		int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

		if (line && fd >= 0) {
			memcpy(line, s, len);
			line[len] = '\n';
			if (write(fd, line, len + 1) != (ssize_t)(len + 1))
				fprintf(stderr, "report %s: short write\n", path);
		} else {
			fprintf(stderr, "report %s: cannot append\n", path);
		}
		if (fd >= 0)
			close(fd);
		free(line);
	}
	json_object_put(o);
}

static void add_str(json_object *o, const char *k, const char *v)
{
	if (v)
		json_object_object_add(o, k, json_object_new_string(v));
}

static json_object *array_of(const double *v, unsigned n)
{
	json_object *a = json_object_new_array();

	for (unsigned i = 0; i < n; i++)
		json_object_array_add(a, json_object_new_double(v[i]));
	return a;
}

void brep_row(const struct brep_row *r)
{
	json_object *o;

	if (!brep_on())
		return;
	o = json_object_new_object();
	add_str(o, "kind", "row");
	add_str(o, "id", r->id);
	add_str(o, "section", r->section);
	add_str(o, "what", r->what);
	add_str(o, "unit", r->unit);
	json_object_object_add(o, "runs", array_of(r->v, r->n));
	add_str(o, "ref", r->ref);
	add_str(o, "ref_unit", r->ref_unit);
	if (r->ref_v)
		json_object_object_add(o, "ref_runs", array_of(r->ref_v, r->ref_n));
	add_str(o, "ref_id", r->ref_id);
	add_str(o, "target", r->target);
	add_str(o, "note", r->note);
	emit(o);
}

void brep_point(const char *plot, const char *series, double x, const double *y, unsigned n)
{
	json_object *o;

	if (!brep_on())
		return;
	o = json_object_new_object();
	add_str(o, "kind", "point");
	add_str(o, "plot", plot);
	add_str(o, "series", series);
	json_object_object_add(o, "x", json_object_new_double(x));
	json_object_object_add(o, "runs", array_of(y, n));
	emit(o);
}

void brep_fact(const char *key, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	json_object *o;

	if (!brep_on())
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	o = json_object_new_object();
	add_str(o, "kind", "fact");
	add_str(o, "key", key);
	add_str(o, "value", buf);
	emit(o);
}

void brep_skip(const char *id, const char *section, const char *what, const char *why)
{
	json_object *o;

	if (!brep_on())
		return;
	o = json_object_new_object();
	add_str(o, "kind", "skip");
	add_str(o, "id", id);
	add_str(o, "section", section);
	add_str(o, "what", what);
	add_str(o, "why", why);
	emit(o);
}
