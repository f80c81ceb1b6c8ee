// SPDX-License-Identifier: GPL-2.0-only
/*
 * wpmig-ctl migrate between two real QEMUs (TCG) and two private daemons
 * (suite 'qemu').  After a migration the destination guest must run (its
 * serial output goes on from where the source stopped, with no BAD line)
 * and a dump of its RAM must check out; the source must keep nothing of
 * ours.  After a failure the source guest must run on correctly, the
 * destination must never have been resumed, and the error must name the
 * step.
 *
 *   test-qemu-migrate memfd | file | linux | reboot | netns |
 *                     peer-killed | link-cut | dest-killed | wrong-size |
 *                     not-shared | vfio | max-iterations | kvm
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

#define BOOT_PAGES 16384
#define BOOT_MIB 128

struct rig {
	char dir[64], in_dir[96], key[192], listen[96], uri[96];
	struct pd src, dst;
	struct vm s, d;
	const char *netns_src, *netns_dst;
	char src_fds[4096];
	pid_t ctl; /* a migrate running in the background */
	char ctl_out[160], ctl_err[160];
};

struct migres {
	int rc;
	json_object *json;
	char err[8192];
};

/* Nothing of ours among QEMU's fds: as many as before, no userfaultfd.
 * (QEMU itself reopens its disk image around a migration, so the numbers
 * of its own fds may move.) */
static bool fds_clean(const char *before, const char *now)
{
	size_t a = 0, b = 0;

	if (!now || strstr(now, "userfaultfd"))
		return false;
	for (const char *p = before; (p = strchr(p, '\n')); p++)
		a++;
	for (const char *p = now; (p = strchr(p, '\n')); p++)
		b++;
	return a == b;
}

/* Daemons: the destination listens and accepts QMP sockets under in_dir. */
static void rig_daemons(struct rig *g, const char *listen_host)
{
	char extra[256];
	int port = free_port();

	snprintf(g->dir, sizeof(g->dir), "/tmp/wpmig-qmig.XXXXXX");
	if (!mkdtemp(g->dir))
		SKIP("mkdtemp");
	snprintf(g->in_dir, sizeof(g->in_dir), "%s/incoming", g->dir);
	mkdir(g->in_dir, 0700);
	if (pk_make(g->key, sizeof(g->key)) < 0)
		SKIP("cannot make a key");
	snprintf(g->listen, sizeof(g->listen), "%s:%d", listen_host, port);
	snprintf(g->uri, sizeof(g->uri), "tcp:%s:%d", listen_host, free_port());
	snprintf(extra, sizeof(extra), "incoming_qmp_dir = %s\nlog_level = debug\n", g->in_dir);
	if (pd_start(&g->dst, g->key, g->listen, extra, g->netns_dst) < 0 ||
	    pd_start(&g->src, g->key, NULL, "log_level = debug\n", g->netns_src) < 0)
		SKIP("cannot start the daemons");
}

static struct vm_config guest(struct rig *g, const char *name, enum vm_mem mem, bool dst)
{
	return (struct vm_config){
		.guest = VM_BOOT, .mem = mem, .mem_mib = BOOT_MIB, .dir = g->dir, .name = name,
		.boot_pages = BOOT_PAGES, .incoming = dst ? g->uri : NULL,
		.qmp2_dir = dst ? g->in_dir : g->dir, .netns = dst ? g->netns_dst : g->netns_src,
	};
}

static void rig_vms(struct rig *g, struct vm_config sc, struct vm_config dc)
{
	char *fds;

	if (vm_start(&sc, &g->s) < 0 || vm_start(&dc, &g->d) < 0) {
		fprintf(stderr, "FAIL: QEMU did not start\n");
		exit(1);
	}
	if (sc.guest == VM_BOOT)
		CHECK(vm_wait_serial(&g->s, "P 00000004", 0, 60000) == 0, "source guest runs");
	else
		CHECK(vm_wait_serial(&g->s, "OK 1\r\n", 0, 240000) == 0, "source guest verified once");
	fds = proc_fds(g->s.qemu_pid);
	snprintf(g->src_fds, sizeof(g->src_fds), "%s", fds ? fds : "");
	free(fds);
}

static void rig_free(struct rig *g)
{
	vm_kill(&g->s);
	vm_kill(&g->d);
	pd_cleanup(&g->src);
	pd_cleanup(&g->dst);
	vm_sh("rm -rf %s", g->dir);
}

/* wpmig-ctl --json migrate ... [more...] */
static void migrate(struct rig *g, struct migres *res, const char *const *more)
{
	const char *args[32] = { "--json", "migrate", "--qmp", g->s.qmp2_path, "--peer", g->listen,
				 "--dest-qmp", g->d.qmp2_path, "--dest-uri", g->uri };
	char *out = NULL, *err = NULL;
	int n = 10;

	for (; more && *more; more++)
		args[n++] = *more;
	args[n] = NULL;
	res->rc = ctl_run(g->src.d.sock, &out, &err, args);
	res->json = res->rc == 0 ? json_tokener_parse(out) : NULL;
	snprintf(res->err, sizeof(res->err), "%s", err ? err : "");
	if (res->rc == 0 && err)
		fprintf(stderr, "%s", err); /* the pass lines */
	free(out);
	free(err);
}

/* After success: destination running and correct; source done and clean. */
static void check_arrived(struct rig *g, const struct migres *res)
{
	char st[32] = "", bad[128];
	long before = vm_serial_progress(&g->s);
	size_t len;
	_cleanup_free_ char *log = vm_serial(&g->d, &len);
	char *fds = NULL;

	CHECK(res->rc == 0, "migrate failed: %s", res->err);
	if (res->rc != 0)
		return;
	printf("migrated: downtime %.1f ms, total %.1f ms, %.0f bytes, %.0f pages, %.0f passes\n",
	       vm_jnum(res->json, "downtime_ms"), vm_jnum(res->json, "total_ms"),
	       vm_jnum(res->json, "bytes_sent"), vm_jnum(res->json, "pages_sent"),
	       vm_jnum(res->json, "iterations"));
	CHECK(vm_jnum(res->json, "downtime_ms") > 0 && vm_jnum(res->json, "iterations") >= 2 &&
	      vm_jnum(res->json, "pages_sent") > 0 && vm_jnum(res->json, "bytes_sent") > 0, "result");
	json_object *passes;
	CHECK(json_object_object_get_ex(res->json, "passes", &passes) &&
	      (double)json_object_array_length(passes) == vm_jnum(res->json, "iterations"), "rows");
	CHECK(vm_status(&g->d, st, sizeof(st)) == 0 && !strcmp(st, "running"), "destination %s", st);
	CHECK(vm_status(&g->s, st, sizeof(st)) == 0 && !strcmp(st, "postmigrate"), "source %s", st);
	/* The destination guest goes on: a few more passes, all checked. */
	if (g->s.cfg.guest == VM_BOOT) {
		char next[32];

		snprintf(next, sizeof(next), "P %08lx", (unsigned long)before + 3);
		CHECK(vm_wait_serial(&g->d, next, 0, 60000) == 0, "destination passes on from %ld",
		      before);
	} else {
		CHECK(vm_wait_serial(&g->d, "OK ", len, 240000) == 0, "destination verified again");
	}
	CHECK(!vm_serial_bad(&g->d, bad, sizeof(bad)), "destination guest: %s", bad);
	CHECK(proc_has_uffd_wp(g->s.qemu_pid) == 0, "source QEMU keeps uffd-wp VmFlags");
	/* Taken after the destination went on: QEMU closes its migration
	 * stream and our QMP connection in its main loop, after completion. */
	fds = proc_fds(g->s.qemu_pid);
	CHECK(fds_clean(g->src_fds, fds), "source QEMU fds changed:\n%s\nvs\n%s", g->src_fds,
	      fds ? fds : "");
	free(fds);
}

/* Stop the destination and check its RAM. */
static void check_dump(struct rig *g)
{
	uint8_t *ram = NULL;
	size_t len = 0;
	char why[256] = "";
	uint32_t pages = 0;

	CHECK(vm_qmp(&g->d, "stop") == 0, "stop destination");
	CHECK(vm_dump_ram(&g->d, &ram, &len) == 0, "dump destination RAM");
	if (!ram)
		return;
	if (g->d.cfg.guest == VM_BOOT) {
		CHECK(ramcheck_boot(ram, len, 256, BOOT_PAGES, why, sizeof(why), NULL) == 0,
		      "destination RAM: %s", why);
	} else {
		uint64_t run = vm_linux_run(&g->s, &pages), checked = 0;

		CHECK(ramcheck_linux(ram, len, run, pages, why, sizeof(why), &checked) == 0,
		      "destination RAM: %s", why);
		printf("destination RAM: %" PRIu64 " non-zero pages checked\n", checked);
	}
	free(ram);
}

/* wpmig-ctl migrate in the background (args after the fixed ones). */
static void migrate_bg(struct rig *g, const char *const *more)
{
	const char *ctl = getenv("WPMIG_CTL");
	const char *args[40] = { ctl ? ctl : "wpmig-ctl", "--socket", g->src.d.sock, "--json",
				 "migrate", "--qmp", g->s.qmp2_path, "--peer", g->listen,
				 "--dest-qmp", g->d.qmp2_path, "--dest-uri", g->uri };
	int n = 13;

	for (; more && *more; more++)
		args[n++] = *more;
	args[n] = NULL;
	snprintf(g->ctl_out, sizeof(g->ctl_out), "%s/ctl.out", g->dir);
	snprintf(g->ctl_err, sizeof(g->ctl_err), "%s/ctl.err", g->dir);
	g->ctl = fork();
	if (g->ctl == 0) {
		if (!freopen(g->ctl_out, "w", stdout) || !freopen(g->ctl_err, "w", stderr))
			_exit(127);
		execvp(args[0], (char *const *)args);
		_exit(127);
	}
}

static void migrate_wait(struct rig *g, struct migres *res)
{
	int st = 0;
	_cleanup_free_ char *out = NULL, *err = NULL;
	size_t n;

	waitpid(g->ctl, &st, 0);
	res->rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
	read_full_file(g->ctl_out, &out, &n);
	read_full_file(g->ctl_err, &err, &n);
	res->json = res->rc == 0 && out ? json_tokener_parse(out) : NULL;
	snprintf(res->err, sizeof(res->err), "%s", err ? err : "");
}

/* After a failure: the source runs on, correct and clean; the destination
 * was never resumed; the error names the step and the cause. */
static void check_failed(struct rig *g, const struct migres *res, const char *step,
			 const char *cause)
{
	char st[32] = "", bad[128], next[32], want[64];
	char *fds;

	printf("failed as expected? rc %d: %s", res->rc, res->err);
	snprintf(want, sizeof(want), "at step %s", step);
	CHECK(res->rc == 1, "migrate rc %d", res->rc);
	CHECK(strstr(res->err, want) && strstr(res->err, cause), "error '%s' lacks '%s' / '%s'",
	      res->err, want, cause);
	CHECK(vm_status(&g->s, st, sizeof(st)) == 0 && !strcmp(st, "running"), "source %s", st);
	snprintf(next, sizeof(next), "P %08lx", (unsigned long)vm_serial_progress(&g->s) + 2);
	CHECK(vm_wait_serial(&g->s, next, 0, 60000) == 0, "source guest runs on");
	CHECK(!vm_serial_bad(&g->s, bad, sizeof(bad)), "source guest: %s", bad);
	CHECK(proc_has_uffd_wp(g->s.qemu_pid) == 0, "source QEMU keeps uffd-wp VmFlags");
	fds = proc_fds(g->s.qemu_pid);
	CHECK(fds_clean(g->src_fds, fds), "source QEMU fds changed:\n%s\nvs\n%s", g->src_fds,
	      fds ? fds : "");
	free(fds);
	if (g->d.pid > 0 && vm_status(&g->d, st, sizeof(st)) == 0)
		CHECK(strcmp(st, "running") != 0, "destination was resumed (%s)", st);
}

static struct rig *rig_loopback(enum vm_mem smem, enum vm_mem dmem, uint64_t dst_mib)
{
	static struct rig g;
	struct vm_config dc;

	memset(&g, 0, sizeof(g));
	rig_daemons(&g, "127.0.0.1");
	dc = guest(&g, "dst", dmem, true);
	if (dst_mib)
		dc.mem_mib = dst_mib;
	rig_vms(&g, guest(&g, "src", smem, false), dc);
	return &g;
}

/* Does status on d list a migration of role? */
static bool status_shows(struct pd *p, const char *role)
{
	char *out = NULL;
	bool found;

	if (CTL(&p->d, &out, NULL, "status") != 0) {
		free(out);
		return false;
	}
	found = strstr(out, role) != NULL;
	free(out);
	return found;
}

static void test_kinds(enum vm_mem smem, enum vm_mem dmem)
{
	struct rig *g = rig_loopback(smem, dmem, 0);
	struct migres res = { 0 };

	migrate(g, &res, NULL);
	check_arrived(g, &res);
	if (res.rc == 0)
		check_dump(g);
	json_object_put(res.json);
	rig_free(g);
}

static void test_memfd(void)
{
	test_kinds(VM_MEM_MEMFD, VM_MEM_MEMFD);
}

static void test_file(void)
{
	test_kinds(VM_MEM_FILE, VM_MEM_MEMFD);
}

/* The Linux guest, memfd to file, with the balloon inflated mid-pre-copy. */
static void test_linux(void)
{
	static struct rig g;
	struct vm_config sc, dc;
	struct migres res = { 0 };
	char initrd[256];
	json_object *bal = NULL;

	vm_require(VM_LINUX, false);
	rig_daemons(&g, "127.0.0.1");
	if (vm_build_initrd(g.dir, initrd, sizeof(initrd)) < 0)
		SKIP("cannot build the initramfs");
	sc = (struct vm_config){ .guest = VM_LINUX, .mem = VM_MEM_MEMFD, .mem_mib = 256,
				 .dir = g.dir, .name = "src", .mc_mib = 96, .mc_hot = 2048,
				 .initrd = initrd, .balloon = true, .qmp2_dir = g.dir };
	dc = sc;
	dc.name = "dst";
	dc.mem = VM_MEM_FILE;
	dc.incoming = g.uri;
	dc.qmp2_dir = g.in_dir;
	rig_vms(&g, sc, dc);
	migrate_bg(&g, (const char *const[]){ "--max-bandwidth", "8M", NULL });
	usleep(1500000);
	/* Inflate: the guest gives 48 MiB back; QEMU discards them. */
	CHECK(qmp_executev(g.s.qmp, "balloon", 10000, NULL, NULL, "value",
			   json_object_new_int64(208ll << 20), NULL) == 0, "balloon");
	migrate_wait(&g, &res);
	check_arrived(&g, &res);
	if (res.rc)
		return;
	CHECK(qmp_execute(g.d.qmp, "query-balloon", NULL, 10000, &bal, NULL) == 0 &&
	      vm_jnum(bal, "actual") < 256.0 * 1048576, "destination balloon %.0f", vm_jnum(bal, "actual"));
	json_object_put(bal);
	check_dump(&g);
	json_object_put(res.json);
	rig_free(&g);
}

/* The source guest reboots (system_reset) during pre-copy. */
static void test_reboot(void)
{
	struct rig *g = rig_loopback(VM_MEM_MEMFD, VM_MEM_MEMFD, 0);
	struct migres res = { 0 };

	/* Slow passes, a bounded number of them: the reset lands in pre-copy. */
	migrate_bg(g, (const char *const[]){ "--max-bandwidth", "150K", "--max-iterations", "4",
					     "--force-switchover", NULL });
	usleep(1000000);
	CHECK(vm_qmp(&g->s, "system_reset") == 0, "system_reset");
	migrate_wait(g, &res);
	check_arrived(g, &res);
	if (res.rc == 0)
		check_dump(g);
	json_object_put(res.json);
	rig_free(g);
}

/* Two hosts: network namespaces joined by a veth pair. */
static void test_netns(void)
{
	static struct rig g;
	int id = getpid() % 200 + 20;
	char a[32], b[32], host[32];
	struct migres res = { 0 };

	snprintf(a, sizeof(a), "wpmig-qd-%d", id);
	snprintf(b, sizeof(b), "wpmig-qs-%d", id);
	if (vm_sh("ip netns add %s 2>/dev/null && ip netns add %s", a, b) != 0) {
		vm_sh("ip netns del %s 2>/dev/null", a);
		SKIP("cannot create network namespaces");
	}
	if (vm_sh("ip link add wqd%d type veth peer name wqs%d && ip link set wqd%d netns %s && "
	       "ip link set wqs%d netns %s && ip -n %s addr add 10.212.%d.1/24 dev wqd%d && "
	       "ip -n %s link set wqd%d up && ip -n %s link set lo up && "
	       "ip -n %s addr add 10.212.%d.2/24 dev wqs%d && ip -n %s link set wqs%d up && "
	       "ip -n %s link set lo up", id, id, id, a, id, b, a, id, id, a, id, a, b, id, id, b,
	       id, b) != 0) {
		vm_sh("ip netns del %s; ip netns del %s", a, b);
		SKIP("cannot set up the veth pair");
	}
	memset(&g, 0, sizeof(g));
	g.netns_dst = a;
	g.netns_src = b;
	snprintf(host, sizeof(host), "10.212.%d.1", id);
	rig_daemons(&g, host);
	rig_vms(&g, guest(&g, "src", VM_MEM_MEMFD, false), guest(&g, "dst", VM_MEM_FILE, true));
	migrate(&g, &res, NULL);
	check_arrived(&g, &res);
	if (res.rc == 0)
		check_dump(&g);
	json_object_put(res.json);
	rig_free(&g);
	vm_sh("ip netns del %s; ip netns del %s", a, b);
}

static void test_peer_killed(void)
{
	struct rig *g = rig_loopback(VM_MEM_MEMFD, VM_MEM_MEMFD, 0);
	struct migres res = { 0 };

	migrate_bg(g, (const char *const[]){ "--max-bandwidth", "100K", NULL });
	usleep(1500000);
	kill(g->dst.d.pid, SIGKILL);
	waitpid(g->dst.d.pid, NULL, 0);
	g->dst.d.pid = 0;
	migrate_wait(g, &res);
	check_failed(g, &res, "pre-copy", "");
	rig_free(g);
}

static void test_link_cut(void)
{
	struct rig *g = rig_loopback(VM_MEM_MEMFD, VM_MEM_MEMFD, 0);
	struct migres res = { 0 };
	struct proxy x;
	char via[64];

	snprintf(via, sizeof(via), "127.0.0.1:%d", free_port());
	if (proxy_start(&x, via, g->listen, "drop=100000-200000,conns=8") < 0)
		SKIP("cannot start the fault proxy");
	snprintf(g->listen, sizeof(g->listen), "%s", via);
	migrate(g, &res, (const char *const[]){ "--max-bandwidth", "1M", NULL });
	check_failed(g, &res, "pre-copy", "");
	proxy_stop(&x);
	rig_free(g);
}

static void test_dest_killed(void)
{
	struct rig *g = rig_loopback(VM_MEM_MEMFD, VM_MEM_MEMFD, 0);
	struct migres res = { 0 };

	migrate_bg(g, (const char *const[]){ "--max-bandwidth", "100K", NULL });
	usleep(1500000);
	vm_kill(&g->d);
	migrate_wait(g, &res);
	check_failed(g, &res, "pre-copy", "destination QEMU");
	rig_free(g);
}

static void test_wrong_size(void)
{
	struct rig *g = rig_loopback(VM_MEM_MEMFD, VM_MEM_MEMFD, BOOT_MIB * 2);
	struct migres res = { 0 };

	migrate(g, &res, NULL);
	check_failed(g, &res, "pre-copy", "size=128M");
	rig_free(g);
}

static void test_not_shared(void)
{
	struct rig *g = rig_loopback(VM_MEM_PRIVATE, VM_MEM_MEMFD, 0);
	struct migres res = { 0 };

	migrate(g, &res, NULL);
	check_failed(g, &res, "refused", "share=off");
	rig_free(g);
}

static void test_vfio(void)
{
	static struct rig g;
	struct vm_config sc;
	struct migres res = { 0 };

	memset(&g, 0, sizeof(g));
	rig_daemons(&g, "127.0.0.1");
	sc = guest(&g, "src", VM_MEM_MEMFD, false);
	sc.fake_vfio = true;
	rig_vms(&g, sc, guest(&g, "dst", VM_MEM_MEMFD, true));
	migrate(&g, &res, NULL);
	check_failed(&g, &res, "refused", "VFIO");
	rig_free(&g);
}

/* The guest dirties faster than the capped link can move: give up. */
static void test_max_iterations(void)
{
	struct rig *g = rig_loopback(VM_MEM_MEMFD, VM_MEM_MEMFD, 0);
	struct migres res = { 0 };

	bool src_seen = false, dst_seen = false;

	migrate_bg(g, (const char *const[]){ "--max-iterations", "3", "--downtime-ms", "1",
					     "--max-bandwidth", "200K", NULL });
	/* Meanwhile status shows it on both daemons. */
	for (int i = 0; i < 400 && !(src_seen && dst_seen) && waitpid(g->ctl, NULL, WNOHANG) == 0;
	     i++) {
		src_seen |= status_shows(&g->src, "migration (source)");
		dst_seen |= status_shows(&g->dst, "migration (destination)");
		usleep(25000);
	}
	CHECK(src_seen && dst_seen, "status showed the migration: source %d destination %d",
	      src_seen, dst_seen);
	migrate_wait(g, &res);
	check_failed(g, &res, "pre-copy", "did not converge in 3 passes");
	rig_free(g);
}

/* The same guest under KVM: writes through KVM's second-level page tables
 * must be tracked exactly. */
static void test_kvm(void)
{
	struct rig *g;
	struct migres res = { 0 };

	vm_require(VM_BOOT, true);
	memset(&res, 0, sizeof(res));
	g = rig_loopback(VM_MEM_MEMFD, VM_MEM_MEMFD, 0);
	(void)g; /* rig_loopback made TCG guests: redo them with KVM */
	vm_kill(&g->s);
	vm_kill(&g->d);
	struct vm_config sc = guest(g, "srck", VM_MEM_MEMFD, false),
			 dc = guest(g, "dstk", VM_MEM_MEMFD, true);
	sc.kvm = dc.kvm = true;
	sc.mem_mib = dc.mem_mib = 64;
	sc.boot_pages = dc.boot_pages = 8192;
	rig_vms(g, sc, dc);
	migrate(g, &res, NULL);
	check_arrived(g, &res);
	json_object_put(res.json);
	rig_free(g);
}

static const struct subtest tests[] = {
	{ "memfd", test_memfd },
	{ "file", test_file },
	{ "linux", test_linux },
	{ "reboot", test_reboot },
	{ "netns", test_netns },
	{ "peer-killed", test_peer_killed },
	{ "link-cut", test_link_cut },
	{ "dest-killed", test_dest_killed },
	{ "wrong-size", test_wrong_size },
	{ "not-shared", test_not_shared },
	{ "vfio", test_vfio },
	{ "max-iterations", test_max_iterations },
	{ "kvm", test_kvm },
};

int main(int argc, char **argv)
{
	vm_require(VM_BOOT, false);
	require_tracking();
	return run_subtests(argc, argv, tests, ARRAY_SIZE(tests));
}
