// SPDX-License-Identifier: GPL-2.0-only
/*
 * VM checkpoints (suite 'qemu'): wpmig-ctl checkpoint --qmp of a running
 * boot-sector guest into a private daemon's store, several generations
 * while it runs (the first full, the next ones holding about the pages the
 * guest rewrote), restore of a middle generation into a fresh QEMU started
 * with -incoming defer (its RAM equals a dump taken at that generation's
 * stop with --leave-stopped, then the guest checks its own memory and runs
 * on from there), the same with the Linux guest, export (the files start a
 * QEMU), and the failures: QEMU killed mid-checkpoint, device state that
 * cannot be saved — the guest runs on and nothing is published.
 *
 * Also checkpoint --qmp --peer to a receiving daemon, restored from there.
 *
 *   test-qemu-checkpoint incremental | restore | linux | peer | export |
 *                        qemu-killed | vmstate-fails
 */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "basic/util.h"
#include "peer-harness.h"
#include "vm.h"

#define BOOT_MIB 128
#define BOOT_PAGES 4096 /* an eighth of the guest's RAM, rewritten all the time */
#define LINUX_MIB 192
#define LINUX_MC_MIB 32   /* memcheck's pages: a check cycle every second or so */
#define LINUX_MC_HOT 1024 /* of them rewritten all the time */

struct rig {
	char dir[64];
	char initrd[256];
	enum vm_guest kind;
	struct pd pd;
	struct vm s;
	const char *peer; /* checkpoints go to this peer daemon (NULL: the local store) */
};

/* The guest's RAM as it was at a checkpoint's stop (--leave-stopped). */
struct stop_dump {
	uint8_t *ram;
	size_t len;
	long progress; /* the last whole pass ("P") or check cycle ("OK") line then */
};

struct ck {
	int rc;
	json_object *json;
	char err[4096];
};

static struct vm_config guest(struct rig *g, const char *name, enum vm_mem mem)
{
	if (g->kind == VM_LINUX)
		return (struct vm_config){ .guest = VM_LINUX, .mem = mem, .mem_mib = LINUX_MIB,
					   .dir = g->dir, .name = name, .mc_mib = LINUX_MC_MIB,
					   .mc_hot = LINUX_MC_HOT, .initrd = g->initrd,
					   .qmp2_dir = g->dir };
	return (struct vm_config){ .guest = VM_BOOT, .mem = mem, .mem_mib = BOOT_MIB,
				   .dir = g->dir, .name = name, .boot_pages = BOOT_PAGES,
				   .qmp2_dir = g->dir };
}

/* A daemon (with a peer key when key is not NULL) and a running guest. */
static struct rig *rig_guest(enum vm_guest kind, enum vm_mem mem, const char *key)
{
	static struct rig g;

	g.kind = kind;
	snprintf(g.dir, sizeof(g.dir), "/tmp/wpmig-qck.XXXXXX");
	if (!mkdtemp(g.dir))
		SKIP("mkdtemp");
	if (kind == VM_LINUX && vm_build_initrd(g.dir, g.initrd, sizeof(g.initrd)) < 0)
		SKIP("cannot build the initramfs");
	if (pd_start(&g.pd, key, NULL, "log_level = debug\n", NULL) < 0)
		SKIP("cannot start the daemon");
	struct vm_config c = guest(&g, "src", mem);
	if (vm_start(&c, &g.s) < 0) {
		fprintf(stderr, "FAIL: QEMU did not start\n");
		exit(1);
	}
	/* The Linux guest's first "OK": every page filled and checked once. */
	CHECK(vm_wait_serial(&g.s, kind == VM_LINUX ? "\nOK 1\r\n" : "P 00000004", 0, 120000) == 0,
	      "guest runs");
	return &g;
}

static struct rig *rig_new(enum vm_mem mem)
{
	return rig_guest(VM_BOOT, mem, NULL);
}

static void rig_free(struct rig *g)
{
	vm_kill(&g->s);
	pd_cleanup(&g->pd);
	vm_sh("rm -rf %s", g->dir);
}

/* checkpoint --qmp (--peer g->peer), with one more option when opt is not NULL. */
static void checkpoint_opt(struct rig *g, struct ck *res, const char *set, const char *opt)
{
	const char *args[12] = { "--json", "checkpoint", "--qmp", g->s.qmp2_path, "--set", set };
	char *out = NULL, *err = NULL;
	int n = 6;

	if (g->peer) {
		args[n++] = "--peer";
		args[n++] = g->peer;
	}
	args[n++] = opt;
	args[n] = NULL;
	res->rc = ctl_run(g->pd.d.sock, &out, &err, args);
	res->json = res->rc == 0 ? json_tokener_parse(out) : NULL;
	snprintf(res->err, sizeof(res->err), "%s", err ? err : "");
	free(out);
	free(err);
}

static void checkpoint(struct rig *g, struct ck *res, const char *set)
{
	checkpoint_opt(g, res, set, NULL);
}

/* The guest runs and has made `more` more passes (boot guest) or check
 * cycles (Linux guest) since `from`, no BAD. */
static void check_runs_on(struct vm *vm, long from, long more, const char *what)
{
	char st[32] = "", next[32], bad[128];

	CHECK(vm_status(vm, st, sizeof(st)) == 0 && !strcmp(st, "running"), "%s: %s", what, st);
	if (vm->cfg.guest == VM_LINUX)
		snprintf(next, sizeof(next), "\nOK %ld\r\n", from + more); /* the tty's CR LF */
	else
		snprintf(next, sizeof(next), "P %08lx", (unsigned long)(from + more));
	CHECK(vm_wait_serial(vm, next, 0, 60000) == 0, "%s: passes on from %ld", what, from);
	CHECK(!vm_serial_bad(vm, bad, sizeof(bad)), "%s: %s", what, bad);
}

static int generations(struct rig *g, const char *set)
{
	uint64_t gens[16];

	return pd_generations(&g->pd, set, gens, 16);
}

/* Generation `gen` was taken with --leave-stopped: the guest is stopped
 * (QEMU postmigrate); dump its RAM, then cont. */
static void dump_at_stop(struct rig *g, const struct ck *res, struct stop_dump *sd)
{
	char st[32] = "";

	CHECK(vm_jnum(res->json, "guest_stopped") == 1, "the result says the guest is stopped");
	CHECK(vm_status(&g->s, st, sizeof(st)) == 0 && !strcmp(st, "postmigrate"),
	      "left stopped: %s", st);
	CHECK(vm_dump_ram(&g->s, &sd->ram, &sd->len) == 0, "dump at the stop");
	sd->progress = vm_serial_progress(&g->s);
	CHECK(vm_qmp(&g->s, "cont") == 0, "cont after --leave-stopped");
}

/* Three generations while the guest runs: the first full, then increments
 * of about what the guest rewrote; the guest never notices.  With sd, the
 * second is taken with --leave-stopped and the guest's RAM dumped then. */
static void take_three_dump(struct rig *g, struct ck res[3], struct stop_dump *sd)
{
	for (int i = 0; i < 3; i++) {
		long p = vm_serial_progress(&g->s);

		checkpoint_opt(g, &res[i], "vm", sd && i == 1 ? "--leave-stopped" : NULL);
		CHECK(res[i].rc == 0, "checkpoint %d: %s", i + 1, res[i].err);
		if (res[i].rc)
			return;
		printf("generation %.0f: %.0f pages (%.0f data), %.0f bytes, device state %.0f "
		       "bytes, pause %.1f ms, %.0f passes\n", vm_jnum(res[i].json, "generation"),
		       vm_jnum(res[i].json, "pages"), vm_jnum(res[i].json, "data_pages"),
		       vm_jnum(res[i].json, "bytes"), vm_jnum(res[i].json, "device_state_bytes"),
		       vm_jnum(res[i].json, "pause_ms"), vm_jnum(res[i].json, "passes"));
		CHECK(vm_jnum(res[i].json, "generation") == i + 1, "generation number");
		CHECK(vm_jnum(res[i].json, "device_state_bytes") > 10000, "device state saved");
		CHECK(vm_jnum(res[i].json, "pause_ms") > 0, "pause measured");
		if (sd && i == 1)
			dump_at_stop(g, &res[i], sd);
		else
			CHECK(vm_jnum(res[i].json, "guest_stopped") <= 0, "the guest runs on");
		check_runs_on(&g->s, p, g->kind == VM_LINUX ? 1 : 2, "guest after the checkpoint");
	}
	CHECK(vm_jnum(res[0].json, "parent") == 0, "generation 1 is full");
	CHECK(vm_jnum(res[1].json, "parent") == 1 && vm_jnum(res[2].json, "parent") == 2, "increments");
	/* Generation 1 holds the guest's code, the firmware and the pages;
	 * later ones about the rewritten pages (and what firmware and stack
	 * touch), far fewer than the RAM. */
	uint64_t mib = g->s.cfg.mem_mib, hot = g->kind == VM_LINUX ? LINUX_MC_HOT : BOOT_PAGES;
	CHECK(vm_jnum(res[0].json, "data_pages") >= hot, "generation 1 data pages");
	for (int i = 1; i < 3; i++)
		CHECK(vm_jnum(res[i].json, "data_pages") >= 256 &&
		      vm_jnum(res[i].json, "pages") < mib * 256 / 2,
		      "generation %d: %.0f pages", i + 1, vm_jnum(res[i].json, "pages"));
}

static void take_three(struct rig *g, struct ck res[3])
{
	take_three_dump(g, res, NULL);
}

static void test_incremental(void)
{
	struct rig *g = rig_new(VM_MEM_MEMFD);
	struct ck res[3] = { 0 };
	char *out = NULL;

	take_three(g, res);
	CHECK(proc_has_uffd_wp(g->s.qemu_pid) == 1, "tracked between checkpoints");
	CHECK(CTL(&g->pd.d, &out, NULL, "images", "show", "vm/2") == 0 && out &&
	      strstr(out, "QEMU RAM backend ram0") && strstr(out, "QEMU device state") &&
	      strstr(out, "vmstate"), "images show: %s", out ? out : "");
	free(out);
	CHECK(pd_verify(&g->pd, "vm", 3) == 0, "verify");
	CHECK(CTL(&g->pd.d, NULL, NULL, "untrack", xstrdup_printf("%d", (int)g->s.qemu_pid)) == 0,
	      "untrack");
	CHECK(proc_has_uffd_wp(g->s.qemu_pid) == 0, "QEMU keeps uffd-wp VmFlags");
	for (int i = 0; i < 3; i++)
		json_object_put(res[i].json);
	rig_free(g);
}

/* A restored guest: its serial output goes on (the boot guest prints a
 * pass line after checking every page of its range, the Linux guest an OK
 * line after each check cycle), no BAD line.  The first whole line's number. */
static long check_restored(struct vm *vm)
{
	const char *tag = vm->cfg.guest == VM_LINUX ? "\nOK " : "\nP ";
	size_t len;
	char *log, *p;
	long first = -1;

	/* Its log starts in the middle of a line: the first whole one. */
	CHECK(vm_wait_serial(vm, tag, 0, 60000) == 0, "the restored guest prints");
	log = vm_serial(vm, &len);
	p = strstr(log, tag);
	size_t at = p ? (size_t)(p - log) + 1 : 0;
	free(log);
	CHECK(vm_wait_serial(vm, "\n", at, 60000) == 0, "a whole line");
	log = vm_serial(vm, &len);
	p = strstr(log, tag);
	if (p)
		first = strtol(p + strlen(tag), NULL, vm->cfg.guest == VM_LINUX ? 10 : 16);
	CHECK(!strstr(log, "RUN "), "the restored guest did not start over");
	free(log);
	check_runs_on(vm, first, vm->cfg.guest == VM_LINUX ? 2 : 3, "restored guest");
	return first;
}

/* A QEMU that restore refuses: started with -incoming defer on a backend
 * file, a pattern written into it; afterwards it still waits for an
 * incoming migration and the file is unchanged. */
static void check_refused(struct rig *g, struct vm_config c, const char *expect)
{
	struct vm d = { 0 };
	char *before = NULL, *after = NULL;
	size_t blen = 0, alen = 0;
	char *err = NULL, st[32] = "";

	c.incoming = "defer";
	if (vm_start(&c, &d) < 0) {
		CHECK(0, "QEMU %s did not start", c.name);
		return;
	}
	CHECK(vm_sh("head -c 1048576 /dev/urandom | dd of=%s conv=notrunc status=none",
		    d.ram_path) == 0, "a pattern in %s's backend", c.name);
	/* The file itself: share=off maps it copy-on-write. */
	CHECK(read_full_file(d.ram_path, &before, &blen) == 0, "read %s's backend", c.name);
	int rc = CTL(&g->pd.d, NULL, &err, "restore", "--qmp", d.qmp2_path, "vm/2");
	printf("%s: wpmig-ctl said: %s", c.name, err ? err : "");
	CHECK(rc == 1 && err && strstr(err, "refused") && strstr(err, expect),
	      "%s refused (%s)", c.name, expect);
	CHECK(vm_status(&d, st, sizeof(st)) == 0 && !strcmp(st, "inmigrate"), "%s: %s", c.name, st);
	CHECK(read_full_file(d.ram_path, &after, &alen) == 0 && blen == alen && before &&
	      !memcmp(before, after, blen), "%s's RAM untouched", c.name);
	free(before);
	free(after);
	free(err);
	vm_kill(&d);
}

/* Pages of two dumps that differ (and the first of them). */
static size_t pages_differing(const uint8_t *a, const uint8_t *b, size_t len, size_t *first)
{
	size_t n = 0;

	*first = SIZE_MAX;
	for (size_t off = 0; off < len; off += PAGE_SIZE_4K)
		if (memcmp(a + off, b + off, PAGE_SIZE_4K) && n++ == 0)
			*first = off;
	return n;
}

/*
 * Generation 2 (taken with --leave-stopped, the RAM dumped then) into d
 * with --leave-stopped: d's RAM equals the dump byte for byte before the
 * guest runs; then cont, and the guest goes on from generation 2: its first
 * whole line is the one after the last the original printed before the
 * stop (or the one after that: a line half printed at the stop).
 */
static void restore_compare(struct pd *from, struct vm *d, const struct stop_dump *sd)
{
	char *out = NULL, *err = NULL, st[32] = "";
	uint8_t *ram = NULL;
	size_t len = 0, first = 0;
	json_object *j;

	int rc = CTL(&from->d, &out, &err, "--json", "restore", "--qmp", d->qmp2_path, "vm/2",
		     "--leave-stopped");
	CHECK(rc == 0, "restore: %s", err ? err : "");
	j = rc == 0 ? json_tokener_parse(out) : NULL;
	CHECK(vm_jnum(j, "guest_stopped") == 1, "restore says the guest is left stopped");
	printf("restore: %.0f pages written, %.0f left as holes, device state %.0f bytes\n",
	       vm_jnum(j, "pages"), vm_jnum(j, "pages_zero"), vm_jnum(j, "device_state_bytes"));
	json_object_put(j);
	CHECK(vm_status(d, st, sizeof(st)) == 0 && !strcmp(st, "paused"), "restored, %s", st);
	CHECK(vm_dump_ram(d, &ram, &len) == 0, "dump the restored guest");
	CHECK(ram && sd->ram && len == sd->len, "dump sizes %zu, %zu", len, sd->len);
	if (ram && sd->ram && len == sd->len) {
		size_t n = pages_differing(ram, sd->ram, len, &first);

		CHECK(n == 0, "%zu pages differ from the dump at generation 2's stop (first at "
		      "0x%zx)", n, first);
		printf("restored RAM equals the dump at generation 2's stop: %zu bytes\n", len);
	}
	free(ram);
	free(out);
	free(err);
	CHECK(vm_qmp(d, "cont") == 0, "cont the restored guest");
	long next = check_restored(d);
	printf("the restored guest's first whole line: %ld (the last before the stop: %ld)\n",
	       next, sd->progress);
	CHECK(next == sd->progress + 1 || next == sd->progress + 2, "the restored guest goes on "
	      "from %ld (the stop's last line), not %ld", sd->progress, next);
}

/*
 * Generation 2 of 3 into a fresh QEMU (-incoming defer, a memfd of the
 * same size), its RAM compared with the dump taken at generation 2's stop.
 * First, QEMUs whose backend differs are refused and left as they were:
 * another size, another id, share=off.
 */
static void test_restore(void)
{
	struct rig *g = rig_new(VM_MEM_MEMFD);
	struct ck res[3] = { 0 };
	struct stop_dump sd = { 0 };
	struct vm d = { 0 };

	take_three_dump(g, res, &sd);
	struct vm_config c = guest(g, "small", VM_MEM_FILE);
	c.mem_mib = BOOT_MIB / 2;
	check_refused(g, c, "bytes");
	c = guest(g, "other-id", VM_MEM_FILE);
	c.ram_id = "mem1";
	check_refused(g, c, "no memory backend ram0");
	c = guest(g, "private", VM_MEM_PRIVATE);
	check_refused(g, c, "share=off");

	struct vm_config dc = guest(g, "dst", VM_MEM_MEMFD);
	dc.incoming = "defer";
	CHECK(vm_start(&dc, &d) == 0, "QEMU to restore into");
	restore_compare(&g->pd, &d, &sd);
	/* The original guest is not disturbed. */
	check_runs_on(&g->s, vm_serial_progress(&g->s), 1, "original guest");
	vm_kill(&d);
	free(sd.ram);
	for (int i = 0; i < 3; i++)
		json_object_put(res[i].json);
	rig_free(g);
}

/*
 * The Linux guest (guest-memcheck rewriting and checking its pages) on a
 * file backend, share=on: three generations while it runs, the second with
 * --leave-stopped and a dump then (which its own page checker accepts);
 * generation 2 into a fresh QEMU on another file equals that dump, and the
 * guest resumes with the check cycle after generation 2's, finding no BAD page.
 */
static void test_linux(void)
{
	struct rig *g;
	struct ck res[3] = { 0 };
	struct stop_dump sd = { 0 };
	struct vm d = { 0 };
	char why[256] = "";
	uint32_t pages = 0;
	uint64_t checked = 0, run;

	vm_require(VM_LINUX, false);
	g = rig_guest(VM_LINUX, VM_MEM_FILE, NULL);
	take_three_dump(g, res, &sd);
	run = vm_linux_run(&g->s, &pages);
	CHECK(sd.ram && ramcheck_linux(sd.ram, sd.len, run, pages, why, sizeof(why),
				       &checked) == 0, "the dump at generation 2's stop: %s", why);
	printf("generation 2's stop: check cycle %ld done, %" PRIu64 " pages checked in the dump\n",
	       sd.progress, checked);
	struct vm_config dc = guest(g, "dst", VM_MEM_FILE);
	dc.incoming = "defer";
	CHECK(vm_start(&dc, &d) == 0, "QEMU to restore into");
	restore_compare(&g->pd, &d, &sd);
	vm_kill(&d);
	free(sd.ram);
	for (int i = 0; i < 3; i++)
		json_object_put(res[i].json);
	rig_free(g);
}

/* images export: the backend's file and the device state start a QEMU. */
static void test_export(void)
{
	struct rig *g = rig_new(VM_MEM_MEMFD);
	struct ck res[3] = { 0 };
	struct vm d = { 0 };
	char dir[128], ram[192], uri[256];
	struct qmp_event *e = NULL;
	struct stat st;

	take_three(g, res);
	snprintf(dir, sizeof(dir), "%s/export", g->dir);
	CHECK(CTL(&g->pd.d, NULL, NULL, "images", "export", "vm/3", dir) == 0, "export");
	snprintf(ram, sizeof(ram), "%s/ram0.ram", dir);
	CHECK(stat(ram, &st) == 0 && st.st_size == (off_t)BOOT_MIB << 20, "ram0.ram is the "
	      "backend's size");
	snprintf(uri, sizeof(uri), "%s/vmstate.section", dir);
	CHECK(stat(uri, &st) == 0 && st.st_size == vm_jnum(res[2].json, "device_state_bytes"),
	      "vmstate.section is the device state");
	struct vm_config dc = guest(g, "exported", VM_MEM_FILE);
	dc.ram_file = ram;
	dc.incoming = "defer";
	CHECK(vm_start(&dc, &d) == 0, "QEMU on the exported file");
	json_object *caps = json_object_new_array();
	for (int i = 0; i < 2; i++) {
		json_object *c = json_object_new_object();

		json_object_object_add(c, "capability",
				       json_object_new_string(i ? "events" : "x-ignore-shared"));
		json_object_object_add(c, "state", json_object_new_boolean(true));
		json_object_array_add(caps, c);
	}
	CHECK(qmp_executev(d.qmp, "migrate-set-capabilities", 10000, NULL, NULL, "capabilities",
			   caps, NULL) == 0, "x-ignore-shared");
	snprintf(uri, sizeof(uri), "exec:cat %s/vmstate.section", dir);
	CHECK(qmp_executev(d.qmp, "migrate-incoming", 10000, NULL, NULL, "uri",
			   json_object_new_string(uri), NULL) == 0, "migrate-incoming");
	for (;;) {
		const char *s;

		CHECK(qmp_wait_event(d.qmp, "MIGRATION", 60000, &e) == 0, "incoming migration");
		if (!e)
			break;
		s = qmp_str(e->data, "status");
		bool end = s && (!strcmp(s, "completed") || !strcmp(s, "failed"));
		CHECK(!s || strcmp(s, "failed"), "incoming migration failed");
		qmp_event_free(e);
		e = NULL;
		if (end)
			break;
	}
	CHECK(vm_qmp(&d, "cont") == 0, "cont");
	check_restored(&d);
	vm_kill(&d);
	for (int i = 0; i < 3; i++)
		json_object_put(res[i].json);
	rig_free(g);
}

/* wpmig-ctl checkpoint --qmp in the background. */
static pid_t checkpoint_bg(struct rig *g, const char *set, const char *err_path)
{
	pid_t pid = fork();

	if (pid == 0) {
		if (!freopen(err_path, "w", stderr))
			_exit(126);
		execl(getenv("WPMIG_CTL"), "wpmig-ctl", "--socket", g->pd.d.sock, "checkpoint",
		      "--qmp", g->s.qmp2_path, "--set", set, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static int exit_status(pid_t pid)
{
	int st = 0;

	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *slurp(const char *path)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = fopen(path, "r");

	if (f) {
		buf = calloc(1, 65536);
		len = buf ? fread(buf, 1, 65535, f) : 0;
		fclose(f);
	}
	(void)len;
	return buf;
}

/* QEMU dies while the guest is stopped for the checkpoint (the test's own
 * QMP connection sees the STOP): the checkpoint fails, nothing is
 * published, the daemon ends the session. */
static void test_qemu_killed(void)
{
	struct rig *g = rig_new(VM_MEM_MEMFD);
	char err_path[128], *err;
	struct qmp_event *e = NULL;

	snprintf(err_path, sizeof(err_path), "%s/ctl.err", g->dir);
	qmp_drop_events(g->s.qmp);
	pid_t ctl = checkpoint_bg(g, "dies", err_path);
	CHECK(qmp_wait_event(g->s.qmp, "STOP", 60000, &e) == 0, "the checkpoint stopped the guest");
	qmp_event_free(e);
	kill(g->s.qemu_pid, SIGKILL);
	CHECK(exit_status(ctl) == 1, "checkpoint failed");
	err = slurp(err_path);
	printf("wpmig-ctl said: %s", err ? err : "");
	CHECK(err && strstr(err, "nothing was stored"), "the error says so");
	free(err);
	CHECK(generations(g, "dies") <= 0, "nothing published");
	rig_free(g);
}

/* QEMU cannot save its device state (the return-path capability wants a
 * channel both ways, the pipe is one way): the guest runs on, nothing is
 * published, the capabilities are as they were, and once the user turns
 * return-path off again the next checkpoint works. */
static void test_vmstate_fails(void)
{
	struct rig *g = rig_new(VM_MEM_MEMFD);
	struct ck res = { 0 };
	long p = vm_serial_progress(&g->s);
	json_object *caps = json_object_new_array(), *c = json_object_new_object();

	json_object_object_add(c, "capability", json_object_new_string("return-path"));
	json_object_object_add(c, "state", json_object_new_boolean(true));
	json_object_array_add(caps, c);
	CHECK(qmp_executev(g->s.qmp, "migrate-set-capabilities", 10000, NULL, NULL, "capabilities",
			   json_object_get(caps), NULL) == 0, "return-path on");
	checkpoint(g, &res, "vm");
	printf("wpmig-ctl said: %s", res.err);
	CHECK(res.rc == 1 && strstr(res.err, "device-state"), "checkpoint failed at device-state");
	CHECK(generations(g, "vm") <= 0, "nothing published");
	check_runs_on(&g->s, p, 2, "guest after the failure");
	json_object *list = NULL;
	bool ignore_shared = true;
	CHECK(qmp_execute(g->s.qmp, "query-migrate-capabilities", NULL, 10000, &list, NULL) == 0,
	      "capabilities");
	for (size_t i = 0; list && i < json_object_array_length(list); i++) {
		json_object *o = json_object_array_get_idx(list, i), *st;

		if (!strcmp(qmp_str(o, "capability"), "x-ignore-shared") &&
		    json_object_object_get_ex(o, "state", &st))
			ignore_shared = json_object_get_boolean(st);
	}
	json_object_put(list);
	CHECK(!ignore_shared, "x-ignore-shared put back off");
	json_object_object_add(c, "state", json_object_new_boolean(false));
	CHECK(qmp_executev(g->s.qmp, "migrate-set-capabilities", 10000, NULL, NULL, "capabilities",
			   caps, NULL) == 0, "return-path off");
	checkpoint(g, &res, "vm");
	CHECK(res.rc == 0, "the next checkpoint: %s", res.err);
	CHECK(vm_jnum(res.json, "generation") == 1 && vm_jnum(res.json, "parent") == 0,
	      "a full generation 1");
	json_object_put(res.json);
	rig_free(g);
}

/*
 * checkpoint --qmp --peer: first to a peer that does not answer (fails,
 * the guest runs on), then three generations of the boot guest streamed to
 * a receiving daemon (the second with --leave-stopped, dumped then), none
 * in the source's store; the receiver's generations hold the device state
 * and backends (images show, verify), and its generation 2, restored into
 * a fresh QEMU, equals the dump.  Then a checkpoint into the local store
 * is a full generation 1 (another place).
 */
static void test_peer(void)
{
	struct pd rx = { 0 };
	struct rig *g;
	struct ck res[3] = { 0 }, local = { 0 };
	struct stop_dump sd = { 0 };
	struct vm d = { 0 };
	char key[192], addr[64], *out = NULL;
	uint64_t gens[4];

	CHECK(pk_make(key, sizeof(key)) == 0, "key");
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
	if (pd_start(&rx, key, addr, "", NULL) < 0)
		SKIP("cannot start the receiving daemon");
	g = rig_guest(VM_BOOT, VM_MEM_MEMFD, key);
	/* A peer that does not answer: refused, the guest runs on. */
	char dead[64];
	long p = vm_serial_progress(&g->s);
	snprintf(dead, sizeof(dead), "127.0.0.1:%d", free_port());
	g->peer = dead;
	checkpoint(g, &local, "vm");
	printf("wpmig-ctl said: %s", local.err);
	CHECK(local.rc == 1 && strstr(local.err, "nothing was stored"), "no peer: failed");
	check_runs_on(&g->s, p, 1, "guest after the failed checkpoint");
	g->peer = addr;
	take_three_dump(g, res, &sd);
	for (int i = 0; i < 3; i++)
		CHECK(res[i].json && !strcmp(qmp_str(res[i].json, "peer") ?: "", addr), "sent to %s",
		      addr);
	CHECK(pd_generations(&rx, "vm", gens, 4) == 3, "the receiver holds 3 generations");
	CHECK(generations(g, "vm") <= 0, "nothing in the source's store");
	CHECK(CTL(&rx.d, &out, NULL, "images", "show", "vm/2") == 0 && out &&
	      strstr(out, "QEMU RAM backend ram0") && strstr(out, "QEMU device state"),
	      "images show on the receiver: %s", out ? out : "");
	free(out);
	CHECK(pd_verify(&rx, "vm", 3) == 0, "verify on the receiver");
	struct vm_config dc = guest(g, "dst", VM_MEM_MEMFD);
	dc.incoming = "defer";
	CHECK(vm_start(&dc, &d) == 0, "QEMU to restore into");
	restore_compare(&rx, &d, &sd);
	vm_kill(&d);
	g->peer = NULL;
	local = (struct ck){ 0 };
	checkpoint(g, &local, "vm");
	CHECK(local.rc == 0 && vm_jnum(local.json, "generation") == 1 &&
	      vm_jnum(local.json, "parent") == 0, "then a full generation locally: %s", local.err);
	json_object_put(local.json);
	free(sd.ram);
	for (int i = 0; i < 3; i++)
		json_object_put(res[i].json);
	rig_free(g);
	pd_cleanup(&rx);
}

static const struct subtest tests[] = {
	{ "incremental", test_incremental },
	{ "restore", test_restore },
	{ "linux", test_linux },
	{ "peer", test_peer },
	{ "export", test_export },
	{ "qemu-killed", test_qemu_killed },
	{ "vmstate-fails", test_vmstate_fails },
};

int main(int argc, char **argv)
{
	vm_require(VM_BOOT, false);
	require_tracking();
	return run_subtests(argc, argv, tests, ARRAY_SIZE(tests));
}
