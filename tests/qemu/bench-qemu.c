// SPDX-License-Identifier: GPL-2.0-only
/*
 * QEMU migration figures: wpmig against QEMU 7.2's own migration, same
 * guest, same host, one invocation.  Pause = source STOP event to
 * destination RESUME event (QEMU's timestamps); total = migrate issued to
 * RESUME; bytes = everything through counting proxies (the peer link and
 * QEMU's stream), never QEMU's counters.  Medians of --runs.
 *
 *   bench-qemu [--quick] [--runs N] [--mib N] [--pages N] [--delay N]
 *              [--linux] [--configs a,b,...] [--timeout S] [--sweep DIR]
 *              [--all DIR]
 *
 * configs: wpmig default unlimited xbzrle multifd autoconverge postcopy
 * handcopy.  --sweep DIR: wpmig, unlimited and postcopy over guest delays
 * (dirty rates) into DIR/sweep.dat and DIR/sweep.svg (gnuplot).  --all DIR:
 * every figure of issue 11 in one invocation: every configuration on the
 * boot-sector guest and on the Linux guest (256 MiB), the boot-sector
 * guest at 1 GiB and 2 GiB (one run each, the configurations that can
 * converge), then the sweep into DIR.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../bench-report.h"
#include "../bench.h"
#include "basic/util.h"
#include "countproxy.h"
#include "peer-harness.h"
#include "qemu/backend.h"
#include "vm.h"

#define MAX_RUNS 9
#define MAX_STEPS 16

struct opts {
	int runs, timeout_s;
	uint32_t mib, pages, delay, mc_mib;
	bool quick, linux_guest;
	const char *configs, *sweep, *all;
	char initrd[256];
};

struct outcome {
	bool ok;          /* converged and the destination runs */
	double pause_ms, total_ms, bytes, dirty_rate;
	double tracked_rate; /* wpmig: the guest's write rate while tracked */
	char note[192];
	/* wpmig: the switchover's steps (its --json "switchover" rows) */
	char step[MAX_STEPS][16];
	double step_at[MAX_STEPS], step_ms[MAX_STEPS];
	int n_steps;
};

static char dir[] = "/tmp/wpmig-bench-qemu-XXXXXX";

static int set_param(struct vm *vm, const char *name, json_object *v)
{
	return qmp_executev(vm->qmp, "migrate-set-parameters", 10000, NULL, NULL, name, v, NULL);
}

static void start_pair(const struct opts *o, struct vm *s, struct vm *d, const char *uri,
		       const char *qmp2_dir)
{
	struct vm_config c = {
		.guest = o->linux_guest ? VM_LINUX : VM_BOOT, .mem = VM_MEM_MEMFD, .mem_mib = o->mib,
		.dir = dir, .name = "src", .boot_pages = o->pages, .boot_delay = o->delay,
		.mc_mib = o->mc_mib, .mc_hot = o->mc_mib * 256 / 8, .initrd = o->initrd,
		.qmp2_dir = qmp2_dir,
	};

	if (vm_start(&c, s) < 0)
		exit(1);
	c.name = "dst";
	c.incoming = uri;
	if (vm_start(&c, d) < 0)
		exit(1);
	if (o->linux_guest)
		vm_wait_serial(s, "OK 1\r\n", 0, 300000);
	else
		vm_wait_serial(s, "P 00000002", 0, 60000);
}

/* The guest's own write rate before any tracking: pages per second. */
static double guest_rate(const struct opts *o, struct vm *s)
{
	long p0 = vm_serial_progress(s);
	uint64_t t0 = now_ns();

	if (o->linux_guest)
		return 0;
	usleep(500000);
	return (double)(vm_serial_progress(s) - p0) * o->pages * 1e9 / (double)(now_ns() - t0);
}

static void check_guest(struct vm *d, struct outcome *out)
{
	char bad[128];
	size_t len;
	free(vm_serial(d, &len));
	if (vm_wait_serial(d, d->cfg.guest == VM_BOOT ? "P " : "OK ", len, 30000) < 0)
		snprintf(out->note, sizeof(out->note), "destination guest silent");
	if (vm_serial_bad(d, bad, sizeof(bad))) {
		out->ok = false;
		snprintf(out->note, sizeof(out->note), "%s", bad);
	}
}

static double realtime_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* x-ignore-shared by hand: guest RAM copied file to file while stopped. */
static int copy_ram(struct vm *s, struct vm *d)
{
	struct qemu_ram rs, rd;
	_cleanup_close_ int in = -1, out = -1;
	_cleanup_free_ char *buf = malloc(1 << 20);
	int r = qemu_ram_discover(s->qmp, 10000, &rs, NULL);

	if (r == 0)
		r = qemu_ram_discover(d->qmp, 10000, &rd, NULL);
	if (r == 0)
		r = qemu_backend_open(rs.pid, &rs.b[0], &in);
	if (r == 0)
		r = qemu_backend_open(rd.pid, &rd.b[0], &out);
	for (off_t off = 0; r == 0 && buf && (uint64_t)off < rs.b[0].size;) {
		off_t data = lseek(in, off, SEEK_DATA);
		ssize_t n;

		if (data < 0)
			break;
		n = pread(in, buf, 1 << 20, data);
		if (n <= 0 || pwrite(out, buf, (size_t)n, data) != n)
			return -EIO;
		off = data + n;
	}
	return r;
}

static void configure(const char *cfg, struct vm *s, struct vm *d)
{
	bool unlimited = strcmp(cfg, "default") != 0;

	if (unlimited)
		set_param(s, "max-bandwidth", json_object_new_int64(100ll << 30));
	if (!strcmp(cfg, "xbzrle")) {
		vm_set_caps(s, (const char *const[]){ "xbzrle", NULL }, true, NULL);
		set_param(s, "xbzrle-cache-size", json_object_new_int64(256ll << 20));
	} else if (!strcmp(cfg, "multifd")) {
		for (struct vm *v = s; v; v = v == s ? d : NULL) {
			vm_set_caps(v, (const char *const[]){ "multifd", NULL }, true, NULL);
			set_param(v, "multifd-channels", json_object_new_int(2));
			set_param(v, "multifd-compression", json_object_new_string("zstd"));
			set_param(v, "multifd-zstd-level", json_object_new_int(1));
		}
	} else if (!strcmp(cfg, "autoconverge")) {
		vm_set_caps(s, (const char *const[]){ "auto-converge", NULL }, true, NULL);
	} else if (!strcmp(cfg, "postcopy")) {
		vm_set_caps(s, (const char *const[]){ "postcopy-ram", NULL }, true, NULL);
		vm_set_caps(d, (const char *const[]){ "postcopy-ram", NULL }, true, NULL);
	} else if (!strcmp(cfg, "handcopy")) {
		vm_set_caps(s, (const char *const[]){ "x-ignore-shared", NULL }, true, NULL);
		vm_set_caps(d, (const char *const[]){ "x-ignore-shared", NULL }, true, NULL);
	}
}

static void run_qemu(const struct opts *o, const char *cfg, struct outcome *out)
{
	struct vm s, d;
	static struct cproxy px;
	int dport = free_port();
	char uri[64], via[64];
	double t0;
	int64_t stop_us, resume_us;

	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", dport);
	start_pair(o, &s, &d, uri, NULL);
	out->dirty_rate = guest_rate(o, &s);
	if (cproxy_start(&px, "127.0.0.1", dport) < 0)
		exit(1);
	snprintf(via, sizeof(via), "tcp:127.0.0.1:%d", px.port);
	configure(cfg, &s, &d);
	qmp_drop_events(s.qmp);
	qmp_drop_events(d.qmp);
	t0 = realtime_us();
	if (!strcmp(cfg, "handcopy")) {
		vm_qmp(&s, "stop");
		if (copy_ram(&s, &d) < 0)
			snprintf(out->note, sizeof(out->note), "copy failed");
	}
	qmp_executev(s.qmp, "migrate", 10000, NULL, NULL, "uri", json_object_new_string(via), NULL);
	if (!strcmp(cfg, "postcopy")) {
		usleep(1000000);
		qmp_execute(s.qmp, "migrate-start-postcopy", NULL, 10000, NULL, NULL);
	}
	stop_us = vm_event_us(&s, "STOP", 0, o->timeout_s * 1000);
	if (!strcmp(cfg, "handcopy") && stop_us) {
		char st[32] = "";

		for (int i = 0; i < 2000 && vm_status(&d, st, sizeof(st)) == 0 &&
				!strcmp(st, "inmigrate"); i++)
			usleep(1000);
		vm_qmp(&d, "cont");
	}
	resume_us = stop_us ? vm_event_us(&d, "RESUME", 0, o->timeout_s * 1000) : 0;
	out->bytes = (double)cproxy_bytes(&px);
	out->ok = stop_us && resume_us;
	if (out->ok) {
		out->pause_ms = (double)(resume_us - stop_us) / 1000.0;
		out->total_ms = ((double)resume_us - t0) / 1000.0;
		check_guest(&d, out);
	} else {
		snprintf(out->note, sizeof(out->note), "not converged in %d s", o->timeout_s);
		qmp_execute(s.qmp, "migrate_cancel", NULL, 10000, NULL, NULL);
	}
	vm_kill(&s);
	vm_kill(&d);
	cproxy_stop(&px);
}

/* The switchover rows of wpmig's result. */
static void take_steps(json_object *j, struct outcome *out)
{
	json_object *list, *v;

	if (!j || !json_object_object_get_ex(j, "switchover", &list))
		return;
	for (size_t i = 0; i < json_object_array_length(list) && out->n_steps < MAX_STEPS; i++) {
		json_object *row = json_object_array_get_idx(list, i);
		int k = out->n_steps++;

		snprintf(out->step[k], sizeof(out->step[k]), "%s",
			 json_object_object_get_ex(row, "step", &v) ? json_object_get_string(v) : "?");
		out->step_at[k] = json_object_object_get_ex(row, "at_ms", &v) ?
					  json_object_get_double(v) : 0;
		out->step_ms[k] = json_object_object_get_ex(row, "ms", &v) ?
					  json_object_get_double(v) : 0;
	}
}

static void print_steps(const struct outcome *out)
{
	if (!out->n_steps)
		return;
	printf("      switchover (step: ms, ends at ms after STOP):");
	for (int i = 0; i < out->n_steps; i++)
		printf(" %s %.1f (%+.1f)", out->step[i], out->step_ms[i], out->step_at[i]);
	printf("\n");
}

static void run_wpmig(const struct opts *o, struct outcome *out)
{
	static struct cproxy pl, pq;
	struct pd src = { 0 }, dst = { 0 };
	struct vm s, d;
	char key[192], listen[64], extra[256], in_dir[128], uri[64], peer[64], via[64];
	char *stdout_text = NULL, *stderr_text = NULL;
	int lport = free_port(), dport = free_port(), rc;
	int64_t stop_us, resume_us;
	double t0;

	snprintf(in_dir, sizeof(in_dir), "%s/incoming", dir);
	mkdir(in_dir, 0700);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", lport);
	snprintf(extra, sizeof(extra), "incoming_qmp_dir = %s\n", in_dir);
	if (pk_make(key, sizeof(key)) < 0 || pd_start(&dst, key, listen, extra, NULL) < 0 ||
	    pd_start(&src, key, NULL, NULL, NULL) < 0)
		exit(1);
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", dport);
	start_pair(o, &s, &d, uri, in_dir);
	out->dirty_rate = guest_rate(o, &s);
	if (cproxy_start(&pl, "127.0.0.1", lport) < 0 || cproxy_start(&pq, "127.0.0.1", dport) < 0)
		exit(1);
	snprintf(peer, sizeof(peer), "127.0.0.1:%d", pl.port);
	snprintf(via, sizeof(via), "tcp:127.0.0.1:%d", pq.port);
	qmp_drop_events(s.qmp);
	qmp_drop_events(d.qmp);
	t0 = realtime_us();
	rc = CTL(&src.d, &stdout_text, &stderr_text, "--json", "migrate", "--qmp", s.qmp2_path,
		 "--peer", peer, "--dest-qmp", d.qmp2_path, "--dest-uri", via);
	stop_us = rc == 0 ? vm_event_us(&s, "STOP", 0, 10000) : 0;
	resume_us = rc == 0 ? vm_event_us(&d, "RESUME", 0, 10000) : 0;
	out->bytes = (double)(cproxy_bytes(&pl) + cproxy_bytes(&pq));
	out->ok = stop_us && resume_us;
	if (out->ok) {
		json_object *j = json_tokener_parse(stdout_text), *v;
		int passes = j && json_object_object_get_ex(j, "iterations", &v) ?
				     json_object_get_int(v) : 0;
		double says = j && json_object_object_get_ex(j, "downtime_ms", &v) ?
				      json_object_get_double(v) : 0;

		out->pause_ms = (double)(resume_us - stop_us) / 1000.0;
		out->total_ms = ((double)resume_us - t0) / 1000.0;
		char rows[96] = "";
		json_object *list;

		/* Pages per pass, the final one last: where the pause went. */
		if (j && json_object_object_get_ex(j, "passes", &list))
			for (size_t i = 0, w = 0; i < json_object_array_length(list) && w < 80; i++) {
				json_object *row = json_object_array_get_idx(list, i), *pg;

				if (json_object_object_get_ex(row, "dirty_rate", &pg) &&
				    json_object_get_double(pg) > out->tracked_rate)
					out->tracked_rate = json_object_get_double(pg);
				if (json_object_object_get_ex(row, "pages", &pg))
					w += (size_t)snprintf(rows + w, sizeof(rows) - w, "%s%lld",
							      i ? "/" : "",
							      (long long)json_object_get_int64(pg));
			}
		snprintf(out->note, sizeof(out->note), "%d passes (%s pages), wpmig says %.1f ms",
			 passes, rows, says);
		take_steps(j, out);
		json_object_put(j);
		check_guest(&d, out);
	} else {
		snprintf(out->note, sizeof(out->note), "%.100s", stderr_text ? stderr_text : "?");
	}
	free(stdout_text);
	free(stderr_text);
	vm_kill(&s);
	vm_kill(&d);
	cproxy_stop(&pl);
	cproxy_stop(&pq);
	pd_cleanup(&src);
	pd_cleanup(&dst);
}

struct row {
	const char *cfg;
	int ok;
	double pause, total, bytes, rate;
	double pv[MAX_RUNS], tv[MAX_RUNS], bv[MAX_RUNS]; /* the converged runs */
};

static struct row measure(const struct opts *o, const char *cfg)
{
	double pause[MAX_RUNS] = { 0 }, total[MAX_RUNS] = { 0 }, bytes[MAX_RUNS] = { 0 };
	double rate[MAX_RUNS], allb[MAX_RUNS];
	struct row r = { .cfg = cfg };

	for (int i = 0; i < o->runs; i++) {
		struct outcome out = { 0 };

		if (!strcmp(cfg, "wpmig"))
			run_wpmig(o, &out);
		else
			run_qemu(o, cfg, &out);
		printf("  %-13s run %d: %s pause %7.1f ms, total %8.1f ms, %11.0f bytes, guest "
		       "%.0f pages/s %s\n", cfg, i + 1, out.ok ? "ok  " : "FAIL", out.pause_ms,
		       out.total_ms, out.bytes, out.dirty_rate, out.note);
		print_steps(&out);
		fflush(stdout);
		allb[i] = out.bytes;
		rate[i] = out.tracked_rate > 0 ? out.tracked_rate : out.dirty_rate;
		if (out.ok) {
			pause[r.ok] = out.pause_ms;
			total[r.ok] = out.total_ms;
			bytes[r.ok] = out.bytes;
			r.ok++;
		}
	}
	memcpy(r.pv, pause, sizeof(r.pv));
	memcpy(r.tv, total, sizeof(r.tv));
	memcpy(r.bv, bytes, sizeof(r.bv));
	r.rate = median(rate, o->runs);
	r.pause = r.ok ? median(pause, r.ok) : -1;
	r.total = r.ok ? median(total, r.ok) : -1;
	r.bytes = r.ok ? median(bytes, r.ok) : median(allb, o->runs);
	return r;
}

static void print_table(const struct opts *o, struct row *rows, int n)
{
	printf("\n| configuration | converged | total | pause | bytes on the wire |\n"
	       "|---|---|---|---|---|\n");
	for (int i = 0; i < n; i++) {
		struct row *r = &rows[i];

		if (r->ok)
			printf("| %s | %d/%d | %.2f s | %.0f ms | %.2f MB |\n", r->cfg, r->ok, o->runs,
			       r->total / 1e3, r->pause, r->bytes / 1e6);
		else
			printf("| %s | 0/%d in %d s | — | — | %.1f MB sent |\n", r->cfg, o->runs,
			       o->timeout_s, r->bytes / 1e6);
	}
}

static const struct row *find_row(const struct row *rows, int n, const char *cfg)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(rows[i].cfg, cfg) && rows[i].ok)
			return &rows[i];
	return NULL;
}

static void goal(const char *what, double have, double limit)
{
	printf("  %-44s %10.2f vs %10.2f  %s\n", what, have, limit,
	       have <= limit ? "met" : "MISSED");
}

static void print_goals(struct row *rows, int n)
{
	const struct row *w = find_row(rows, n, "wpmig"), *u = find_row(rows, n, "unlimited"),
			 *m = find_row(rows, n, "multifd");
	double best = 1e18;

	if (!w)
		return;
	for (int i = 0; i < n; i++)
		if (rows[i].ok && strcmp(rows[i].cfg, "wpmig") && strcmp(rows[i].cfg, "postcopy") &&
		    strcmp(rows[i].cfg, "handcopy") && rows[i].pause < best)
			best = rows[i].pause;
	printf("\nTargets (medians, this run):\n");
	goal("wpmig pause (ms) <= 50", w->pause, 50);
	if (best < 1e18)
		goal("wpmig pause (ms) <= best QEMU precopy pause", w->pause, best);
	if (u) {
		goal("wpmig total (ms) <= QEMU unlimited", w->total, u->total);
		goal("wpmig bytes (MB) <= 1/10 QEMU unlimited", w->bytes / 1e6, u->bytes / 10e6);
	}
	if (m)
		goal("wpmig bytes (MB) <= QEMU multifd+zstd", w->bytes / 1e6, m->bytes / 1e6);
}

/* A figure of wpmig beside a QEMU configuration's, for the report. */
static void report_vs(const char *id, const char *what, const char *unit, const double *v,
		      const struct row *w, const struct row *ref, const double *ref_v,
		      const char *target)
{
	char name[64];

	snprintf(name, sizeof(name), "QEMU %s, same guest", ref->cfg);
	brep_row(&(struct brep_row){ .id = id, .section = "QEMU migration", .what = what,
				     .unit = unit, .v = v, .n = (unsigned)w->ok, .ref = name,
				     .ref_unit = unit, .ref_v = ref_v, .ref_n = (unsigned)ref->ok,
				     .target = target,
				     .note = "pause: source STOP to destination RESUME; bytes: counted "
					     "by proxies on the peer link and QEMU's stream" });
}

/* The report's rows (tests/perf-report.py): wpmig against QEMU's own. */
static void report(const struct opts *o, struct row *rows, int n)
{
	const struct row *w = find_row(rows, n, "wpmig"), *u = find_row(rows, n, "unlimited"),
			 *m = find_row(rows, n, "multifd"), *best = NULL;
	double wmb[MAX_RUNS], umb[MAX_RUNS], mmb[MAX_RUNS];
	char why[128];

	if (!w) {
		snprintf(why, sizeof(why), "wpmig's migration did not converge in %d run(s)", o->runs);
		brep_skip("qemu.pause", "QEMU migration", "wpmig migrate of a guest dirtying memory",
			  why);
		return;
	}
	for (int i = 0; i < n; i++)
		if (rows[i].ok && strcmp(rows[i].cfg, "wpmig") && strcmp(rows[i].cfg, "postcopy") &&
		    strcmp(rows[i].cfg, "handcopy") && (!best || rows[i].pause < best->pause))
			best = &rows[i];
	for (int i = 0; i < MAX_RUNS; i++) {
		wmb[i] = w->bv[i] / 1e6;
		umb[i] = u ? u->bv[i] / 1e6 : 0;
		mmb[i] = m ? m->bv[i] / 1e6 : 0;
	}
	brep_row(&(struct brep_row){ .id = "qemu.pause", .section = "QEMU migration",
				     .what = "wpmig migrate, guest dirtying memory: pause",
				     .unit = "ms", .v = w->pv, .n = (unsigned)w->ok,
				     .target = "<= 50" });
	if (best)
		report_vs("qemu.pause_best", "wpmig migrate: pause, against QEMU's best precopy",
			  "ms", w->pv, w, best, best->pv, "ratio <= 1");
	if (u) {
		report_vs("qemu.total", "wpmig migrate: total time", "ms", w->tv, w, u, u->tv,
			  "ratio <= 1");
		report_vs("qemu.bytes", "wpmig migrate: bytes on the wire", "MB", wmb, w, u, umb,
			  "ratio <= 0.1");
	}
	if (m)
		report_vs("qemu.bytes_multifd", "wpmig migrate: bytes on the wire, against "
			  "multifd+zstd", "MB", wmb, w, m, mmb, "ratio <= 1");
	for (int i = 0; i < n; i++) {
		char id[64], what[96];

		if (!strcmp(rows[i].cfg, "wpmig"))
			continue;
		snprintf(id, sizeof(id), "qemu.cfg.%s", rows[i].cfg);
		if (!rows[i].ok) {
			snprintf(what, sizeof(what), "QEMU %s: pause", rows[i].cfg);
			snprintf(why, sizeof(why), "did not converge in %d s, %d run(s)", o->timeout_s,
				 o->runs);
			brep_skip(id, "QEMU migration", what, why);
			continue;
		}
		snprintf(what, sizeof(what), "QEMU %s: pause", rows[i].cfg);
		brep_row(&(struct brep_row){ .id = id, .section = "QEMU migration", .what = what,
					     .unit = "ms", .v = rows[i].pv, .n = (unsigned)rows[i].ok,
					     .ref = "wpmig", .ref_id = "qemu.pause" });
	}
}

/* wpmig, unlimited and postcopy over guest delays: sweep.dat, sweep.png. */
static void sweep(struct opts *o)
{
	static const uint32_t delays[] = { 20000, 5000, 1000, 200, 0 };
	static const char *const cfgs[] = { "wpmig", "unlimited", "postcopy" };
	char path[1024];
	FILE *f;

	mkdir(o->sweep, 0755);
	snprintf(path, sizeof(path), "%s/sweep.dat", o->sweep);
	f = fopen(path, "w");
	if (!f)
		return;
	fprintf(f, "# guest dirty pages/s (wpmig's measure while tracking), then pause_ms "
		"total_ms per config: %s %s %s\n", cfgs[0],
		cfgs[1], cfgs[2]);
	for (size_t i = 0; i < ARRAY_SIZE(delays); i++) {
		double rate;
		struct row r[3];

		o->delay = delays[i];
		printf("== delay %u\n", o->delay);
		for (size_t k = 0; k < 3; k++)
			r[k] = measure(o, cfgs[k]);
		rate = r[0].rate; /* as wpmig measured it while tracking */
		fprintf(f, "%.0f", rate);
		for (size_t k = 0; k < 3; k++)
			fprintf(f, " %.1f %.1f", r[k].ok ? r[k].pause : 1.0 / 0.0,
				r[k].ok ? r[k].total : 1.0 / 0.0);
		fprintf(f, "\n");
		fflush(f);
	}
	fclose(f);
	snprintf(path, sizeof(path),
		 "cd %s && gnuplot -e \"set terminal svg size 900,600; set output 'sweep.svg'; "
		 "set logscale y; set xlabel 'guest dirty rate (pages/s, as tracked)'; "
		 "set ylabel 'ms'; set key top left; "
		 "plot 'sweep.dat' u 1:2 smooth unique w lp t 'wpmig pause', '' u 1:3 smooth unique w lp t 'wpmig total', "
		 "'' u 1:4 smooth unique w lp t 'QEMU unlimited pause', '' u 1:5 smooth unique w lp t 'QEMU unlimited total', "
		 "'' u 1:6 smooth unique w lp t 'QEMU postcopy pause', '' u 1:7 smooth unique w lp t 'QEMU postcopy total'\"",
		 o->sweep);
	if (system(path) != 0)
		fprintf(stderr, "gnuplot failed (gnuplot-nox installed?)\n");
}

static void loadavg(const char *when)
{
	char buf[64] = "?";
	FILE *f = fopen("/proc/loadavg", "r");

	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			snprintf(buf, sizeof(buf), "?\n");
		fclose(f);
	}
	printf("load average %s: %s", when, buf);
}

/* One guest, the configurations of o->configs: rows, table, targets. */
static void section(struct opts *o)
{
	struct row rows[16] = { 0 };
	int n = 0;
	char *list = strdup(o->configs), *tok;

	if (o->linux_guest) {
		o->mc_mib = o->mib * 3 / 4 - 48;
		if (!o->initrd[0] && vm_build_initrd(dir, o->initrd, sizeof(o->initrd)) < 0)
			exit(1);
	}
	printf("\nQEMU migration: %s guest, %u MiB%s, %d run(s) per configuration\n",
	       o->linux_guest ? "Linux (mixed pages: a third zero, text, random; part rewritten)"
			      : "boot-sector", o->mib,
	       o->linux_guest ? "" : ", counter rewritten in every page of the range", o->runs);
	loadavg("before");
	for (tok = strtok(list, ","); tok && n < 16; tok = strtok(NULL, ","))
		rows[n++] = measure(o, tok);
	loadavg("after");
	print_table(o, rows, n);
	print_goals(rows, n);
	if (!o->all) /* the report's rows: one configuration set, one guest */
		report(o, rows, n);
	free(list);
	fflush(stdout);
}

/* Every figure issue 11 asks for, in one invocation. */
static void run_all(struct opts *o)
{
	static const char *const every = "wpmig,default,unlimited,xbzrle,multifd,autoconverge,"
					 "postcopy,handcopy";
	static const char *const big = "wpmig,unlimited,multifd,autoconverge,postcopy";
	int runs = o->runs;

	*o = (struct opts){ .runs = runs, .timeout_s = 30, .mib = 256, .pages = 30000,
			    .configs = every, .all = o->all };
	section(o);
	o->linux_guest = true;
	section(o);
	o->linux_guest = false;
	o->runs = 1;
	o->configs = big;
	o->mib = 1024;
	o->pages = 120000;
	o->timeout_s = 60;
	section(o);
	o->mib = 2048;
	o->pages = 240000;
	o->timeout_s = 90;
	section(o);
	*o = (struct opts){ .runs = 1, .timeout_s = 30, .mib = 256, .pages = 30000,
			    .sweep = o->all };
	printf("\nSweep: wpmig, QEMU unlimited and postcopy against the dirty rate, "
	       "256 MiB boot-sector guest, into %s/sweep.svg\n", o->sweep);
	sweep(o);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "quick", no_argument, NULL, 'q' }, { "runs", required_argument, NULL, 'r' },
		{ "mib", required_argument, NULL, 'm' }, { "pages", required_argument, NULL, 'p' },
		{ "delay", required_argument, NULL, 'd' }, { "linux", no_argument, NULL, 'l' },
		{ "configs", required_argument, NULL, 'c' }, { "timeout", required_argument, NULL, 't' },
		{ "sweep", required_argument, NULL, 's' }, { "all", required_argument, NULL, 'a' },
		{ 0 },
	};
	struct opts o = { .runs = 3, .timeout_s = 60, .mib = 256, .pages = 30000,
			  .configs = "wpmig,default,unlimited,xbzrle,multifd,autoconverge,postcopy,"
				     "handcopy" };
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'q': o.quick = true; break;
		case 'r': o.runs = MIN(MAX(atoi(optarg), 1), MAX_RUNS); break;
		case 'm': o.mib = (uint32_t)atoi(optarg); break;
		case 'p': o.pages = (uint32_t)atoi(optarg); break;
		case 'd': o.delay = (uint32_t)atoi(optarg); break;
		case 'l': o.linux_guest = true; break;
		case 'c': o.configs = optarg; break;
		case 't': o.timeout_s = atoi(optarg); break;
		case 's': o.sweep = optarg; break;
		case 'a': o.all = optarg; break;
		default: return 2;
		}
	}
	if (o.quick) { /* does it run: small, one run, two configs */
		o.runs = 1;
		o.mib = 128;
		o.pages = 8192;
		o.timeout_s = 20;
		o.configs = "wpmig,unlimited";
	}
	/* Run straight from the build tree too (meson sets these). */
	test_bin("WPMIG_GUEST_BOOT", "guest-boot.img");
	test_bin("WPMIG_GUEST_MEMCHECK", "guest-memcheck");
	if (!getenv("WPMIG_MKINITRAMFS"))
		setenv("WPMIG_MKINITRAMFS", WPMIG_QEMU_SRCDIR "/mkinitramfs.sh", 0);
	vm_require(o.linux_guest || o.all ? VM_LINUX : VM_BOOT, false);
	require_tracking();
	if (!mkdtemp(dir))
		return 1;
	if (o.all)
		run_all(&o);
	else if (o.sweep)
		sweep(&o);
	else
		section(&o);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		(void)!system(cmd);
	}
	return 0;
}
