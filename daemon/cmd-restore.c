// SPDX-License-Identifier: GPL-2.0-only
/*
 * restore PID SET/GEN: roll the memory of the same, still running process
 * back to a generation.  The image is verified first, so a damaged one
 * changes nothing; a layout that no longer matches changes nothing either.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verbs.h"
#include "basic/log.h"
#include "basic/util.h"
#include "store/store.h"
#include "track/inject.h"
#include "track/restore.h"

struct rst_job {
	struct daemon *d;
	struct session *s; /* NULL when the PID is not tracked */
	struct request *req;
	struct job *job;
	pid_t pid;
	char *set;
	uint64_t generation;
	struct restore_stats st;
	char why[320];
};

static void on_progress(void *ud, uint64_t done, uint64_t total)
{
	struct rst_job *c = ud;
	struct job_progress p = { .phase = "verify", .done = done, .total = total };

	job_post_progress(c->job, &p);
}

static void on_bad(void *ud, const struct store_bad *b)
{
	struct rst_job *c = ud;

	if (!c->why[0])
		snprintf(c->why, sizeof(c->why), "image %s/%llu is damaged (%s at %llx); nothing "
			 "was changed", c->set, (unsigned long long)b->generation, b->what,
			 (unsigned long long)b->addr);
}

static int image_read(void *ud, uint64_t addr, uint64_t len, uint8_t *buf)
{
	return store_image_read(ud, addr, len, buf);
}

static int rst_run(struct job *j, void *userdata)
{
	struct rst_job *c = userdata;
	struct store_progress prog = { on_progress, c };
	struct store_image *img;
	uint64_t n_bad = 0;
	size_t n;
	int r;

	c->job = j;
	pthread_mutex_lock(&c->d->store_lock);
	r = store_image_open(c->d->store, c->set, c->generation, &img);
	pthread_mutex_unlock(&c->d->store_lock);
	if (r < 0) {
		snprintf(c->why, sizeof(c->why), "%s/%llu: %s", c->set,
			 (unsigned long long)c->generation,
			 r == -ENOENT ? "no such image" : strerror(-r));
		return r;
	}
	const struct store_gen_info *info = store_image_info(img);
	if (info->pid != c->pid) {
		snprintf(c->why, sizeof(c->why), "image %s/%llu was taken from pid %d, not %d",
			 c->set, (unsigned long long)info->generation, (int)info->pid, (int)c->pid);
		r = -EINVAL;
	}
	if (r == 0)
		r = store_image_verify(img, on_bad, c, &prog, &n_bad);
	if (r == 0) {
		const struct pass_region *reg = store_image_regions(img, &n);
		struct job_progress p = { .phase = "restore" };
		job_post_progress(j, &p);
		r = restore_process(c->pid, reg, n, image_read, img, &c->st, c->why, sizeof(c->why));
	}
	store_image_close(img);
	return r;
}

static void rst_progress(struct job *j, const struct job_progress *p, void *userdata)
{
	daemon_forward_progress(((struct rst_job *)userdata)->req, p);
}

static void rst_done(struct job *j, int r, void *userdata)
{
	struct rst_job *c = userdata;
	struct daemon *d = c->d;
	struct session *s = c->s;

	if (r < 0) {
		request_fail(c->req, r, "restore of pid %d failed: %s", (int)c->pid,
			     c->why[0] ? c->why : strerror(-r));
	} else {
		Wpmig__Response resp = WPMIG__RESPONSE__INIT;
		Wpmig__RestoreResult rr = WPMIG__RESTORE_RESULT__INIT;

		log_info("pid %d: restored %s/%llu: %llu of %llu pages written, pause %.2f ms",
			 (int)c->pid, c->set, (unsigned long long)c->generation,
			 (unsigned long long)c->st.pages_written,
			 (unsigned long long)c->st.pages_checked, ns_to_ms(c->st.pause_ns));
		rr.set = c->set;
		rr.generation = c->generation;
		rr.pages = c->st.pages_written;
		rr.bytes = c->st.pages_written * PAGE_SIZE_4K;
		rr.pause_ms = ns_to_ms(c->st.pause_ns);
		rr.duration_ms = ns_to_ms(c->st.ns);
		resp.result_case = WPMIG__RESPONSE__RESULT_RESTORE;
		resp.restore = &rr;
		request_reply(c->req, &resp);
	}
	free(c->set);
	free(c);
	if (s) {
		s->job = NULL;
		session_enter_state(s, s->exited ? SESSION_FAILED : SESSION_TRACKING);
		daemon_session_settle(d, s);
	}
}

static const struct job_ops rst_ops = { "restore", rst_run, rst_done, rst_progress };

void cmd_restore(struct daemon *d, struct request *req, const Wpmig__Request *msg)
{
	const Wpmig__RestoreRequest *m = msg->restore;
	struct session *s = session_find(&d->sessions, m->pid);
	struct rst_job *c;
	char why[256] = "";
	int r;

	if (!store_set_name_valid(m->set ? m->set : "")) {
		request_fail(req, -EINVAL, "invalid set name \"%s\"", m->set ? m->set : "");
		return;
	}
	if (s && (s->state != SESSION_TRACKING || s->job)) {
		request_fail(req, -EBUSY, "pid %d is %s; try again when it is TRACKING", (int)m->pid,
			     session_state_name(s->state));
		return;
	}
	if (!s && (r = target_check(m->pid, why, sizeof(why))) < 0) {
		request_fail(req, r, "cannot restore pid %d: %s", (int)m->pid, why);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->set = strdup(m->set))) {
		free(c);
		request_fail(req, -ENOMEM, "out of memory");
		return;
	}
	c->d = d;
	c->s = s;
	c->req = req;
	c->pid = m->pid;
	c->generation = m->generation;
	if (s)
		session_enter_state(s, SESSION_RESTORING);
	r = job_submit(d->jobs, &rst_ops, c, s ? &s->job : NULL);
	if (r < 0) {
		request_fail(req, r, "cannot start the restore: %s", strerror(-r));
		if (s)
			session_enter_state(s, SESSION_TRACKING);
		free(c->set);
		free(c);
	}
}
