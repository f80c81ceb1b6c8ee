// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target: what a QEMU process sends on its QMP socket, as the
 * daemon meets it before a migration or a VM checkpoint.  QEMU runs
 * beside its guest, with fewer privileges than wpmigd; a QEMU the guest
 * took over may answer anything.
 *
 * The input is QEMU's side of one conversation: the bytes a thread writes
 * into the accepted connection, then end of stream.  The daemon's side is
 * the qemu/ library as the daemon calls it: qmp_open() (greeting,
 * qmp_capabilities), qemu_ram_discover() (query-memdev, qom-get of each
 * backend's type and mem-path), qemu_ram_refusal() for a tracked guest
 * (qom-list for VFIO devices), query-status, then the events the
 * migration waits for (MIGRATION, STOP, RESUME) and qmp_pump().  Replies
 * are matched by id, which the client counts from 1: the seeds
 * (corpus-qmp/, written by gen-seeds qmp) answer in that order.  The peer
 * of the socket is this process, so the /proc walks look at ourselves;
 * it maps a memfd of FUZZ_RAM_SIZE shared, which a memfd backend of that
 * size (as in the seeds) finds, so the refusal checks go on to the VFIO
 * queries and the walk for other processes mapping it.
 * Build and run: tests/fuzz/build-and-run.sh.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "qemu/backend.h"
#include "qemu/qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 3 MiB + 12 KiB: a size no other mapping of ours has. */
#define FUZZ_RAM_SIZE 3158016u

struct feed {
	int lfd;
	const uint8_t *data;
	size_t size;
};

/* QEMU's side: accept, send the input, end the stream, read until the
 * client closes (so its commands never fill the socket). */
static void *qemu_side(void *arg)
{
	struct feed *f = arg;
	int c = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
	char sink[4096];

	if (c < 0)
		abort();
	for (size_t off = 0; off < f->size;) {
		ssize_t n = send(c, f->data + off, f->size - off, MSG_NOSIGNAL);

		if (n < 0)
			break; /* the client gave up and closed */
		off += (size_t)n;
	}
	shutdown(c, SHUT_WR);
	while (read(c, sink, sizeof(sink)) > 0)
		;
	close(c);
	return NULL;
}

static char sock_dir[] = "/tmp/wpmig-fuzz-qmp.XXXXXX";
static char sock_path[sizeof(sock_dir) + 16];

static void remove_listener(void)
{
	unlink(sock_path);
	rmdir(sock_dir);
}

/* One listening socket for the whole run, removed at exit. */
static int listener(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (!mkdtemp(sock_dir))
		abort();
	snprintf(sock_path, sizeof(sock_path), "%s/qmp.sock", sock_dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0)
		abort();
	atexit(remove_listener);
	/* the "guest RAM" the memfd backends of the seeds find */
	int ram = memfd_create("fuzz-qmp-ram", MFD_CLOEXEC);
	if (ram < 0 || ftruncate(ram, FUZZ_RAM_SIZE) < 0 ||
	    mmap(NULL, FUZZ_RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ram, 0) == MAP_FAILED)
		abort();
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int lfd = -1;
	struct feed f = { .data = data, .size = size };
	struct qmp *q = NULL;
	struct qemu_ram ram;
	struct qmp_error err;
	struct qmp_event *e = NULL;
	char why[512];
	json_object *st = NULL;
	pthread_t t;

	if (lfd < 0)
		lfd = listener();
	f.lfd = lfd;
	if (pthread_create(&t, NULL, qemu_side, &f))
		abort();
	if (qmp_open(sock_path, 2000, &q) == 0) {
		if (qemu_ram_discover(q, 2000, &ram, &err) == 0)
			qemu_ram_refusal(q, 2000, &ram, true, why, sizeof(why));
		if (qmp_execute(q, "query-status", NULL, 2000, &st, &err) == 0) {
			volatile size_t n = strlen(qmp_str(st, "status") ?: "");

			(void)n;
			json_object_put(st);
		}
		static const char *const names[] = { "MIGRATION", "STOP", "RESUME" };
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			while (qmp_wait_event(q, names[i], 0, &e) == 0) {
				/* what the migration reads of an event */
				volatile size_t n = strlen(qmp_str(e->data, "status") ?: "");
				volatile int64_t us = e->qemu_us;

				(void)n, (void)us;
				qmp_event_free(e);
				e = NULL;
			}
		}
		qmp_pump(q);
		qmp_close(q);
	}
	pthread_join(t, NULL);
	return 0;
}
