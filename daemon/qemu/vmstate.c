// SPDX-License-Identifier: GPL-2.0-only
/* A QEMU guest's device state through a pipe (vmstate.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/util.h"
#include "qemu/vmstate.h"

static const char *const cap_names[QEMU_CAPS_N] = { "x-ignore-shared", "events" };

static int caps_apply(struct qmp *q, int timeout_ms, const bool *on, struct qmp_error *err)
{
	json_object *caps = json_object_new_array();

	for (size_t i = 0; i < QEMU_CAPS_N; i++) {
		json_object *c = json_object_new_object();

		json_object_object_add(c, "capability", json_object_new_string(cap_names[i]));
		json_object_object_add(c, "state", json_object_new_boolean(on[i]));
		json_object_array_add(caps, c);
	}
	return qmp_executev(q, "migrate-set-capabilities", timeout_ms, NULL, err, "capabilities",
			    caps, NULL);
}

int qemu_caps_on(struct qmp *q, int timeout_ms, struct qemu_caps *c, struct qmp_error *err)
{
	static const bool on[QEMU_CAPS_N] = { true, true };
	json_object *list = NULL;
	int r = qmp_execute(q, "query-migrate-capabilities", NULL, timeout_ms, &list, err);

	for (size_t i = 0; r == 0 && i < json_object_array_length(list); i++) {
		json_object *o = json_object_array_get_idx(list, i), *st;
		const char *name = qmp_str(o, "capability");

		for (size_t k = 0; name && k < QEMU_CAPS_N; k++)
			if (!strcmp(name, cap_names[k]) && json_object_object_get_ex(o, "state", &st))
				c->old[k] = json_object_get_boolean(st);
	}
	json_object_put(list);
	if (r == 0 && (r = caps_apply(q, timeout_ms, on, err)) == 0)
		c->set = true;
	return r;
}

int qemu_caps_restore(struct qmp *q, int timeout_ms, struct qemu_caps *c)
{
	int r = 0;

	if (c->set && (r = caps_apply(q, timeout_ms, c->old, NULL)) == 0)
		c->set = false;
	return r;
}

/* The MIGRATION events until "completed" (0) or "failed"/"cancelled". */
static int wait_migration(struct qmp *q, int timeout_ms, char *why, size_t why_len)
{
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	for (;;) {
		_cleanup_(qmp_event_freep) struct qmp_event *e = NULL;
		uint64_t now = now_ns();
		int r = now < deadline ? qmp_wait_event(q, "MIGRATION",
							(int)((deadline - now) / 1000000) + 1, &e)
				       : -ETIMEDOUT;
		const char *status = r == 0 ? qmp_str(e->data, "status") : NULL;

		if (r < 0) {
			snprintf(why, why_len, "QEMU's migration of the device state did not "
				 "complete: %s", strerror(-r));
			return r;
		}
		if (status && !strcmp(status, "completed"))
			return 0;
		if (status && (!strcmp(status, "failed") || !strcmp(status, "cancelled"))) {
			snprintf(why, why_len, "QEMU's migration of the device state %s", status);
			return -EIO;
		}
	}
}

struct pipe_io {
	int fd;
	size_t max;
	uint8_t *buf;
	size_t len;
	int r;
};

/* Reader thread: the pipe until EOF (QEMU closes its end when done). */
static void *read_all(void *arg)
{
	struct pipe_io *io = arg;
	size_t cap = 0;

	for (;;) {
		if (io->len == cap) {
			size_t ncap = cap ? cap * 2 : 1 << 20;
			uint8_t *n = ncap <= io->max + 1 ? realloc(io->buf, ncap) : NULL;

			if (!n) {
				io->r = ncap <= io->max + 1 ? -ENOMEM : -E2BIG;
				break;
			}
			io->buf = n;
			cap = ncap;
		}
		ssize_t n = read(io->fd, io->buf + io->len, MIN(cap - io->len, io->max + 1 - io->len));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			io->r = -errno;
			break;
		}
		if (n == 0)
			break;
		io->len += (size_t)n;
		if (io->len > io->max) {
			io->r = -E2BIG;
			break;
		}
	}
	/* Closing our end makes a QEMU still writing fail (EPIPE), not hang. */
	close(io->fd);
	io->fd = -1;
	return NULL;
}

/* Writer thread: the bytes into the pipe, then EOF. */
static void *write_all(void *arg)
{
	struct pipe_io *io = arg;
	size_t off = 0;

	while (off < io->len) {
		ssize_t n = write(io->fd, io->buf + off, io->len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			io->r = -errno;
			break;
		}
		off += (size_t)n;
	}
	close(io->fd);
	io->fd = -1;
	return NULL;
}

/* A pipe with QEMU holding end `qemu_end` (0 read, 1 write) as name. */
static int pipe_to_qemu(struct qmp *q, int timeout_ms, const char *name, int qemu_end,
			int *ours, char *why, size_t why_len)
{
	struct qmp_error err = { "", "" };
	int p[2], r;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	r = qmp_getfd(q, name, p[qemu_end], timeout_ms, &err);
	close(p[qemu_end]);
	if (r < 0) {
		close(p[!qemu_end]);
		snprintf(why, why_len, "QEMU refused getfd: %s", err.class[0] ? err.desc : strerror(-r));
		return r;
	}
	*ours = p[!qemu_end];
	return 0;
}

int qemu_vmstate_save(struct qmp *q, int timeout_ms, size_t max, void **buf, size_t *len,
		      char *why, size_t why_len)
{
	struct qmp_error err = { "", "" };
	struct pipe_io io = { .fd = -1, .max = max };
	pthread_t th;
	int r = pipe_to_qemu(q, timeout_ms, "wpmig-vmstate", 1, &io.fd, why, why_len);

	if (r < 0)
		return r;
	r = -pthread_create(&th, NULL, read_all, &io);
	if (r < 0) {
		close(io.fd);
		qmp_executev(q, "closefd", timeout_ms, NULL, NULL, "fdname",
			     json_object_new_string("wpmig-vmstate"), NULL);
		snprintf(why, why_len, "cannot start the device state reader: %s", strerror(-r));
		return r;
	}
	r = qmp_executev(q, "migrate", timeout_ms, NULL, &err, "uri",
			 json_object_new_string("fd:wpmig-vmstate"), NULL);
	if (r < 0) {
		snprintf(why, why_len, "QEMU refused migrate: %s",
			 err.class[0] ? err.desc : strerror(-r));
		/* The fd is still QEMU's, named: take it back so the reader ends. */
		qmp_executev(q, "closefd", timeout_ms, NULL, NULL, "fdname",
			     json_object_new_string("wpmig-vmstate"), NULL);
	} else {
		r = wait_migration(q, timeout_ms, why, why_len);
		if (r < 0)
			qmp_execute(q, "migrate_cancel", NULL, timeout_ms, NULL, NULL);
	}
	pthread_join(th, NULL);
	if (r == 0 && io.r < 0) {
		r = io.r;
		snprintf(why, why_len, "reading QEMU's device state: %s", r == -E2BIG ?
			 "larger than the limit" : strerror(-r));
	}
	if (r < 0) {
		free(io.buf);
		return r;
	}
	*buf = io.buf;
	*len = io.len;
	return 0;
}

int qemu_vmstate_load(struct qmp *q, int timeout_ms, const void *buf, size_t len, char *why,
		      size_t why_len)
{
	struct qmp_error err = { "", "" };
	struct pipe_io io = { .fd = -1, .buf = (uint8_t *)buf, .len = len };
	pthread_t th;
	int r = pipe_to_qemu(q, timeout_ms, "wpmig-vmstate", 0, &io.fd, why, why_len);

	if (r < 0)
		return r;
	r = qmp_executev(q, "migrate-incoming", timeout_ms, NULL, &err, "uri",
			 json_object_new_string("fd:wpmig-vmstate"), NULL);
	if (r < 0) {
		close(io.fd);
		snprintf(why, why_len, "QEMU refused migrate-incoming: %s",
			 err.class[0] ? err.desc : strerror(-r));
		return r;
	}
	r = -pthread_create(&th, NULL, write_all, &io);
	if (r < 0) {
		close(io.fd); /* QEMU sees EOF: its incoming migration fails */
		snprintf(why, why_len, "cannot start the device state writer: %s", strerror(-r));
		return r;
	}
	r = wait_migration(q, timeout_ms, why, why_len);
	pthread_join(th, NULL);
	if (r == 0 && io.r < 0) {
		r = io.r;
		snprintf(why, why_len, "writing the device state to QEMU: %s", strerror(-r));
	}
	return r;
}
