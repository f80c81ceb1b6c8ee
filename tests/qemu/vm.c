// SPDX-License-Identifier: GPL-2.0-only
/* QEMU guests for the tests and the benchmark (vm.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "basic/util.h"
#include "qemu/backend.h"
#include "vm.h"

#define BOOT_PARAM_OFF 0x1e0
#define MAX_ARGS 64

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);

	return v && *v ? v : def;
}

static const char *kernel_cache(void)
{
	return env_or("WPMIG_KERNEL_CACHE", "/var/cache/wpmig-kernel");
}

void vm_require(enum vm_guest guest, bool kvm)
{
	char path[512];

	if (system("command -v qemu-system-x86_64 >/dev/null 2>&1") != 0) {
		fprintf(stderr, "SKIP: no qemu-system-x86_64 (tests/install-deps.sh installs it)\n");
		exit(77);
	}
	if (kvm && access("/dev/kvm", R_OK | W_OK) != 0) {
		fprintf(stderr, "SKIP: no /dev/kvm\n");
		exit(77);
	}
	snprintf(path, sizeof(path), "%s/vmlinuz", kernel_cache());
	if (guest == VM_LINUX && access(path, R_OK) != 0) {
		fprintf(stderr, "SKIP: no guest kernel at %s (tests/qemu/get-kernel.sh)\n", path);
		exit(77);
	}
}

static int run_wait(char *const argv[])
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) < 0)
		return -errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int vm_build_initrd(const char *dir, char *out, size_t len)
{
	char cache[512];
	int r;

	snprintf(out, len, "%s/initrd.gz", dir);
	snprintf(cache, sizeof(cache), "%s", kernel_cache());
	r = run_wait((char *const[]){ (char *)env_or("WPMIG_MKINITRAMFS", "mkinitramfs.sh"),
				      out, (char *)env_or("WPMIG_GUEST_MEMCHECK", "guest-memcheck"),
				      cache, NULL });
	return r == 0 ? 0 : -EIO;
}

/* The boot image with the range patched into its parameter block. */
static int boot_image(const struct vm_config *c, char *out, size_t len)
{
	uint8_t img[512];
	uint32_t params[3] = { c->boot_first ? c->boot_first : 256,
			       c->boot_pages ? c->boot_pages : 16384, c->boot_delay };
	_cleanup_close_ int in = open(env_or("WPMIG_GUEST_BOOT", "guest-boot.img"), O_RDONLY);
	_cleanup_close_ int fd = -1;

	if (in < 0 || read(in, img, sizeof(img)) != (ssize_t)sizeof(img) ||
	    memcmp(img + BOOT_PARAM_OFF, "WPMG", 4) != 0)
		return -ENOENT;
	memcpy(img + BOOT_PARAM_OFF + 4, params, sizeof(params));
	snprintf(out, len, "%s/%s-boot.img", c->dir, c->name);
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, img, sizeof(img)) != (ssize_t)sizeof(img))
		return -EIO;
	return 0;
}

struct argv {
	char *a[MAX_ARGS];
	int n;
};

static void add(struct argv *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct argv *v, const char *fmt, ...)
{
	va_list ap;

	if (v->n >= MAX_ARGS - 1)
		abort();
	va_start(ap, fmt);
	if (vasprintf(&v->a[v->n], fmt, ap) < 0)
		abort();
	va_end(ap);
	v->a[++v->n] = NULL;
}

static void free_argv(struct argv *v)
{
	for (int i = 0; i < v->n; i++)
		free(v->a[i]);
}

/* -object/-machine for the RAM, by kind. */
static void add_memory(struct argv *v, const struct vm *vm, uint64_t mib)
{
	const struct vm_config *c = &vm->cfg;
	const char *accel = c->kvm ? "kvm" : "tcg";
	const char *id = c->ram_id ? c->ram_id : "ram0";

	add(v, "-m");
	add(v, "%" PRIu64 "M", mib);
	add(v, "-machine");
	if (c->mem == VM_MEM_PLAIN) {
		add(v, "pc,accel=%s", accel);
		return;
	}
	add(v, "pc,accel=%s,memory-backend=%s", accel, id);
	add(v, "-object");
	if (c->mem == VM_MEM_MEMFD)
		add(v, "memory-backend-memfd,id=%s,size=%" PRIu64 "M,share=on", id, mib);
	else
		add(v, "memory-backend-file,id=%s,size=%" PRIu64 "M,mem-path=%s,share=%s", id, mib,
		    vm->ram_path, c->mem == VM_MEM_FILE ? "on" : "off");
}

static int build_argv(struct vm *vm, struct argv *v)
{
	const struct vm_config *c = &vm->cfg;
	char img[512];
	int r;

	if (c->netns) {
		add(v, "ip");
		add(v, "netns");
		add(v, "exec");
		add(v, "%s", c->netns);
	}
	if (c->fake_vfio) {
		/* A private mount namespace whose /dev holds vfio/42, open as fd 9:
		 * what QEMU with an assigned device looks like from /proc. */
		add(v, "unshare");
		add(v, "-m");
		add(v, "--propagation=private");
		add(v, "sh");
		add(v, "-c");
		add(v, "d=$(mktemp -d) && mount --rbind /dev $d && mount -t tmpfs none /dev && "
		       "for n in null zero urandom random shm; do ln -s $d/$n /dev/$n; done && "
		       "mkdir /dev/vfio && : > /dev/vfio/42 && exec 9<>/dev/vfio/42 && exec \"$@\"");
		add(v, "sh");
	}
	add(v, "qemu-system-x86_64");
	add_memory(v, vm, c->mem_mib ? c->mem_mib : 256);
	add(v, "-nodefaults");
	add(v, "-no-user-config");
	add(v, "-display");
	add(v, "none");
	add(v, "-serial");
	add(v, "file:%s", vm->serial_path);
	add(v, "-qmp");
	add(v, "unix:%s,server=on,wait=off", vm->qmp_path);
	if (vm->qmp2_path[0]) {
		add(v, "-qmp");
		add(v, "unix:%s,server=on,wait=off", vm->qmp2_path);
	}
	if (c->guest == VM_BOOT) {
		r = boot_image(c, img, sizeof(img));
		if (r < 0)
			return r;
		add(v, "-drive");
		add(v, "file=%s,format=raw,if=ide", img);
	} else {
		add(v, "-kernel");
		add(v, "%s/vmlinuz", kernel_cache());
		add(v, "-initrd");
		add(v, "%s", c->initrd);
		add(v, "-append");
		add(v, "console=ttyS0 quiet panic=-1 mc_mb=%u mc_hot=%u mc_delay=%u", c->mc_mib,
		    c->mc_hot, c->mc_delay);
		add(v, "-no-reboot");
	}
	if (c->disk) {
		add(v, "-drive");
		add(v, "file=%s,format=qcow2,if=none,id=disk0", c->disk);
	}
	if (c->balloon) {
		add(v, "-device");
		add(v, "virtio-balloon-pci,id=balloon0");
	}
	if (c->paused)
		add(v, "-S");
	if (c->incoming) {
		add(v, "-incoming");
		add(v, "%s", c->incoming);
	}
	return 0;
}

/* Wait for path to appear (inotify on its directory) while pid lives. */
static int wait_path(const char *dir, const char *path, pid_t pid, int timeout_ms)
{
	_cleanup_close_ int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	if (in < 0 || inotify_add_watch(in, dir, IN_CREATE | IN_MOVED_TO) < 0)
		return -errno;
	while (access(path, F_OK) != 0) {
		struct pollfd p = { .fd = in, .events = POLLIN };
		char buf[4096];

		if (waitpid(pid, NULL, WNOHANG) == pid)
			return -ECHILD;
		if (now_ns() >= deadline)
			return -ETIMEDOUT;
		/* Wake at least every 200 ms to notice QEMU exiting early. */
		if (poll(&p, 1, 200) > 0)
			while (read(in, buf, sizeof(buf)) > 0)
				;
	}
	return 0;
}

int vm_start(const struct vm_config *cfg, struct vm *vm)
{
	struct argv v = { .n = 0 };
	int r, log;

	memset(vm, 0, sizeof(*vm));
	vm->cfg = *cfg;
	vm->pid = -1;
	snprintf(vm->qmp_path, sizeof(vm->qmp_path), "%s/%s-test.qmp", cfg->dir, cfg->name);
	snprintf(vm->serial_path, sizeof(vm->serial_path), "%s/%s.serial", cfg->dir, cfg->name);
	snprintf(vm->log_path, sizeof(vm->log_path), "%s/%s.log", cfg->dir, cfg->name);
	if (cfg->qmp2_dir)
		snprintf(vm->qmp2_path, sizeof(vm->qmp2_path), "%s/%s.qmp", cfg->qmp2_dir, cfg->name);
	snprintf(vm->ram_path, sizeof(vm->ram_path), "/dev/shm/wpmig-test-%d-%s-%lx", (int)getpid(),
		 cfg->name, (unsigned long)(now_ns() & 0xffffff));
	if (cfg->ram_file)
		snprintf(vm->ram_path, sizeof(vm->ram_path), "%s", cfg->ram_file);
	/* A socket left by an earlier QEMU of that name would be found first. */
	unlink(vm->qmp_path);
	if (vm->qmp2_path[0])
		unlink(vm->qmp2_path);
	r = build_argv(vm, &v);
	if (r < 0)
		goto out;
	log = open(vm->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	pid_t parent = getpid();
	vm->pid = fork();
	if (vm->pid == 0) {
		/* A test or benchmark that dies takes its QEMU with it. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(127);
		dup2(log, 1);
		dup2(log, 2);
		execvp(v.a[0], v.a);
		_exit(127);
	}
	close(log);
	r = vm->pid < 0 ? -errno : wait_path(cfg->dir, vm->qmp_path, vm->pid, 30000);
	/* The socket file appears at bind(), a moment before listen(). */
	for (int tries = 0; r == 0; tries++) {
		r = qmp_open(vm->qmp_path, 30000, &vm->qmp);
		if ((r != -ECONNREFUSED && r != -ENOENT) || tries == 500)
			break;
		r = 0;
		usleep(10000);
	}
	if (r == 0)
		vm->qemu_pid = qmp_pid(vm->qmp);
out:
	free_argv(&v);
	if (r < 0) {
		char *l = NULL;
		size_t n;

		if (read_full_file(vm->log_path, &l, &n) == 0)
			fprintf(stderr, "qemu %s failed to start (%s):\n%s", cfg->name, strerror(-r), l);
		free(l);
		vm_kill(vm);
	}
	return r;
}

void vm_kill(struct vm *vm)
{
	if (vm->pid > 0) {
		if (vm->qemu_pid > 0)
			kill(vm->qemu_pid, SIGKILL);
		kill(vm->pid, SIGKILL);
		waitpid(vm->pid, NULL, 0);
		vm->pid = -1;
	}
	qmp_close(vm->qmp);
	vm->qmp = NULL;
	if (vm->ram_path[0])
		unlink(vm->ram_path);
}

char *vm_serial(const struct vm *vm, size_t *len)
{
	char *s = NULL;
	size_t n = 0;

	if (read_full_file(vm->serial_path, &s, &n) < 0) {
		s = strdup("");
		n = 0;
	}
	if (len)
		*len = n;
	return s;
}

int vm_wait_serial(const struct vm *vm, const char *needle, size_t from, int timeout_ms)
{
	_cleanup_close_ int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	if (in < 0 || inotify_add_watch(in, vm->serial_path, IN_MODIFY) < 0)
		return -errno;
	for (;;) {
		struct pollfd p = { .fd = in, .events = POLLIN };
		size_t n;
		_cleanup_free_ char *s = vm_serial(vm, &n);
		char buf[4096];

		if (n > from && memmem(s + from, n - from, needle, strlen(needle)))
			return 0;
		if (now_ns() >= deadline)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)((deadline - now_ns()) / 1000000) + 1) > 0)
			while (read(in, buf, sizeof(buf)) > 0)
				;
	}
}

bool vm_serial_bad(const struct vm *vm, char *buf, size_t len)
{
	_cleanup_free_ char *s = vm_serial(vm, NULL);
	char *b = strstr(s, "BAD");

	if (!b)
		return false;
	snprintf(buf, len, "%.*s", (int)strcspn(b, "\n"), b);
	return true;
}

long vm_serial_progress(const struct vm *vm)
{
	_cleanup_free_ char *s = vm_serial(vm, NULL);
	const char *tag = vm->cfg.guest == VM_BOOT ? "\nP " : "\nOK ";
	char *last = NULL;

	/* Complete lines only: the guest may be stopped halfway through one. */
	for (char *p = strstr(s, tag); p; p = strstr(p + 1, tag))
		if (strchr(p + 1, '\n'))
			last = p;
	if (!last)
		return -1;
	return strtol(last + strlen(tag), NULL, vm->cfg.guest == VM_BOOT ? 16 : 10);
}

uint64_t vm_linux_run(const struct vm *vm, uint32_t *pages)
{
	_cleanup_free_ char *s = vm_serial(vm, NULL);
	char *p = strstr(s, "RUN "), *n = p ? strstr(p, "PAGES ") : NULL;

	if (pages)
		*pages = n ? (uint32_t)strtoul(n + 6, NULL, 10) : 0;
	return p ? strtoull(p + 4, NULL, 16) : 0;
}

int vm_qmp(struct vm *vm, const char *cmd)
{
	struct qmp_error e;
	int r = qmp_execute(vm->qmp, cmd, NULL, 10000, NULL, &e);

	if (r == -EREMOTEIO)
		fprintf(stderr, "qmp %s on %s: %s: %s\n", cmd, vm->cfg.name, e.class, e.desc);
	return r;
}

int vm_status(struct vm *vm, char *buf, size_t len)
{
	json_object *st = NULL;
	int r = qmp_execute(vm->qmp, "query-status", NULL, 10000, &st, NULL);

	if (r < 0)
		return r;
	snprintf(buf, len, "%s", qmp_str(st, "status") ? qmp_str(st, "status") : "?");
	json_object_put(st);
	return 0;
}

int vm_dump_ram(struct vm *vm, uint8_t **ret, size_t *len)
{
	struct qemu_ram ram;
	_cleanup_close_ int fd = -1;
	uint8_t *buf;
	size_t size, done = 0;
	int r = qemu_ram_discover(vm->qmp, 10000, &ram, NULL);

	if (r < 0)
		return r;
	if (ram.n == 0 || !ram.b[0].start)
		return -ENOENT;
	r = qemu_backend_open(ram.pid, &ram.b[0], &fd);
	if (r < 0)
		return r;
	size = ram.b[0].size;
	buf = malloc(size);
	if (!buf)
		return -ENOMEM;
	while (done < size) {
		ssize_t n = pread(fd, buf + done, size - done, (off_t)done);

		if (n <= 0) {
			free(buf);
			return n < 0 ? -errno : -EIO;
		}
		done += (size_t)n;
	}
	*ret = buf;
	*len = size;
	return 0;
}

int vm_sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

double vm_jnum(json_object *o, const char *k)
{
	json_object *v;

	return o && json_object_object_get_ex(o, k, &v) ? json_object_get_double(v) : -1;
}

int64_t vm_event_us(struct vm *vm, const char *name, int64_t since_us, int timeout_ms)
{
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
	int64_t us = 0;

	while (!us) {
		struct qmp_event *e = NULL;
		uint64_t now = now_ns();

		if (now >= deadline || qmp_wait_event(vm->qmp, name,
						      (int)((deadline - now) / 1000000) + 1, &e) < 0)
			break;
		if (e->qemu_us >= since_us)
			us = e->qemu_us;
		qmp_event_free(e);
	}
	return us;
}

int vm_set_caps(struct vm *vm, const char *const *caps, bool on, struct qmp_error *err)
{
	json_object *list = json_object_new_array();

	for (; *caps; caps++) {
		json_object *c = json_object_new_object();

		json_object_object_add(c, "capability", json_object_new_string(*caps));
		json_object_object_add(c, "state", json_object_new_boolean(on));
		json_object_array_add(list, c);
	}
	return qmp_executev(vm->qmp, "migrate-set-capabilities", 10000, NULL, err,
			    "capabilities", list, NULL);
}

int vm_wait_migration(struct vm *vm, int timeout_ms, char *buf, size_t len, int64_t *at_us)
{
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	for (;;) {
		struct qmp_event *e = NULL;
		uint64_t now = now_ns();
		int r = now < deadline ? qmp_wait_event(vm->qmp, "MIGRATION",
							(int)((deadline - now) / 1000000) + 1, &e)
				       : -ETIMEDOUT;
		const char *s = r == 0 ? qmp_str(e->data, "status") : NULL;
		bool end = s && (!strcmp(s, "completed") || !strcmp(s, "failed") ||
				 !strcmp(s, "cancelled"));

		if (end) {
			snprintf(buf, len, "%s", s);
			*at_us = e->qemu_us;
		}
		qmp_event_free(e);
		if (r < 0 || end)
			return r;
	}
}

int vm_hmp(struct vm *vm, const char *line, int timeout_ms, char *out, size_t len)
{
	json_object *ret = NULL;
	struct qmp_error e = { "", "" };
	int r = qmp_executev(vm->qmp, "human-monitor-command", timeout_ms, &ret, &e,
			     "command-line", json_object_new_string(line), NULL);

	if (r == -EREMOTEIO)
		snprintf(out, len, "%s", e.desc);
	else
		snprintf(out, len, "%s", r == 0 && ret ? json_object_get_string(ret) : "");
	json_object_put(ret);
	return r;
}
