// SPDX-License-Identifier: GPL-2.0-only
/*
 * restore PID SET/GEN [--memory-only]: roll the same, still running process
 * back to a generation: the memory of its mappings and every thread's
 * registers.  The process is tracked for it (attached first if need be,
 * like checkpoint does, and it stays tracked).  The image is decoded and
 * checked before anything is touched, so a damaged one changes nothing;
 * threads or mappings that differ from the image's change nothing either.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verbs.h"
#include "basic/log.h"
#include "basic/util.h"
#include "store/store.h"
#include "track/restore.h"
#include "track/threads.h"

#define MEMORY_ONLY_WARNING                                                             \
	"memory only: every thread kept its registers; unless the process was at a point " \
	"where that is safe (all threads waiting where they were at the checkpoint) it may " \
	"crash or compute wrongly"

struct rst_job {
	struct daemon *d;
	struct session *s;
	struct request *req;
	struct job *job;
	pid_t pid;
	char *set;
	uint64_t generation;
	bool memory_only;
	struct thread_states threads;
	struct restore_image *ri;
	uint64_t t0, prepare_ns, decoded, data_pages;
	struct restore_stats st;
	char why[512];
};

static void rst_free(struct rst_job *c)
{
	threads_free(&c->threads);
	restore_image_free(c->ri);
	free(c->set);
	free(c);
}

/* The attach failed after it started: start() never runs. */
static void rst_drop(void *ud)
{
	rst_free(ud);
}

static void post(struct rst_job *c, const char *phase, uint64_t done, uint64_t total)
{
	struct job_progress p = { .done = done, .total = total };

	snprintf(p.phase, sizeof(p.phase), "%s", phase);
	job_post_progress(c->job, &p);
}

static void on_progress(void *ud, const char *phase, uint64_t done, uint64_t total)
{
	post(ud, phase, done, total);
}

static void on_bad(void *ud, const struct store_bad *b)
{
	struct rst_job *c = ud;

	if (!c->why[0])
		snprintf(c->why, sizeof(c->why), "image %s/%llu is damaged (%s at %llx%s%s); "
			 "nothing was changed", c->set, (unsigned long long)b->generation, b->what,
			 (unsigned long long)b->addr, b->section ? " in section " : "",
			 b->section ? b->section : "");
}

/* The threads' state, unless memory only: required. */
static int load_threads(struct rst_job *c, struct store_image *img)
{
	_cleanup_free_ void *buf = NULL;
	size_t len = 0;
	int r;

	if (c->memory_only)
		return 0;
	r = store_image_read_section(img, THREADS_SECTION_NAME, SECTION_THREADS, &buf, &len);
	if (r == 0)
		r = threads_decode(buf, len, &c->threads);
	if (r == -ENOENT)
		snprintf(c->why, sizeof(c->why), "image %s/%llu holds no thread state (taken before "
			 "wpmig kept it): without the registers that go with it, restoring memory "
			 "is safe only at a known point: use --memory-only if you know the process "
			 "is at one", c->set, (unsigned long long)c->generation);
	else if (r < 0)
		snprintf(c->why, sizeof(c->why), "the thread state of image %s/%llu is %s; nothing "
			 "was changed", c->set, (unsigned long long)c->generation,
			 r == -EBADMSG ? "damaged" : strerror(-r));
	return r;
}

static int add_piece(void *ud, uint64_t addr, uint64_t len, bool is_data, const uint8_t *d)
{
	return restore_image_add(ud, addr, len, is_data);
}

static int fill_page(void *ud, uint64_t addr, uint64_t len, bool is_data, const uint8_t *data)
{
	struct rst_job *c = ud;
	uint64_t before = c->decoded;

	c->decoded += len / PAGE_SIZE_4K;
	if ((c->decoded >> 14) != (before >> 14)) /* every 64 MiB */
		post(c, "decode", c->decoded, c->data_pages);
	return restore_image_fill(c->ri, addr, len, data);
}

/* The whole image, decoded and every page's sum checked, before the freeze. */
static int decode(struct rst_job *c, struct store_image *img)
{
	struct store_progress prog = { NULL, NULL };
	size_t n;
	const struct pass_region *reg = store_image_regions(img, &n);
	uint64_t mem_max = c->d->debug_restore_mem_max ? c->d->debug_restore_mem_max
						       : RESTORE_MEM_MAX;
	int r = restore_image_new(reg, n, &c->ri);

	for (size_t i = 0; r == 0 && i < n; i++)
		r = store_image_walk(img, reg[i].start, reg[i].end, false, add_piece, c->ri);
	if (r == 0)
		r = restore_image_alloc(c->ri, mem_max, c->d->cfg.state_dir);
	if (r < 0 && r != -EBADMSG) {
		snprintf(c->why, sizeof(c->why), "cannot hold the decoded image (%llu MiB): %s",
			 (unsigned long long)(c->ri ? restore_image_data_bytes(c->ri) >> 20 : 0),
			 strerror(-r));
		return r;
	}
	c->data_pages = r == 0 ? restore_image_data_bytes(c->ri) / PAGE_SIZE_4K : 0;
	for (size_t i = 0; r == 0 && i < n; i++)
		r = store_image_walk(img, reg[i].start, reg[i].end, true, fill_page, c);
	if (r == 0)
		r = restore_image_seal(c->ri);
	if (r == -EBADMSG) /* name the damage */
		store_image_verify(img, on_bad, c, &prog, NULL);
	if (r < 0 && !c->why[0])
		snprintf(c->why, sizeof(c->why), "cannot decode image %s/%llu: %s; nothing was "
			 "changed", c->set, (unsigned long long)c->generation, strerror(-r));
	return r;
}

static int prepare(struct rst_job *c)
{
	struct store_image *img;
	int r;

	pthread_mutex_lock(&c->d->store_lock);
	r = store_image_open(c->d->store, c->set, c->generation, &img);
	pthread_mutex_unlock(&c->d->store_lock);
	if (r < 0) {
		snprintf(c->why, sizeof(c->why), "%s/%llu: %s", c->set,
			 (unsigned long long)c->generation,
			 r == -ENOENT ? "no such image" : r == -EBADMSG ? "damaged" : strerror(-r));
		return r;
	}
	const struct store_gen_info *info = store_image_info(img);
	if (info->pid != c->pid) {
		snprintf(c->why, sizeof(c->why), "image %s/%llu was taken from pid %d, not %d",
			 c->set, (unsigned long long)info->generation, (int)info->pid, (int)c->pid);
		r = -EINVAL;
	}
	if (r == 0)
		r = load_threads(c, img);
	if (r == 0)
		r = decode(c, img);
	store_image_close(img);
	return r;
}

static int rst_run(struct job *j, void *userdata)
{
	struct rst_job *c = userdata;
	struct restore_opts o = { .memory_only = c->memory_only, .threads = &c->threads,
				  .progress = on_progress, .ud = c };
	int r;

	c->job = j;
	c->t0 = now_ns();
	r = daemon_job_delay(c->d, j);
	if (r == 0)
		r = prepare(c);
	if (r < 0)
		return r;
	if (restore_image_in_file(c->ri))
		log_info("pid %d: %s/%llu: %llu MiB of pages decoded into a temporary file in %s",
			 (int)c->pid, c->set, (unsigned long long)c->generation,
			 (unsigned long long)(restore_image_data_bytes(c->ri) >> 20),
			 c->d->cfg.state_dir);
	post(c, "restore", 0, 0);
	r = restore_process(c->s->tracker, c->ri, &o, &c->st, c->why, sizeof(c->why));
	c->prepare_ns = now_ns() - c->t0 - c->st.pause_ns;
	return r;
}

static void rst_progress(struct job *j, const struct job_progress *p, void *userdata)
{
	daemon_forward_progress(((struct rst_job *)userdata)->req, p);
}

static void reply(struct rst_job *c)
{
	Wpmig__Response resp = WPMIG__RESPONSE__INIT;
	Wpmig__RestoreResult rr = WPMIG__RESTORE_RESULT__INIT;
	const struct restore_stats *st = &c->st;

	rr.set = c->set;
	rr.generation = c->generation;
	rr.pages = st->pages_written;
	rr.bytes = st->pages_written * PAGE_SIZE_4K;
	rr.pause_ms = ns_to_ms(st->pause_ns);
	rr.duration_ms = ns_to_ms(now_ns() - c->t0);
	rr.threads = st->threads;
	rr.memory_only = c->memory_only;
	rr.warning = (char *)(c->memory_only ? MEMORY_ONLY_WARNING : "");
	rr.image_pages = st->image_pages;
	rr.pages_compared = st->pages_compared;
	rr.pages_differing = st->pages_differing;
	rr.pages_written_since = st->pages_written_since;
	rr.prepare_ms = ns_to_ms(c->prepare_ns);
	rr.compare_ms = ns_to_ms(st->compare_ns);
	rr.freeze_ms = ns_to_ms(st->freeze_ns);
	rr.scan_ms = ns_to_ms(st->scan_ns);
	rr.write_ms = ns_to_ms(st->write_ns);
	rr.threads_ms = ns_to_ms(st->threads_ns);
	rr.thaw_ms = ns_to_ms(st->thaw_ns);
	resp.result_case = WPMIG__RESPONSE__RESULT_RESTORE;
	resp.restore = &rr;
	request_reply(c->req, &resp);
}

static void rst_done(struct job *j, int r, void *userdata)
{
	struct rst_job *c = userdata;
	struct daemon *d = c->d;
	struct session *s = c->s;

	s->job = NULL;
	if (r < 0) {
		if (!c->why[0])
			snprintf(c->why, sizeof(c->why), "%s", r == -ECANCELED ?
				 "cancelled: wpmigd is shutting down" : strerror(-r));
		log_warning("pid %d: restore of %s/%llu failed: %s", (int)c->pid, c->set,
			    (unsigned long long)c->generation, c->why);
		request_fail(c->req, r, "restore of pid %d failed: %s", (int)c->pid, c->why);
	} else {
		log_info("pid %d: restored %s/%llu%s: %llu pages written (%llu differed, %llu "
			 "written since), %u threads, pause %.2f ms", (int)c->pid, c->set,
			 (unsigned long long)c->generation, c->memory_only ? " (memory only)" : "",
			 (unsigned long long)c->st.pages_written,
			 (unsigned long long)c->st.pages_differing,
			 (unsigned long long)c->st.pages_written_since, c->st.threads,
			 ns_to_ms(c->st.pause_ns));
		reply(c);
	}
	rst_free(c);
	session_enter_state(s, s->exited ? SESSION_FAILED : SESSION_TRACKING);
	session_refresh_info(s);
	daemon_session_settle(d, s);
}

static const struct job_ops rst_ops = { "restore", rst_run, rst_done, rst_progress };

static void start(struct daemon *d, struct session *s, struct request *req, void *userdata)
{
	struct rst_job *c = userdata;
	int r;

	c->s = s;
	c->req = req;
	session_enter_state(s, SESSION_RESTORING);
	r = job_submit(d->jobs, &rst_ops, c, &s->job);
	if (r < 0) {
		request_fail(req, r, "cannot start the restore: %s", strerror(-r));
		session_enter_state(s, SESSION_TRACKING);
		rst_free(c);
		return;
	}
	daemon_notify_status(d);
}

void cmd_restore(struct daemon *d, struct request *req, const Wpmig__Request *msg)
{
	const Wpmig__RestoreRequest *m = msg->restore;
	struct session *s = session_find(&d->sessions, m->pid);
	struct rst_job *c;

	if (m->qmp && m->qmp[0]) {
		cmd_restore_vm(d, req, msg);
		return;
	}
	if (!store_set_name_valid(m->set ? m->set : "")) {
		request_fail(req, -EINVAL, "invalid set name \"%s\"", m->set ? m->set : "");
		return;
	}
	if (s && (s->state != SESSION_TRACKING || s->job)) {
		request_fail(req, -EBUSY, "pid %d is %s; try again when it is TRACKING", (int)m->pid,
			     session_state_name(s->state));
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->set = strdup(m->set))) {
		free(c);
		request_fail(req, -ENOMEM, "out of memory");
		return;
	}
	c->d = d;
	c->pid = m->pid;
	c->generation = m->generation;
	c->memory_only = m->memory_only;
	if (!s) {
		/* Not tracked: attach first (the tracker tells what it writes). */
		if (daemon_session_attach(d, req, m->pid, start, rst_drop, c) < 0)
			rst_free(c);
		return;
	}
	start(d, s, req, c);
}
