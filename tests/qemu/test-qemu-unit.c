// SPDX-License-Identifier: GPL-2.0-only
/*
 * The QMP client and RAM backend discovery against a real QEMU (TCG), and
 * the two guests with their RAM-dump checkers (suite 'qemu').
 *
 *   test-qemu-unit qmp | backend-file | backend-memfd | refusals | boot-check | linux-check
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "basic/util.h"
#include "qemu/backend.h"
#include "guest-pages.h"
#include "harness.h"
#include "vm.h"

static char dir[] = "/tmp/wpmig-qemu-unit-XXXXXX";

static struct vm_config boot_cfg(const char *name, enum vm_mem mem)
{
	return (struct vm_config){ .guest = VM_BOOT, .mem = mem, .mem_mib = 128, .dir = dir,
				   .name = name, .boot_pages = 8192 };
}

static void start_or_die(const struct vm_config *c, struct vm *vm)
{
	if (vm_start(c, vm) < 0) {
		fprintf(stderr, "FAIL: QEMU %s did not start\n", c->name);
		exit(1);
	}
}

static void test_qmp(void)
{
	struct vm_config c = boot_cfg("qmp", VM_MEM_FILE);
	struct qmp_event *e = NULL;
	struct qmp_error err;
	struct vm vm;
	char st[32], comm[64] = "", path[64];
	_cleanup_free_ char *commtext = NULL;
	size_t n;
	uint64_t t0;
	int r;

	start_or_die(&c, &vm);
	CHECK(vm.qemu_pid > 0 && qmp_version(vm.qmp) >= 70000, "pid %d version %u",
	      (int)vm.qemu_pid, qmp_version(vm.qmp));
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)vm.qemu_pid);
	if (read_full_file(path, &commtext, &n) == 0)
		snprintf(comm, sizeof(comm), "%s", commtext);
	CHECK(strncmp(comm, "qemu-system", 11) == 0, "SO_PEERCRED PID %d is '%s'",
	      (int)vm.qemu_pid, comm);
	CHECK(vm_status(&vm, st, sizeof(st)) == 0 && strcmp(st, "running") == 0, "status %s", st);
	r = qmp_execute(vm.qmp, "no-such-command", NULL, 5000, NULL, &err);
	CHECK(r == -EREMOTEIO && strcmp(err.class, "CommandNotFound") == 0, "r %d class %s", r,
	      err.class);
	/* An event that arrives while a command waits is queued, not lost. */
	CHECK(vm_qmp(&vm, "stop") == 0, "stop");
	CHECK(vm_status(&vm, st, sizeof(st)) == 0 && strcmp(st, "paused") == 0, "status %s", st);
	r = qmp_wait_event(vm.qmp, "STOP", 0, &e);
	CHECK(r == 0 && e && e->qemu_us > 0, "STOP queued: %d", r);
	qmp_event_free(e);
	CHECK(vm_qmp(&vm, "cont") == 0, "cont");
	r = qmp_wait_event(vm.qmp, "RESUME", 5000, &e);
	CHECK(r == 0, "RESUME: %d", r);
	qmp_event_free(e);
	t0 = now_ns();
	r = qmp_wait_event(vm.qmp, "NO_SUCH_EVENT", 300, &e);
	CHECK(r == -ETIMEDOUT && now_ns() - t0 >= 290000000ull, "timeout: %d after %.0f ms", r,
	      ns_to_ms(now_ns() - t0));
	/* Arguments, and an error with its description. */
	r = qmp_executev(vm.qmp, "qom-get", 5000, NULL, &err, "path",
			 json_object_new_string("/objects/ram0"), "property",
			 json_object_new_string("no-such-property"), NULL);
	CHECK(r == -EREMOTEIO && strstr(err.desc, "no-such-property"), "r %d desc %s", r, err.desc);
	/* QEMU gone: the next command says so, promptly. */
	kill(vm.qemu_pid, SIGKILL);
	t0 = now_ns();
	r = qmp_execute(vm.qmp, "query-status", NULL, 10000, NULL, NULL);
	CHECK(r == -ECONNRESET && now_ns() - t0 < 5000000000ull, "after kill: %d", r);
	vm_kill(&vm);
	/* No QEMU at all. */
	r = qmp_open("/tmp/wpmig-no-such-qmp.sock", 1000, &vm.qmp);
	CHECK(r == -ENOENT, "open missing socket: %d", r);
}

static void test_backend(enum vm_mem mem)
{
	struct vm_config c = boot_cfg("be", mem);
	struct qemu_ram ram;
	struct vm vm;
	char why[512] = "";
	_cleanup_close_ int fd = -1;
	uint32_t w0 = 0;
	long progress;

	start_or_die(&c, &vm);
	CHECK(vm_wait_serial(&vm, "P 00000003", 0, 60000) == 0, "guest runs");
	CHECK(qemu_ram_discover(vm.qmp, 5000, &ram, NULL) == 0, "discover");
	CHECK(ram.n == 1 && ram.pid == vm.qemu_pid, "n %zu pid %d", ram.n, (int)ram.pid);
	CHECK(strcmp(ram.b[0].id, "ram0") == 0 && ram.b[0].share && ram.b[0].size == 128 << 20,
	      "id %s share %d size %" PRIu64, ram.b[0].id, ram.b[0].share, ram.b[0].size);
	CHECK(ram.b[0].kind == (mem == VM_MEM_FILE ? QEMU_BACKEND_FILE : QEMU_BACKEND_MEMFD),
	      "kind %s", qemu_backend_kind_name(ram.b[0].kind));
	CHECK(ram.b[0].start && ram.b[0].end - ram.b[0].start == ram.b[0].size && !ram.b[0].hugetlb,
	      "mapping %" PRIx64 "-%" PRIx64, ram.b[0].start, ram.b[0].end);
	if (mem == VM_MEM_FILE)
		CHECK(strcmp(ram.b[0].mem_path, vm.ram_path) == 0, "mem-path %s", ram.b[0].mem_path);
	CHECK(qemu_ram_refusal(vm.qmp, 5000, &ram, true, why, sizeof(why)) == 0, "refused: %s", why);
	CHECK(qemu_ram_find(&ram, "ram0") == &ram.b[0] && !qemu_ram_find(&ram, "x"), "find");
	/* The fd is QEMU's: what the guest wrote is there. */
	CHECK(qemu_backend_open(vm.qemu_pid, &ram.b[0], &fd) == 0, "open");
	CHECK(vm_qmp(&vm, "stop") == 0, "stop");
	progress = vm_serial_progress(&vm);
	CHECK(pread(fd, &w0, 4, 256 * 4096) == 4 && (long)w0 >= progress && (long)w0 <= progress + 1,
	      "page 0 counter %u, serial says %ld", w0, progress);
	vm_kill(&vm);
}

static void test_backend_file(void)
{
	test_backend(VM_MEM_FILE);
}

static void test_backend_memfd(void)
{
	test_backend(VM_MEM_MEMFD);
}

static void expect_refusal(struct vm_config c, const char *want, bool map_elsewhere)
{
	struct qemu_ram ram;
	struct vm vm;
	char why[512] = "", want_pid[32] = "";
	pid_t child = -1;
	int r;

	start_or_die(&c, &vm);
	CHECK(qemu_ram_discover(vm.qmp, 5000, &ram, NULL) == 0, "discover");
	if (map_elsewhere) { /* a "vhost-user backend": another process maps the file */
		int pipefd[2];
		char ok;

		CHECK(pipe(pipefd) == 0, "pipe");
		child = fork();
		if (child == 0) {
			int fd = -1;
			void *p;

			if (qemu_backend_open(vm.qemu_pid, &ram.b[0], &fd) < 0)
				_exit(1);
			p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
			if (write(pipefd[1], "x", 1) != 1 || p == MAP_FAILED)
				_exit(1);
			pause();
			_exit(0);
		}
		close(pipefd[1]);
		CHECK(read(pipefd[0], &ok, 1) == 1, "child mapped");
		close(pipefd[0]);
		snprintf(want_pid, sizeof(want_pid), "%d", (int)child);
	}
	r = qemu_ram_refusal(vm.qmp, 5000, &ram, true, why, sizeof(why));
	CHECK(r == -EOPNOTSUPP && strstr(why, want) && strstr(why, want_pid), "%s: r %d why '%s'",
	      want, r, why);
	printf("refused (%s): %s\n", c.name, why);
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	vm_kill(&vm);
}

static void test_refusals(void)
{
	struct vm_config c = boot_cfg("private", VM_MEM_PRIVATE);

	expect_refusal(c, "share=off", false);
	c = boot_cfg("plain", VM_MEM_PLAIN);
	expect_refusal(c, "anonymous memory", false);
	c = boot_cfg("mapped", VM_MEM_FILE);
	expect_refusal(c, "also mapped by process", true);
	c = boot_cfg("vfio", VM_MEM_MEMFD);
	c.fake_vfio = true;
	expect_refusal(c, "VFIO", false);
}

static void test_boot_check(void)
{
	struct vm_config c = boot_cfg("bc", VM_MEM_MEMFD);
	struct vm vm;
	uint8_t *ram = NULL;
	size_t len = 0;
	char why[256] = "";
	uint32_t counter = 0;

	start_or_die(&c, &vm);
	CHECK(vm_wait_serial(&vm, "P 00000005", 0, 60000) == 0, "guest runs");
	CHECK(vm_qmp(&vm, "stop") == 0, "stop");
	CHECK(vm_dump_ram(&vm, &ram, &len) == 0 && len == 128 << 20, "dump");
	CHECK(ramcheck_boot(ram, len, 256, 8192, why, sizeof(why), &counter) == 0, "%s", why);
	CHECK((long)counter >= vm_serial_progress(&vm), "counter %u serial %ld", counter,
	      vm_serial_progress(&vm));
	/* The checker fails on a stale page and on a stray byte. */
	ram[(256 + 4000) * 4096] -= 2;
	CHECK(ramcheck_boot(ram, len, 256, 8192, why, sizeof(why), NULL) < 0, "stale page passed");
	ram[(256 + 4000) * 4096] += 2;
	ram[(256 + 17) * 4096 + 100] = 1;
	CHECK(ramcheck_boot(ram, len, 256, 8192, why, sizeof(why), NULL) < 0, "stray byte passed");
	free(ram);
	/* The guest checks itself: a page changed behind its back is BAD. */
	CHECK(vm_qmp(&vm, "cont") == 0, "cont");
	vm_kill(&vm);
}

static void test_linux_check(void)
{
	struct vm_config c = { .guest = VM_LINUX, .mem = VM_MEM_FILE, .mem_mib = 256, .dir = dir,
			       .name = "lin", .mc_mib = 64, .mc_hot = 1024 };
	char initrd[512], why[256] = "", bad[128];
	struct vm vm;
	uint8_t *ram = NULL;
	size_t len = 0;
	uint64_t run, checked = 0;
	uint32_t pages = 0;

	vm_require(VM_LINUX, false);
	CHECK(vm_build_initrd(dir, initrd, sizeof(initrd)) == 0, "initramfs");
	c.initrd = initrd;
	start_or_die(&c, &vm);
	CHECK(vm_wait_serial(&vm, "OK 1\r\n", 0, 180000) == 0, "guest verified its memory once");
	CHECK(!vm_serial_bad(&vm, bad, sizeof(bad)), "guest says %s", bad);
	run = vm_linux_run(&vm, &pages);
	CHECK(vm_qmp(&vm, "stop") == 0, "stop");
	CHECK(vm_dump_ram(&vm, &ram, &len) == 0, "dump");
	CHECK(ramcheck_linux(ram, len, run, pages, why, sizeof(why), &checked) == 0, "%s", why);
	CHECK(checked > pages / 2, "checked %" PRIu64 " of %u pages", checked, pages);
	printf("linux guest: run %016" PRIx64 ", %u pages, %" PRIu64 " non-zero checked\n", run,
	       pages, checked);
	/* A stale, partly reused copy of a page beside its good copy passes;
	 * two pages whose bodies do not match their headers fail. */
	{
		size_t good[2] = { 0, 0 }, spare = 0, n = 0;
		uint8_t save[2][GP_PAGE];
		static const uint8_t zero[GP_PAGE];

		for (size_t off = 0; off + GP_PAGE <= len; off += GP_PAGE) {
			struct gp_hdr h;

			memcpy(&h, ram + off, sizeof(h));
			if (h.magic == GP_MAGIC_PAGE && h.run == run && n < 2)
				good[n++] = off;
			else if (!spare && off > 1 << 20 && !memcmp(ram + off, zero, GP_PAGE))
				spare = off;
		}
		CHECK(n == 2 && spare, "two pages of the run and a free frame in the dump");
		memcpy(ram + spare, ram + good[0], GP_PAGE);
		ram[spare + GP_PAGE - 1] ^= 0x5a;
		CHECK(ramcheck_linux(ram, len, run, pages, why, sizeof(why), NULL) == 0,
		      "a stale copy beside the good one failed: %s", why);
		memset(ram + spare, 0, GP_PAGE);
		for (int i = 0; i < 2; i++) {
			memcpy(save[i], ram + good[i], GP_PAGE);
			ram[good[i] + GP_PAGE - 1] ^= 0x5a;
		}
		CHECK(ramcheck_linux(ram, len, run, pages, why, sizeof(why), NULL) < 0,
		      "two damaged pages passed");
		printf("two damaged pages: %s\n", why);
		for (int i = 0; i < 2; i++)
			memcpy(ram + good[i], save[i], GP_PAGE);
	}
	/* Drop two pages from the dump: the checker must say so. */
	for (size_t off = 0, hit = 0; off < len && hit < 2; off += 4096) {
		struct gp_hdr h;

		memcpy(&h, ram + off, sizeof(h));
		if (h.magic == GP_MAGIC_PAGE && h.run == run) {
			memset(ram + off, 0, GP_PAGE);
			hit++;
		}
	}
	CHECK(ramcheck_linux(ram, len, run, pages, why, sizeof(why), NULL) < 0, "missing pages passed");
	free(ram);
	vm_kill(&vm);
}

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
	{ "qmp", test_qmp },
	{ "backend-file", test_backend_file },
	{ "backend-memfd", test_backend_memfd },
	{ "refusals", test_refusals },
	{ "boot-check", test_boot_check },
	{ "linux-check", test_linux_check },
};

int main(int argc, char **argv)
{
	int ran = 0;

	vm_require(VM_BOOT, false);
	if (!mkdtemp(dir))
		return 1;
	for (size_t i = 0; i < ARRAY_SIZE(tests); i++) {
		if (argc > 1 && strcmp(argv[1], tests[i].name) != 0)
			continue;
		printf("== %s\n", tests[i].name);
		tests[i].fn();
		ran++;
	}
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		(void)!system(cmd);
	}
	if (!ran) {
		fprintf(stderr, "no test named %s\n", argv[1]);
		return 2;
	}
	printf("%s\n", test_failures ? "FAILED" : "ok");
	return test_failures ? 1 : 0;
}
