// SPDX-License-Identifier: GPL-2.0-only
/*
 * VM checkpoint figures (issue 12): wpmig-ctl checkpoint --qmp against
 * QEMU 7.2's own snapshots, one guest, one invocation.  The guest is the
 * Linux guest of the QEMU tests (guest-memcheck): it fills three quarters
 * of its RAM with pages of mixed content (a third zero, text-like, random),
 * (less 48 MiB), then forever rewrites a hot set of a tenth of its RAM while checking
 * every page; between two snapshots it completes one cycle (every page
 * checked, the hot set rewritten several times over).  RAM in a
 * memory-backend-file on /dev/shm, share=on; TCG.
 *
 *   wpmig     a full checkpoint, then --increments incremental ones: pause
 *             (QEMU's STOP to RESUME event), bytes (the store's growth on
 *             disk), the pause's steps from the result
 *   savevm    HMP savevm into a qcow2 drive, --savevms times (each writes
 *             all of RAM): stop time (STOP to RESUME), the qcow2's growth
 *   bg-snap   migration with background-snapshot to a file (exec:cat):
 *             total time, pause (STOP to RESUME), the file's size; on a
 *             second QEMU with memory-backend-ram if QEMU refuses it on
 *             this guest's shared file backend
 *
 *   bench-vm-checkpoint [--quick] [--mib N] [--increments N] [--savevms N]
 *                       [--bgsnap-ram]
 *
 * --bgsnap-ram: background-snapshot on the memory-backend-ram QEMU straight
 * away, as when QEMU refuses the shared backend.
 *
 * Default 1 GiB, 4 increments, 2 savevms; --quick (the performance
 * report) 256 MiB, 3 increments, 2 savevms (options after it override it).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../bench-report.h"
#include "../bench.h"
#include "basic/util.h"
#include "peer-harness.h"
#include "vm.h"

#define MAX_GENS 16
#define SECTION "VM checkpoints"

struct opts {
	uint32_t mib;
	int increments, savevms;
	bool bgsnap_ram; /* background-snapshot on memory-backend-ram only */
	char initrd[256];
};

/* One snapshot of any kind. */
struct snap {
	bool ok;
	double pause_ms, total_ms, bytes;
	json_object *result; /* wpmig's, for where the time went */
	char note[512];
};

struct rig {
	char dir[64], disk[128];
	struct pd pd;
	struct vm vm;
	const struct opts *o;
};

static double realtime_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Bytes of the files under path (du's apparent size). */
static double tree_bytes(const char *path)
{
	char cmd[512], line[64] = "";
	FILE *f;

	snprintf(cmd, sizeof(cmd), "du -sb %s 2>/dev/null", path);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	pclose(f);
	return line[0] ? strtod(line, NULL) : -1;
}

static double file_bytes(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (double)st.st_size : 0;
}

/* The guest as the benchmark wants it: filled, hot tenth, one cycle done. */
static int guest_start(struct rig *g, enum vm_mem mem, const char *name, struct vm *vm)
{
	const struct opts *o = g->o;
	struct vm_config c = {
		.guest = VM_LINUX, .mem = mem, .mem_mib = o->mib, .dir = g->dir, .name = name,
		.mc_mib = o->mib * 3 / 4 - 48, .mc_hot = o->mib * 256 / 10, .initrd = o->initrd,
		.qmp2_dir = g->dir, .disk = mem == VM_MEM_FILE && g->disk[0] ? g->disk : NULL,
	};
	uint64_t t0 = now_ns();
	int r = vm_start(&c, vm);

	if (r == 0)
		r = vm_wait_serial(vm, "OK 1\r\n", 0, 1200000);
	if (r < 0) {
		fprintf(stderr, "guest %s did not fill its RAM: %s\n", name, strerror(-r));
		vm_kill(vm); /* and its RAM file */
		return r;
	}
	printf("guest %s: booted, %u MiB filled, first cycle checked in %.1f s\n", name,
	       c.mc_mib, (double)(now_ns() - t0) / 1e9);
	return 0;
}

/* Wait until the guest has completed one more cycle: it rewrote its hot
 * tenth of RAM since the last snapshot. */
static int next_cycle(struct vm *vm)
{
	char needle[32];

	snprintf(needle, sizeof(needle), "OK %ld\r\n", vm_serial_progress(vm) + 1);
	return vm_wait_serial(vm, needle, 0, 1200000);
}

static void wpmig_once(struct rig *g, struct snap *s)
{
	char *out = NULL, *err = NULL;
	double before = tree_bytes(g->pd.d.state);
	int rc = CTL(&g->pd.d, &out, &err, "--json", "checkpoint", "--qmp", g->vm.qmp2_path,
		     "--set", "vm");
	json_object *j = rc == 0 ? json_tokener_parse(out) : NULL;

	s->ok = j != NULL;
	s->result = j;
	if (!s->ok) {
		snprintf(s->note, sizeof(s->note), "%s", err ? err : "?");
	} else {
		s->bytes = tree_bytes(g->pd.d.state) - before;
		s->pause_ms = vm_jnum(j, "pause_ms");
		s->total_ms = vm_jnum(j, "duration_ms");
		snprintf(s->note, sizeof(s->note), "generation %.0f (parent %.0f)",
			 vm_jnum(j, "generation"), vm_jnum(j, "parent"));
	}
	free(out);
	free(err);
}

static void savevm_once(struct rig *g, int i, struct snap *s)
{
	char line[64], msg[512] = "";
	double before = file_bytes(g->disk), t0 = realtime_us();
	int64_t stop_us, resume_us;

	snprintf(line, sizeof(line), "savevm wpmig-bench-%d", i);
	qmp_pump(g->vm.qmp); /* older events (the daemon's checkpoints) too */
	qmp_drop_events(g->vm.qmp);
	int r = vm_hmp(&g->vm, line, 600000, msg, sizeof(msg));
	s->total_ms = (realtime_us() - t0) / 1e3;
	stop_us = vm_event_us(&g->vm, "STOP", (int64_t)t0, 5000);
	resume_us = stop_us ? vm_event_us(&g->vm, "RESUME", stop_us, 5000) : 0;
	s->ok = r == 0 && !strstr(msg, "rror") && stop_us && resume_us;
	if (!s->ok) {
		snprintf(s->note, sizeof(s->note), "savevm: %s", msg[0] ? msg : strerror(-r));
		return;
	}
	s->pause_ms = (double)(resume_us - stop_us) / 1e3;
	s->bytes = file_bytes(g->disk) - before;
	snprintf(s->note, sizeof(s->note), "%s", line);
}

/* Background snapshot of vm into a file: 0, or QEMU's refusal in s->note. */
static int bgsnap_once(struct rig *g, struct vm *vm, struct snap *s)
{
	static const char *const caps[] = { "events", "background-snapshot", NULL };
	struct qmp_error err = { "", "" };
	char file[192], uri[256], status[32] = "";
	double t0;
	int64_t stop_us, resume_us, done_us = 0;
	int r;

	snprintf(file, sizeof(file), "%s/%s.bgsnap", g->dir, vm->cfg.name);
	snprintf(uri, sizeof(uri), "exec:cat > %s", file);
	r = vm_set_caps(vm, caps, true, &err);
	if (r < 0) {
		snprintf(s->note, sizeof(s->note), "migrate-set-capabilities background-snapshot: %s",
			 err.class[0] ? err.desc : strerror(-r));
		return r;
	}
	qmp_pump(vm->qmp);
	qmp_drop_events(vm->qmp);
	t0 = realtime_us();
	r = qmp_executev(vm->qmp, "migrate", 10000, NULL, &err, "uri", json_object_new_string(uri),
			 NULL);
	if (r == 0)
		r = vm_wait_migration(vm, 600000, status, sizeof(status), &done_us);
	stop_us = vm_event_us(vm, "STOP", (int64_t)t0, 5000);
	resume_us = stop_us ? vm_event_us(vm, "RESUME", stop_us, 5000) : 0;
	vm_set_caps(vm, caps + 1, false, NULL);
	s->ok = r == 0 && !strcmp(status, "completed") && stop_us && resume_us;
	if (!s->ok) {
		snprintf(s->note, sizeof(s->note), "migrate: %s", r == -EREMOTEIO ? err.desc :
			 r < 0 ? strerror(-r) : status);
		return r < 0 ? r : -EIO;
	}
	s->pause_ms = (double)(resume_us - stop_us) / 1e3;
	s->total_ms = ((double)done_us - t0) / 1e3;
	s->bytes = file_bytes(file);
	snprintf(s->note, sizeof(s->note), "%s guest RAM", vm->cfg.mem == VM_MEM_FILE ?
		 "memory-backend-file share=on" : "memory-backend-ram (plain -m)");
	unlink(file);
	return 0;
}

static void print_row(const char *what, const struct snap *s)
{
	if (!s->ok) {
		printf("| %s | — | — | — | FAILED: %.200s |\n", what, s->note);
		return;
	}
	printf("| %s | %.1f | %.0f | %.2f | %s |\n", what, s->pause_ms, s->total_ms, s->bytes / 1e6,
	       s->note);
}

static void print_steps(const struct snap *w, int n)
{
	printf("\nwpmig, where the time goes (from each result):\n");
	for (int i = 0; i < n; i++) {
		json_object *j = w[i].result;

		if (w[i].ok)
			printf("  %s: pause %.1f ms, device state %.1f ms (%.0f bytes), final pass "
			       "%.0f pages, %.0f passes, %.0f pages (%.0f data), %.0f bytes stored "
			       "(result), %.0f on disk, took %.0f ms\n", w[i].note, w[i].pause_ms,
			       vm_jnum(j, "device_state_ms"), vm_jnum(j, "device_state_bytes"),
			       vm_jnum(j, "final_pages"), vm_jnum(j, "passes"), vm_jnum(j, "pages"),
			       vm_jnum(j, "data_pages"), vm_jnum(j, "bytes"), w[i].bytes, w[i].total_ms);
		json_object_put(j);
	}
}

/* Pause (ms) and bytes (MB) of the snapshots that worked. */
static int ok_values(const struct snap *s, int n, double *pause, double *mb)
{
	int k = 0;

	for (int i = 0; i < n; i++)
		if (s[i].ok) {
			pause[k] = s[i].pause_ms;
			mb[k++] = s[i].bytes / 1e6;
		}
	return k;
}

static void goal(const char *what, double have, double limit)
{
	printf("  %-52s %10.3f vs %10.3f  %s\n", what, have, limit,
	       have <= limit ? "met" : "MISSED");
}

struct figures {
	double fp[1], fb[1], ip[MAX_GENS], ib[MAX_GENS], sp[MAX_GENS], sb[MAX_GENS];
	double bp[1], bb[1], bt[1];
	int nf, ni, ns, nb;
};

static void report(const struct opts *o, struct figures *f, const struct snap *bg)
{
	char what[128], why[600];
	const char *note = "pause: QEMU's STOP to RESUME event; bytes: growth of the store, the "
			   "qcow2 or the snapshot file on disk";

	snprintf(what, sizeof(what), "VM checkpoint, %u MiB guest, a tenth rewritten: incremental "
		 "pause, against QEMU savevm's stop time", o->mib);
	if (!f->ni || !f->ns) {
		snprintf(why, sizeof(why), "%s", !f->ni ? "no incremental checkpoint worked"
							  : "savevm did not work");
		brep_skip("vm.pause", SECTION, what, why);
	} else {
		brep_row(&(struct brep_row){ .id = "vm.pause", .section = SECTION, .what = what,
					     .unit = "ms", .v = f->ip, .n = (unsigned)f->ni,
					     .ref = "QEMU savevm, same guest", .ref_unit = "ms",
					     .ref_v = f->sp, .ref_n = (unsigned)f->ns,
					     .target = "ratio <= 0.05", .note = note });
		brep_row(&(struct brep_row){ .id = "vm.bytes_savevm", .section = SECTION,
					     .what = "VM checkpoint: bytes of an incremental "
						     "generation, against a savevm's qcow2 growth",
					     .unit = "MB", .v = f->ib, .n = (unsigned)f->ni,
					     .ref = "QEMU savevm, same guest", .ref_unit = "MB",
					     .ref_v = f->sb, .ref_n = (unsigned)f->ns, .note = note });
	}
	if (f->ni && f->nf)
		brep_row(&(struct brep_row){ .id = "vm.bytes", .section = SECTION,
					     .what = "VM checkpoint: bytes of an incremental "
						     "generation, against the full one",
					     .unit = "MB", .v = f->ib, .n = (unsigned)f->ni,
					     .ref = "wpmig full checkpoint, same guest",
					     .ref_unit = "MB", .ref_v = f->fb, .ref_n = 1,
					     .target = "ratio <= 0.2", .note = note });
	if (f->nf && f->ns)
		brep_row(&(struct brep_row){ .id = "vm.full_pause", .section = SECTION,
					     .what = "VM checkpoint: pause of the full checkpoint",
					     .unit = "ms", .v = f->fp, .n = 1,
					     .ref = "QEMU savevm, same guest", .ref_unit = "ms",
					     .ref_v = f->sp, .ref_n = (unsigned)f->ns, .note = note });
	if (!f->nb) {
		snprintf(why, sizeof(why), "QEMU: %s", bg->note);
		brep_skip("vm.bgsnap", SECTION, "QEMU background-snapshot to a file", why);
		return;
	}
	snprintf(what, sizeof(what), "QEMU background-snapshot to a file (%s): pause", bg->note);
	brep_row(&(struct brep_row){ .id = "vm.bgsnap.pause", .section = SECTION, .what = what,
				     .unit = "ms", .v = f->bp, .n = 1, .ref = "wpmig incremental",
				     .ref_id = "vm.pause", .note = note });
	brep_row(&(struct brep_row){ .id = "vm.bgsnap.bytes", .section = SECTION,
				     .what = "QEMU background-snapshot to a file: bytes",
				     .unit = "MB", .v = f->bb, .n = 1, .ref = "wpmig incremental",
				     .ref_id = "vm.bytes", .note = note });
	brep_row(&(struct brep_row){ .id = "vm.bgsnap.total", .section = SECTION,
				     .what = "QEMU background-snapshot to a file: total time",
				     .unit = "ms", .v = f->bt, .n = 1 });
}

static void summary(const struct opts *o, const struct snap *w, const struct snap *sv,
		    const struct snap *bg)
{
	struct figures f = { 0 };

	f.nf = ok_values(w, 1, f.fp, f.fb);
	f.ni = ok_values(w + 1, o->increments, f.ip, f.ib);
	f.ns = ok_values(sv, o->savevms, f.sp, f.sb);
	f.nb = ok_values(bg, 1, f.bp, f.bb);
	f.bt[0] = bg->total_ms;
	printf("\nTargets (medians, this run):\n");
	if (f.ni && f.ns) {
		double ip[MAX_GENS], sp[MAX_GENS];

		memcpy(ip, f.ip, sizeof(ip));
		memcpy(sp, f.sp, sizeof(sp));
		goal("incremental pause (ms) <= 1/20 of savevm's stop", median(ip, f.ni),
		     median(sp, f.ns) / 20);
	}
	if (f.ni && f.nf) {
		double ib[MAX_GENS];

		memcpy(ib, f.ib, sizeof(ib));
		goal("incremental bytes (MB) <= 1/5 of the full generation", median(ib, f.ni),
		     f.fb[0] / 5);
	}
	report(o, &f, bg);
}

static void run_wpmig(struct rig *g, struct snap *w)
{
	for (int i = 0; i <= g->o->increments; i++) {
		if (i && next_cycle(&g->vm) < 0)
			snprintf(w[i].note, sizeof(w[i].note), "the guest stopped making progress");
		else
			wpmig_once(g, &w[i]);
		printf("  wpmig %d: %s pause %.1f ms, %.2f MB, %s\n", i, w[i].ok ? "ok" : "FAIL",
		       w[i].pause_ms, w[i].bytes / 1e6, w[i].note);
		fflush(stdout);
	}
	/* The references want the guest as QEMU alone has it. */
	char pid[16];

	snprintf(pid, sizeof(pid), "%d", (int)g->vm.qemu_pid);
	if (CTL(&g->pd.d, NULL, NULL, "untrack", pid) != 0)
		fprintf(stderr, "untrack %s failed\n", pid);
}

static void run_savevm(struct rig *g, struct snap *sv)
{
	for (int i = 0; i < g->o->savevms; i++) {
		if (!g->disk[0])
			snprintf(sv[i].note, sizeof(sv[i].note), "skipped: no qemu-img to make the "
				 "qcow2 (Debian: qemu-utils)");
		else if (next_cycle(&g->vm) < 0)
			snprintf(sv[i].note, sizeof(sv[i].note), "the guest stopped making progress");
		else
			savevm_once(g, i + 1, &sv[i]);
		printf("  savevm %d: %s stop %.1f ms, %.2f MB, %s\n", i + 1, sv[i].ok ? "ok" : "FAIL",
		       sv[i].pause_ms, sv[i].bytes / 1e6, sv[i].note);
		fflush(stdout);
	}
}

/* On this guest; if QEMU refuses background-snapshot on its shared file
 * backend, on a second QEMU of the same guest with memory-backend-ram. */
static void run_bgsnap(struct rig *g, struct snap *bg)
{
	struct vm plain;
	char refusal[512];

	if (g->o->bgsnap_ram)
		snprintf(bg->note, sizeof(bg->note), "not tried (--bgsnap-ram)");
	else if (next_cycle(&g->vm) == 0 && bgsnap_once(g, &g->vm, bg) == 0)
		return;
	snprintf(refusal, sizeof(refusal), "%s", bg->note);
	printf("  background-snapshot on the share=on file backend: %s\n", refusal);
	*bg = (struct snap){ 0 };
	if (guest_start(g, VM_MEM_PLAIN, "plain", &plain) < 0) {
		snprintf(bg->note, sizeof(bg->note), "refused on share=on (%.200s); the "
			 "memory-backend-ram guest did not start", refusal);
		return;
	}
	if (bgsnap_once(g, &plain, bg) < 0) {
		char n[sizeof(bg->note)];

		snprintf(n, sizeof(n), "%s", bg->note);
		snprintf(bg->note, sizeof(bg->note), "refused on share=on (%.200s) and on "
			 "memory-backend-ram (%.200s)", refusal, n);
	} else if (!g->o->bgsnap_ram) {
		size_t l = strlen(bg->note);

		snprintf(bg->note + l, sizeof(bg->note) - l, ", as QEMU refused share=on: %.200s",
			 refusal);
	}
	vm_kill(&plain);
}

/* The guest's own check of every page, each cycle: false on a BAD line. */
static bool check_guest(struct vm *vm)
{
	char bad[160];

	if (vm_serial_bad(vm, bad, sizeof(bad))) {
		printf("\nGUEST FAILED ITS OWN CHECK: %s\n", bad);
		return false;
	}
	printf("\nguest: %ld cycles, every page checked out each time\n", vm_serial_progress(vm));
	return true;
}

static int bench(struct opts *o)
{
	struct rig g = { .o = o };
	struct snap w[MAX_GENS + 1] = { 0 }, sv[MAX_GENS] = { 0 }, bg = { 0 };

	snprintf(g.dir, sizeof(g.dir), "/tmp/wpmig-bench-vm-XXXXXX");
	if (!mkdtemp(g.dir) || vm_build_initrd(g.dir, o->initrd, sizeof(o->initrd)) < 0)
		return 1;
	snprintf(g.disk, sizeof(g.disk), "%s/disk.qcow2", g.dir);
	if (vm_sh("qemu-img create -q -f qcow2 %s 64M", g.disk) != 0)
		g.disk[0] = '\0';
	if (pd_start(&g.pd, NULL, NULL, NULL, NULL) < 0)
		return 1;
	if (guest_start(&g, VM_MEM_FILE, "guest", &g.vm) < 0) {
		pd_cleanup(&g.pd);
		vm_sh("rm -rf %s", g.dir);
		return 1;
	}
	printf("\nVM checkpoints: Linux guest, %u MiB (TCG, memory-backend-file share=on), %u MiB "
	       "of mixed pages, hot tenth %u pages; %d increments, %d savevms\n", o->mib,
	       o->mib * 3 / 4 - 48, o->mib * 256 / 10, o->increments, o->savevms);
	run_wpmig(&g, w);
	run_savevm(&g, sv);
	run_bgsnap(&g, &bg);
	bool ok = check_guest(&g.vm);
	printf("\n| snapshot | pause (ms) | total (ms) | bytes (MB) | |\n|---|---|---|---|---|\n");
	for (int i = 0; i <= o->increments; i++)
		print_row(i ? "wpmig incremental" : "wpmig full", &w[i]);
	for (int i = 0; i < o->savevms; i++)
		print_row("QEMU savevm", &sv[i]);
	print_row("QEMU background-snapshot", &bg);
	print_steps(w, o->increments + 1);
	summary(o, w, sv, &bg);
	vm_kill(&g.vm);
	pd_cleanup(&g.pd);
	vm_sh("rm -rf %s", g.dir);
	for (int i = 0; i <= o->increments; i++)
		ok = ok && w[i].ok;
	return ok ? 0 : 1; /* the references may fail: they are QEMU's */
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "quick", no_argument, NULL, 'q' }, { "mib", required_argument, NULL, 'm' },
		{ "increments", required_argument, NULL, 'i' },
		{ "savevms", required_argument, NULL, 's' },
		{ "bgsnap-ram", no_argument, NULL, 'b' }, { 0 },
	};
	struct opts o = { .mib = 1024, .increments = 4, .savevms = 2 };
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'q': o.mib = 256; o.increments = 3; o.savevms = 2; break;
		case 'm': o.mib = (uint32_t)atoi(optarg); break;
		case 'i': o.increments = MIN(MAX(atoi(optarg), 1), MAX_GENS - 1); break;
		case 's': o.savevms = MIN(MAX(atoi(optarg), 1), MAX_GENS); break;
		case 'b': o.bgsnap_ram = true; break;
		default: return 2;
		}
	}
	if (o.mib < 192) {
		fprintf(stderr, "--mib: at least 192 (the guest kernel wants room)\n");
		return 2;
	}
	test_bin("WPMIG_GUEST_MEMCHECK", "guest-memcheck");
	if (!getenv("WPMIG_MKINITRAMFS"))
		setenv("WPMIG_MKINITRAMFS", WPMIG_QEMU_SRCDIR "/mkinitramfs.sh", 0);
	vm_require(VM_LINUX, false);
	require_tracking();
	return bench(&o);
}
