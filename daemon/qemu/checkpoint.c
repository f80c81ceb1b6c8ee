// SPDX-License-Identifier: GPL-2.0-only
/* One generation of a QEMU guest (checkpoint.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/log.h"
#include "basic/util.h"
#include "qemu/checkpoint.h"
#include "qemu/vmstate.h"

#define QMP_TIMEOUT_MS 10000
#define VMSTATE_TIMEOUT_MS 60000

struct vmck {
	struct tracker *t;
	struct pipeline *pl;
	struct sink *s;
	struct qmp *q;
	const struct qemu_ram *ram;
	const struct qemu_ckpt_opts *o;
	struct qemu_ckpt_result *res;
	struct range_set taken; /* pages this generation collected */
	struct qemu_caps caps;
	bool stopped;
	int64_t stop_us;
	char phase[32];
	char *why;
	size_t why_len;
};

static int fail(struct vmck *v, const char *step, int r, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(struct vmck *v, const char *step, int r, const char *fmt, ...)
{
	va_list ap;

	snprintf(v->res->step, sizeof(v->res->step), "%s", step);
	va_start(ap, fmt);
	vsnprintf(v->why, v->why_len, fmt, ap);
	va_end(ap);
	return r < 0 ? r : -EIO;
}

static void on_progress(void *ud, uint64_t done, uint64_t total, uint64_t bytes_out)
{
	struct vmck *v = ud;

	if (v->o->progress)
		v->o->progress(v->o->ud, v->phase, done, total, bytes_out);
}

static uint64_t pages_of(const struct range_set *s)
{
	return range_set_bytes(s) / PAGE_SIZE_4K;
}

static int note_taken(struct vmck *v, const struct pass *p)
{
	int r = 0;

	for (size_t i = 0; r == 0 && i < p->data.n; i++)
		r = range_set_add(&v->taken, p->data.r[i].start, p->data.r[i].end);
	for (size_t i = 0; r == 0 && i < p->zero.n; i++)
		r = range_set_add(&v->taken, p->zero.r[i].start, p->zero.r[i].end);
	return r;
}

static void account(struct vmck *v, uint64_t data, uint64_t zero, const struct pipeline_stats *st)
{
	v->res->passes++;
	v->res->data_pages += data - st->zero_pages;
	v->res->zero_pages += zero + st->zero_pages;
}

/* Passes while the guest runs, until one finds little. */
static int live_passes(struct vmck *v, uint64_t *seq)
{
	unsigned max = v->o->max_live_passes ? v->o->max_live_passes : 4;
	uint64_t converge = v->o->converge_pages ? v->o->converge_pages : 2048;

	for (unsigned i = 0; i < max; i++) {
		struct pipeline_stats st = { 0 };
		struct pass p;
		int r = tracker_pass(v->t, 0, &p);

		if (r < 0)
			return fail(v, "live-pass", r, "pass over the guest's RAM: %s", strerror(-r));
		snprintf(v->phase, sizeof(v->phase), "live-pass %u", i + 1);
		uint64_t data = pages_of(&p.data), zero = pages_of(&p.zero);
		r = note_taken(v, &p);
		if (r == 0)
			r = pipeline_run(v->pl, v->t, &p, (*seq)++, v->s, on_progress, v, &st);
		if (r == 0)
			account(v, data, zero, &st);
		pass_free(&p);
		if (r < 0)
			return fail(v, "live-pass", r, "storing a pass: %s", strerror(-r));
		if (data + zero < converge)
			break;
	}
	return 0;
}

/* Only a running guest: QEMU answers stop on a stopped one without a STOP
 * event, and refuses to migrate one left "postmigrate" by --leave-stopped. */
static int check_running(struct vmck *v)
{
	json_object *st = NULL;
	int r = qmp_execute(v->q, "query-status", NULL, QMP_TIMEOUT_MS, &st, NULL);
	const char *s = r == 0 ? qmp_str(st, "status") : NULL;

	if (r == 0 && (!s || strcmp(s, "running")))
		r = fail(v, "stop", -EBUSY, "the guest is %s, not running (a checkpoint with "
			 "--leave-stopped leaves it postmigrate): QMP cont first", s ? s : "?");
	else if (r < 0)
		r = fail(v, "stop", r, "query-status: %s", strerror(-r));
	json_object_put(st);
	return r;
}

static int64_t realtime_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int stop_guest(struct vmck *v)
{
	_cleanup_(qmp_event_freep) struct qmp_event *e = NULL;
	struct qmp_error err = { "", "" };
	int r = check_running(v);

	if (r < 0)
		return r;
	qmp_drop_events(v->q);
	r = qmp_execute(v->q, "stop", NULL, QMP_TIMEOUT_MS, NULL, &err);
	if (r < 0)
		return fail(v, "stop", r, "QEMU refused stop: %s", err.class[0] ? err.desc : strerror(-r));
	v->stopped = true;
	r = qmp_wait_event(v->q, "STOP", QMP_TIMEOUT_MS, &e);
	if (r < 0)
		return fail(v, "stop", r, "no STOP event from QEMU: %s", strerror(-r));
	v->stop_us = e->qemu_us;
	return 0;
}

static int resume_guest(struct vmck *v)
{
	_cleanup_(qmp_event_freep) struct qmp_event *e = NULL;
	struct qmp_error err = { "", "" };
	int r = qmp_execute(v->q, "cont", NULL, QMP_TIMEOUT_MS, NULL, &err);

	if (r < 0)
		return fail(v, "cont", r, "QEMU refused cont: %s", err.class[0] ? err.desc : strerror(-r));
	v->stopped = false;
	r = qmp_wait_event(v->q, "RESUME", QMP_TIMEOUT_MS, &e);
	if (r < 0)
		return fail(v, "cont", r, "no RESUME event from QEMU: %s", strerror(-r));
	if (v->stop_us > 0 && e->qemu_us >= v->stop_us)
		v->res->pause_ms = (double)(e->qemu_us - v->stop_us) / 1000.0;
	return 0;
}

/*
 * The pause: stop, final pass copied out, device state, cont.  *cap and
 * *final are encoded after it; *vmstate is the device state.
 */
static int paused(struct vmck *v, struct pass *final, struct capture **cap, void **vmstate,
		  size_t *vmstate_len)
{
	struct pipeline_stats st = { 0 };
	int r = stop_guest(v);

	if (r == 0 && (r = tracker_pass(v->t, PASS_FINAL, final)) < 0)
		r = fail(v, "final-pass", r, "final pass over the guest's RAM: %s", strerror(-r));
	if (r == 0) {
		v->res->final_pages = pages_of(&final->data) + pages_of(&final->zero);
		r = note_taken(v, final);
	}
	if (r == 0) {
		r = pipeline_capture(v->pl, v->t, final, NULL, cap, &st);
		if (r < 0)
			r = fail(v, "final-pass", r, "copying the final pass: %s", strerror(-r));
	}
	if (r == 0) {
		uint64_t t0 = now_ns();

		r = qemu_vmstate_save(v->q, VMSTATE_TIMEOUT_MS, SECTION_MAX_BYTES, vmstate,
				      vmstate_len, v->why, v->why_len);
		v->res->device_state_ms = ns_to_ms(now_ns() - t0);
		if (r < 0)
			snprintf(v->res->step, sizeof(v->res->step), "device-state");
	}
	if (r == 0 && !v->o->leave_stopped)
		r = resume_guest(v);
	else if (r == 0 && v->stop_us > 0)
		v->res->pause_ms = (double)(realtime_us() - v->stop_us) / 1000.0;
	return r;
}

/* After the pause: the final pass, the sections, commit. */
static int finish(struct vmck *v, struct pass *final, struct capture *cap, uint64_t seq,
		  const void *vmstate, size_t vmstate_len)
{
	struct pipeline_stats st = { 0 };
	_cleanup_free_ char *desc = NULL;
	size_t desc_len = 0;
	int r;

	snprintf(v->phase, sizeof(v->phase), "store");
	r = pipeline_flush(v->pl, cap, seq, v->s, on_progress, v, &st);
	if (r == 0)
		account(v, pages_of(&final->data), pages_of(&final->zero), &st);
	if (r == 0)
		r = v->s->ops->put_section(v->s, QEMU_VMSTATE_SECTION, SECTION_QEMU_VMSTATE, vmstate,
					   vmstate_len);
	if (r == 0)
		r = qemu_ram_encode(v->ram, qmp_version(v->q), &desc, &desc_len);
	if (r == 0)
		r = v->s->ops->put_section(v->s, QEMU_RAM_SECTION, SECTION_QEMU_RAM, desc, desc_len);
	if (r == 0)
		r = v->s->ops->commit(v->s, final->regions, final->n_regions, &v->res->gen);
	if (r < 0)
		return fail(v, "store", r, "storing the generation: %s", strerror(-r));
	v->res->regions = (uint32_t)final->n_regions;
	return 0;
}

/* After a failure: the guest runs as before. */
static void recover(struct vmck *v)
{
	struct qmp_error err = { "", "" };

	if (v->stopped) {
		if (qmp_execute(v->q, "cont", NULL, QMP_TIMEOUT_MS, NULL, &err) < 0) {
			size_t n = strlen(v->why);

			log_error("VM checkpoint: cannot resume the guest: %s", err.desc);
			snprintf(v->why + n, v->why_len - n, "; and QEMU refused cont: %s", err.desc);
		}
		v->stopped = false;
	}
}

int qemu_checkpoint_run(struct tracker *t, struct pipeline *pl, struct sink *s, struct qmp *q,
			const struct qemu_ram *ram, const struct qemu_ckpt_opts *o,
			struct qemu_ckpt_result *res, char *why, size_t why_len)
{
	struct vmck v = { .t = t, .pl = pl, .s = s, .q = q, .ram = ram, .o = o, .res = res,
			  .why = why, .why_len = why_len };
	struct qmp_error err = { "", "" };
	struct capture *cap = NULL;
	struct pass final = { 0 };
	_cleanup_free_ void *vmstate = NULL;
	size_t vmstate_len = 0;
	uint64_t t0 = now_ns(), seq = 1;
	int r;

	*res = (struct qemu_ckpt_result){ 0 };
	why[0] = '\0';
	r = qemu_caps_on(q, QMP_TIMEOUT_MS, &v.caps, &err);
	if (r < 0)
		r = fail(&v, "qmp", r, "QEMU refused migrate-set-capabilities: %s",
			 err.class[0] ? err.desc : strerror(-r));
	if (r == 0)
		r = live_passes(&v, &seq);
	if (r == 0)
		r = paused(&v, &final, &cap, &vmstate, &vmstate_len);
	if (r < 0) {
		if (cap)
			capture_free(cap);
	} else {
		res->device_state_bytes = vmstate_len;
		r = finish(&v, &final, cap, seq, vmstate, vmstate_len);
	}
	if (r < 0)
		recover(&v);
	res->left_stopped = v.stopped;
	qemu_caps_restore(q, QMP_TIMEOUT_MS, &v.caps);
	pass_free(&final);
	if (r < 0) {
		s->ops->abort(s);
		tracker_resync(t, &v.taken);
	} else {
		s->ops->close(s);
	}
	range_set_free(&v.taken);
	res->duration_ns = now_ns() - t0;
	return r;
}
