// SPDX-License-Identifier: GPL-2.0-only
/* A VM generation into a new QEMU (restore.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "basic/util.h"
#include "qemu/backend.h"
#include "qemu/checkpoint.h"
#include "qemu/qmp.h"
#include "qemu/restore.h"
#include "qemu/vmstate.h"

#define QMP_TIMEOUT_MS 10000
#define VMSTATE_TIMEOUT_MS 60000
#define WRITE_CHUNK (4u << 20)

struct rst {
	struct store_image *img;
	struct qemu_restore_result *res;
	struct qmp *q;
	struct qemu_ram src, dst;
	int fds[QEMU_MAX_BACKENDS];
	char *why;
	size_t why_len;
};

static int fail(struct rst *r, const char *step, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(struct rst *r, const char *step, int err, const char *fmt, ...)
{
	va_list ap;

	snprintf(r->res->step, sizeof(r->res->step), "%s", step);
	va_start(ap, fmt);
	vsnprintf(r->why, r->why_len, fmt, ap);
	va_end(ap);
	return err < 0 ? err : -EIO;
}

/* The step failed and why already says why. */
static int fail_step(struct rst *r, const char *step, int err)
{
	snprintf(r->res->step, sizeof(r->res->step), "%s", step);
	if (!r->why[0])
		snprintf(r->why, r->why_len, "%s", strerror(-err));
	return err < 0 ? err : -EIO;
}

static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int run_state(struct rst *r, char *buf, size_t len)
{
	json_object *st = NULL;
	int e = qmp_execute(r->q, "query-status", NULL, QMP_TIMEOUT_MS, &st, NULL);
	const char *s = e == 0 ? qmp_str(st, "status") : NULL;

	snprintf(buf, len, "%s", s ? s : "?");
	json_object_put(st);
	return e;
}

/* The generation's backends, and the QEMU's that match them. */
static int check_target(struct rst *r)
{
	_cleanup_free_ void *buf = NULL;
	struct qmp_error err = { "", "" };
	char state[32];
	size_t len = 0;
	int e = store_image_read_section(r->img, QEMU_RAM_SECTION, SECTION_QEMU_RAM, &buf, &len);

	if (e == 0)
		e = qemu_ram_decode(buf, len, &r->src);
	if (e < 0)
		return fail(r, "image", e, "the image is not a QEMU guest's (%s)",
			    e == -ENOENT ? "no qemu-ram section" : strerror(-e));
	e = run_state(r, state, sizeof(state));
	if (e == 0 && strcmp(state, "inmigrate"))
		return fail(r, "refused", -EBUSY, "QEMU %d is %s, not waiting for an incoming "
			    "migration: start it with -incoming defer", (int)r->res->pid, state);
	if (e == 0)
		e = qemu_ram_discover(r->q, QMP_TIMEOUT_MS, &r->dst, &err);
	if (e < 0)
		return fail(r, "qmp", e, "QEMU %d: %s", (int)r->res->pid,
			    err.class[0] ? err.desc : strerror(-e));
	for (size_t i = 0; i < r->src.n; i++) {
		const struct qemu_backend *s = &r->src.b[i], *d = qemu_ram_find(&r->dst, s->id);

		if (!d)
			return fail(r, "refused", -ENODEV, "QEMU %d has no memory backend %s (the "
				    "guest had %s of %s)", (int)r->res->pid, s->id, s->type, s->id);
		if (d->size != s->size)
			return fail(r, "refused", -EINVAL, "QEMU %d's backend %s is %llu bytes, the "
				    "guest's was %llu", (int)r->res->pid, s->id,
				    (unsigned long long)d->size, (unsigned long long)s->size);
	}
	e = qemu_ram_refusal(r->q, QMP_TIMEOUT_MS, &r->dst, false, r->why, r->why_len);
	if (e < 0)
		return fail_step(r, "refused", e);
	return 0;
}

static bool page_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < PAGE_SIZE_4K / 8; i++)
		if (w[i])
			return false;
	return true;
}

/* Non-zero runs of pages of buf (n pages at file offset off) into fd. */
static int write_nonzero(struct rst *r, int fd, const uint8_t *buf, size_t n, uint64_t off)
{
	for (size_t i = 0; i < n;) {
		size_t k = i;

		while (k < n && !page_zero(buf + k * PAGE_SIZE_4K))
			k++;
		if (k > i) {
			size_t len = (k - i) * PAGE_SIZE_4K;
			int e = pwrite_all(fd, buf + i * PAGE_SIZE_4K, len, off + i * PAGE_SIZE_4K);

			if (e < 0)
				return e;
			r->res->pages += k - i;
			r->res->bytes += len;
		}
		for (i = k; i < n && page_zero(buf + i * PAGE_SIZE_4K); i++)
			r->res->zero_pages++;
	}
	return 0;
}

/* Backend s of the image into QEMU's fd for backend d. */
static int write_backend(struct rst *r, const struct qemu_backend *s, const struct qemu_backend *d,
			 int fd, uint8_t *buf)
{
	int e = 0;

	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)d->pgoff,
		      (off_t)d->size) < 0)
		return fail(r, "write", -errno, "emptying backend %s: %m", d->id);
	for (uint64_t off = 0; e == 0 && off < s->size; off += WRITE_CHUNK) {
		uint64_t len = MIN((uint64_t)WRITE_CHUNK, s->size - off);

		e = store_image_read(r->img, s->start + off, len, buf);
		if (e < 0)
			return fail(r, "image", e, "reading backend %s at offset %llu from the image: "
				    "%s", s->id, (unsigned long long)off,
				    e == -EBADMSG ? "damaged" : strerror(-e));
		e = write_nonzero(r, fd, buf, len / PAGE_SIZE_4K, d->pgoff + off);
	}
	if (e == 0 && fdatasync(fd) < 0)
		e = -errno;
	if (e < 0)
		return fail(r, "write", e, "writing backend %s: %s", d->id, strerror(-e));
	return 0;
}

static int write_ram(struct rst *r)
{
	_cleanup_free_ uint8_t *buf = malloc(WRITE_CHUNK);
	uint64_t t0 = now_ns();
	int e = buf ? 0 : -ENOMEM;

	for (size_t i = 0; e == 0 && i < r->src.n; i++) {
		const struct qemu_backend *d = qemu_ram_find(&r->dst, r->src.b[i].id);

		e = qemu_backend_open(r->res->pid, d, &r->fds[i]);
		if (e < 0)
			return fail(r, "write", e, "cannot open QEMU %d's backend %s: %s",
				    (int)r->res->pid, d->id, strerror(-e));
		e = write_backend(r, &r->src.b[i], d, r->fds[i], buf);
	}
	r->res->write_ms = ns_to_ms(now_ns() - t0);
	return e;
}

static int load_and_run(struct rst *r, bool leave_stopped)
{
	_cleanup_(qmp_event_freep) struct qmp_event *ev = NULL;
	_cleanup_free_ void *vmstate = NULL;
	struct qemu_caps caps = { 0 };
	struct qmp_error err = { "", "" };
	size_t len = 0;
	uint64_t t0;
	int e = store_image_read_section(r->img, QEMU_VMSTATE_SECTION, SECTION_QEMU_VMSTATE,
					 &vmstate, &len);

	if (e < 0)
		return fail(r, "image", e, "the image's device state: %s",
			    e == -EBADMSG ? "damaged" : strerror(-e));
	r->res->device_state_bytes = len;
	e = qemu_caps_on(r->q, QMP_TIMEOUT_MS, &caps, &err);
	if (e < 0)
		return fail(r, "device-state", e, "QEMU refused migrate-set-capabilities: %s",
			    err.class[0] ? err.desc : strerror(-e));
	t0 = now_ns();
	qmp_drop_events(r->q);
	e = qemu_vmstate_load(r->q, VMSTATE_TIMEOUT_MS, vmstate, len, r->why, r->why_len);
	r->res->device_state_ms = ns_to_ms(now_ns() - t0);
	if (e < 0)
		return fail_step(r, "device-state", e);
	if (leave_stopped)
		return 0;
	e = qmp_execute(r->q, "cont", NULL, QMP_TIMEOUT_MS, NULL, &err);
	if (e == 0)
		e = qmp_wait_event(r->q, "RESUME", QMP_TIMEOUT_MS, &ev);
	if (e < 0)
		return fail(r, "resume", e, "QEMU did not resume the guest: %s",
			    err.class[0] ? err.desc : strerror(-e));
	return 0;
}

int qemu_restore_run(struct store_image *img, const char *qmp_path, bool leave_stopped,
		     struct qemu_restore_result *res, char *why, size_t why_len)
{
	struct rst r = { .img = img, .res = res, .why = why, .why_len = why_len };
	uint64_t t0 = now_ns();
	int e;

	*res = (struct qemu_restore_result){ 0 };
	why[0] = '\0';
	for (size_t i = 0; i < QEMU_MAX_BACKENDS; i++)
		r.fds[i] = -1;
	e = qmp_open(qmp_path, QMP_TIMEOUT_MS, &r.q);
	if (e < 0)
		e = fail(&r, "qmp", e, "cannot connect to QMP socket %s: %s", qmp_path, strerror(-e));
	if (e == 0) {
		res->pid = qmp_pid(r.q);
		e = check_target(&r);
	}
	if (e == 0)
		e = write_ram(&r);
	if (e == 0)
		e = load_and_run(&r, leave_stopped);
	for (size_t i = 0; i < QEMU_MAX_BACKENDS; i++)
		if (r.fds[i] >= 0)
			close(r.fds[i]);
	qmp_close(r.q);
	res->duration_ms = ns_to_ms(now_ns() - t0);
	return e;
}
