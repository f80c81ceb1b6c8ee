/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * QEMU guests for the tests and the benchmark: start a QEMU (TCG unless
 * told otherwise) with its RAM in a memory backend, a QMP socket and the
 * serial port captured in a file; wait for serial output; dump and check
 * guest RAM.  Two guests (tests/qemu/guest-boot.S, guest-memcheck.c):
 *
 *   VM_BOOT   the boot-sector guest rewriting a counter in every page of a
 *             range ("P <pass>" lines; "BAD <address>" on a wrong page)
 *   VM_LINUX  Debian's kernel + an initramfs with guest-memcheck ("OK n",
 *             "BAD ..." lines)
 *
 * Programs and files come from the environment meson sets: WPMIG_GUEST_BOOT
 * (the boot image), WPMIG_GUEST_MEMCHECK, WPMIG_MKINITRAMFS, and the
 * kernel cache WPMIG_KERNEL_CACHE (default /var/cache/wpmig-kernel, filled
 * by tests/qemu/get-kernel.sh from tests/install-deps.sh).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "qemu/qmp.h"

enum vm_guest { VM_BOOT, VM_LINUX };

enum vm_mem {
	VM_MEM_FILE,     /* memory-backend-file on /dev/shm, share=on */
	VM_MEM_MEMFD,    /* memory-backend-memfd, share=on */
	VM_MEM_PRIVATE,  /* memory-backend-file, share=off */
	VM_MEM_PLAIN,    /* plain -m: no backend object */
};

struct vm_config {
	enum vm_guest guest;
	enum vm_mem mem;
	uint64_t mem_mib;    /* guest RAM (default 256) */
	const char *dir;     /* where sockets, serial log and RAM files go */
	const char *name;    /* "src", "dst": file names in dir */
	const char *incoming;/* NULL, "defer" or a URI for -incoming */
	bool paused;         /* -S */
	bool kvm;            /* accel=kvm instead of tcg */
	bool balloon;        /* a virtio-balloon-pci device */
	bool fake_vfio;      /* QEMU holds an fd of /dev/vfio/N (private mount namespace) */
	const char *netns;   /* run inside this network namespace */
	/* VM_BOOT: the page range rewritten and a busy delay per page. */
	uint32_t boot_first, boot_pages, boot_delay;
	/* VM_LINUX: memcheck's settings (MiB of pages, hot pages, delay). */
	uint32_t mc_mib, mc_hot, mc_delay;
	const char *initrd;  /* built once by vm_build_initrd() */
	/* A second QMP socket, for a daemon (a QMP socket takes one client at
	 * a time; the test keeps the first): <qmp2_dir>/<name>.qmp, or none. */
	const char *qmp2_dir;
	/* VM_MEM_FILE: this file as the backend instead of a fresh one on
	 * /dev/shm (an exported image; removed by vm_kill all the same). */
	const char *ram_file;
	/* A qcow2 image attached as a drive of its own (if=none), where
	 * savevm keeps its snapshots; NULL for none. */
	const char *disk;
	/* The backend's id (default "ram0"). */
	const char *ram_id;
};

struct vm {
	pid_t pid;           /* the QEMU process (or the unshare wrapping it) */
	pid_t qemu_pid;      /* from QMP's SO_PEERCRED */
	char qmp_path[256], serial_path[256], ram_path[256], log_path[256];
	char qmp2_path[256]; /* "" when cfg.qmp2_dir is NULL */
	struct qmp *qmp;     /* connected by vm_start */
	struct vm_config cfg;
};

/* Exit 77 when QEMU (or the kernel cache for VM_LINUX) is not there. */
void vm_require(enum vm_guest guest, bool kvm);
/* Build the Linux guest's initramfs into dir; path in out. */
int vm_build_initrd(const char *dir, char *out, size_t len);
/* Start QEMU and connect QMP (waits for the QMP socket). */
int vm_start(const struct vm_config *cfg, struct vm *vm);
/* SIGKILL QEMU, reap it, close QMP, remove its RAM file. */
void vm_kill(struct vm *vm);

/* The whole serial log so far (free it), and its length. */
char *vm_serial(const struct vm *vm, size_t *len);
/* Wait until the serial log holds needle at or after byte `from`; 0, or
 * -ETIMEDOUT.  Waits on inotify, not by sleeping. */
int vm_wait_serial(const struct vm *vm, const char *needle, size_t from, int timeout_ms);
/* The first "BAD" line of the serial log into buf; false when none. */
bool vm_serial_bad(const struct vm *vm, char *buf, size_t len);
/* The number after the last complete "P " (boot guest) or "OK " (Linux
 * guest) line. */
long vm_serial_progress(const struct vm *vm);

/* A QMP command that must succeed (no arguments); 0 or the error. */
int vm_qmp(struct vm *vm, const char *cmd);
/* "running", "paused", "inmigrate", "postmigrate", ... into buf. */
int vm_status(struct vm *vm, char *buf, size_t len);

/* Copy guest RAM (the whole first backend) into a fresh buffer. */
int vm_dump_ram(struct vm *vm, uint8_t **ret, size_t *len);

/* The RAM-dump checkers (ramcheck.c): 0 when consistent, else -1 with a
 * sentence in why. */
int ramcheck_boot(const uint8_t *ram, size_t len, uint32_t first, uint32_t pages, char *why,
		  size_t why_len, uint32_t *counter);
int ramcheck_linux(const uint8_t *ram, size_t len, uint64_t run, uint32_t pages, char *why,
		   size_t why_len, uint64_t *pages_checked);
/* The run id and page count the Linux guest printed ("RUN <hex> PAGES n");
 * 0 when not yet. */
uint64_t vm_linux_run(const struct vm *vm, uint32_t *pages);

/* QEMU's timestamp (realtime, us) of the oldest event `name` stamped at
 * or after since_us (0: any), waiting at most timeout_ms; 0 when none came.
 * Every QMP connection sees every event: older ones (another client's
 * stop and cont) are skipped, not taken for this one. */
int64_t vm_event_us(struct vm *vm, const char *name, int64_t since_us, int timeout_ms);
/* Migration capabilities caps (NULL-terminated) all on or all off. */
int vm_set_caps(struct vm *vm, const char *const *caps, bool on, struct qmp_error *err);
/* MIGRATION events until "completed", "failed" or "cancelled": that status
 * into buf and QEMU's timestamp of it into *at_us; -ETIMEDOUT or a QMP
 * error otherwise. */
int vm_wait_migration(struct vm *vm, int timeout_ms, char *buf, size_t len, int64_t *at_us);
/* An HMP command through QMP's human-monitor-command: its output into
 * out (HMP says errors there, so "" is success). */
int vm_hmp(struct vm *vm, const char *line, int timeout_ms, char *out, size_t len);

/* A shell command, formatted: system()'s status. */
int vm_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Member k of a JSON object as a number; -1 when o or k is missing. */
double vm_jnum(json_object *o, const char *k);
