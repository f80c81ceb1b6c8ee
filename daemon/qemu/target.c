// SPDX-License-Identifier: GPL-2.0-only
/* The destination of a QEMU migration (target.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/util.h"
#include "internal.h"
#include "qemu/target.h"
#include "track/regions.h"

#define QMP_TIMEOUT_MS 10000
#define FINISH_TIMEOUT_MS 60000
#define MAX_TARGETS 16 /* migrations received at once */

static const char *const tstate_names[] = { "receiving", "finishing", "running", "failed" };

static void target_free(struct target *t)
{
	if (!t)
		return;
	qmp_close(t->qmp);
	for (size_t i = 0; i < t->n; i++)
		closep(&t->b[i].fd);
	regions_free(t->regions, t->n_regions);
	free(t);
}

int qemu_targets_new(const char *dir, struct qemu_targets **ret)
{
	struct qemu_targets *ts = calloc(1, sizeof(*ts));

	if (!ts)
		return -ENOMEM;
	pthread_mutex_init(&ts->lock, NULL);
	if (qemu_targets_set_dir(ts, dir) < 0) {
		qemu_targets_free(ts);
		return -ENOMEM;
	}
	*ret = ts;
	return 0;
}

void qemu_targets_free(struct qemu_targets *ts)
{
	if (!ts)
		return;
	while (ts->list) {
		struct target *t = ts->list;

		ts->list = t->next;
		target_free(t);
	}
	free(ts->dir);
	pthread_mutex_destroy(&ts->lock);
	free(ts);
}

int qemu_targets_set_dir(struct qemu_targets *ts, const char *dir)
{
	char *copy = dir && dir[0] ? strdup(dir) : NULL;

	if (dir && dir[0] && !copy)
		return -ENOMEM;
	pthread_mutex_lock(&ts->lock);
	free(ts->dir);
	ts->dir = copy;
	pthread_mutex_unlock(&ts->lock);
	return 0;
}

/* ---- a migration's destination QEMU ---- */

/* Is path a socket under dir (symlinks resolved)?  rpath: the resolved
 * path, the one to connect to (path itself could be changed meanwhile). */
static int check_qmp_path(const char *dir, const char *path, char rpath[PATH_MAX], char *why,
			  size_t why_len)
{
	char rdir[PATH_MAX];
	struct stat st;
	size_t n;

	if (!dir) {
		snprintf(why, why_len, "this daemon takes no migrations: set incoming_qmp_dir in "
			 "wpmigd.conf to the directory of the destination QEMUs' QMP sockets");
		return -EPERM;
	}
	if (!realpath(dir, rdir) || !realpath(path, rpath)) {
		snprintf(why, why_len, "destination QMP socket %s: %m", path);
		return -ENOENT;
	}
	n = strlen(rdir);
	if (strncmp(rpath, rdir, n) != 0 || rpath[n] != '/') {
		snprintf(why, why_len, "destination QMP socket %s is not under incoming_qmp_dir %s",
			 path, dir);
		return -EPERM;
	}
	if (stat(rpath, &st) < 0 || !S_ISSOCK(st.st_mode)) {
		snprintf(why, why_len, "destination QMP socket %s is not a socket", path);
		return -ENOTSOCK;
	}
	return 0;
}

static int set_capabilities(struct qmp *q, struct qmp_error *err)
{
	json_object *caps = json_object_new_array();
	static const char *const names[] = { "x-ignore-shared", "events" };

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		json_object *c = json_object_new_object();

		json_object_object_add(c, "capability", json_object_new_string(names[i]));
		json_object_object_add(c, "state", json_object_new_boolean(true));
		json_object_array_add(caps, c);
	}
	return qmp_executev(q, "migrate-set-capabilities", QMP_TIMEOUT_MS, NULL, err,
			    "capabilities", caps, NULL);
}

static int qemu_status(struct qmp *q, char *buf, size_t len)
{
	json_object *st = NULL;
	int r = qmp_execute(q, "query-status", NULL, QMP_TIMEOUT_MS, &st, NULL);

	if (r == 0)
		snprintf(buf, len, "%s", qmp_str(st, "status") ? qmp_str(st, "status") : "?");
	json_object_put(st);
	return r;
}

/* The destination's backends against the source's: same ids and sizes. */
static int match_backends(struct target *t, const struct qemu_ram *ram,
			  const Wpmig__Peer__MigrateTarget *m, char *why, size_t why_len)
{
	for (size_t i = 0; i < m->n_backends; i++) {
		const Wpmig__Peer__MigrateBackend *sb = m->backends[i];
		const struct qemu_backend *db = qemu_ram_find(ram, sb->id);
		struct tbackend *tb = &t->b[t->n];
		int r;

		for (size_t j = 0; j < i; j++)
			if (!strcmp(m->backends[j]->id, sb->id)) {
				snprintf(why, why_len, "memory backend '%s' named twice", sb->id);
				return -EINVAL;
			}
		if (!db) {
			snprintf(why, why_len, "the destination QEMU has no memory backend '%s': start "
				 "it with the same backend ids as the source", sb->id);
			return -ENOENT;
		}
		if (db->size != sb->size) {
			snprintf(why, why_len, "destination memory backend '%s' has %" PRIu64 " bytes, "
				 "the source's %" PRIu64 ": start it with size=%" PRIu64 "M", sb->id,
				 db->size, sb->size, sb->size >> 20);
			return -EINVAL;
		}
		*tb = (struct tbackend){ .src_start = sb->start, .size = sb->size, .fd = -1 };
		snprintf(tb->id, sizeof(tb->id), "%s", sb->id);
		r = qemu_backend_open(ram->pid, db, &tb->fd);
		if (r < 0) {
			snprintf(why, why_len, "cannot open destination backend '%s' of QEMU %d: %s",
				 sb->id, (int)ram->pid, strerror(-r));
			return r;
		}
		t->n++;
	}
	if (ram->n != m->n_backends) {
		snprintf(why, why_len, "the destination QEMU has %zu memory backends, the source %zu",
			 ram->n, m->n_backends);
		return -EINVAL;
	}
	return 0;
}

static int target_new(const char *dir, uint64_t session, const Wpmig__Peer__MigrateTarget *m,
		      struct target **ret, char *why, size_t why_len)
{
	struct target *t = calloc(1, sizeof(*t));
	struct qmp_error err = { "", "" };
	struct qemu_ram ram;
	char st[32] = "", rpath[PATH_MAX];
	int r;

	if (!t)
		return -ENOMEM;
	t->session = session;
	t->t0_ns = now_ns();
	snprintf(t->qmp_path, sizeof(t->qmp_path), "%s", m->qmp);
	r = check_qmp_path(dir, m->qmp, rpath, why, why_len);
	if (r == 0 && (r = qmp_open(rpath, QMP_TIMEOUT_MS, &t->qmp)) < 0)
		snprintf(why, why_len, "cannot connect to the destination QMP socket %s: %s", m->qmp,
			 strerror(-r));
	if (r == 0 && (r = qemu_status(t->qmp, st, sizeof(st))) == 0 && strcmp(st, "inmigrate")) {
		snprintf(why, why_len, "the destination QEMU is %s, not waiting for an incoming "
			 "migration: start it with -incoming URI (or -incoming defer)", st);
		r = -EBUSY;
	}
	if (r == 0 && (r = qemu_ram_discover(t->qmp, QMP_TIMEOUT_MS, &ram, &err)) < 0)
		snprintf(why, why_len, "destination QEMU: %s", err.desc);
	if (r == 0 && (r = qemu_ram_refusal(t->qmp, QMP_TIMEOUT_MS, &ram, false, why, why_len)) == 0)
		r = match_backends(t, &ram, m, why, why_len);
	if (r == 0 && (r = set_capabilities(t->qmp, &err)) < 0)
		snprintf(why, why_len, "destination QEMU refused x-ignore-shared: %s", err.desc);
	/* -incoming defer waits for this; a QEMU already listening refuses it. */
	if (r == 0 && m->uri && m->uri[0])
		qmp_executev(t->qmp, "migrate-incoming", QMP_TIMEOUT_MS, NULL, NULL, "uri",
			     json_object_new_string(m->uri), NULL);
	if (r < 0) {
		target_free(t);
		return r;
	}
	log_info("migration %016llx: destination QEMU %d (%s), %zu backends", (unsigned long long)session,
		 (int)ram.pid, m->qmp, t->n);
	*ret = t;
	return 0;
}

/* QEMU's MIGRATION events until one says completed (0) or failed. */
static int wait_incoming(struct target *t, int64_t *done_us, char *why, size_t why_len)
{
	uint64_t deadline = now_ns() + FINISH_TIMEOUT_MS * 1000000ull;

	for (;;) {
		_cleanup_(qmp_event_freep) struct qmp_event *e = NULL;
		uint64_t now = now_ns();
		const char *status;
		int r = now < deadline ? qmp_wait_event(t->qmp, "MIGRATION",
							(int)((deadline - now) / 1000000) + 1, &e)
				       : -ETIMEDOUT;

		if (r < 0) {
			snprintf(why, why_len, "the destination QEMU did not complete the device state "
				 "migration: %s", r == -ETIMEDOUT ? "timed out" : strerror(-r));
			return r;
		}
		status = qmp_str(e->data, "status");
		if (status && !strcmp(status, "completed")) {
			*done_us = e->qemu_us;
			return 0;
		}
		if (status && (!strcmp(status, "failed") || !strcmp(status, "cancelled"))) {
			snprintf(why, why_len, "the destination QEMU's incoming migration %s", status);
			return -EIO;
		}
	}
}

/* Device state arrived: the guest runs.  QEMU starts it itself before it
 * reports the migration completed when the source guest was running when
 * QEMU stopped it (its RESUME event is then read already); else (the
 * source guest had been paused, or this QEMU runs with -S) cont. */
static int target_finish(struct target *t, int64_t *resumed_us, int64_t *incoming_us,
			 char *why, size_t why_len)
{
	_cleanup_(qmp_event_freep) struct qmp_event *e = NULL;
	struct qmp_error err = { "", "" };
	int r;

	t->state = T_FINISHING;
	r = wait_incoming(t, incoming_us, why, why_len);
	if (r == 0 && qmp_wait_event(t->qmp, "RESUME", 0, &e) == 0)
		goto resumed;
	if (r == 0 && (r = qmp_execute(t->qmp, "cont", NULL, QMP_TIMEOUT_MS, NULL, &err)) < 0)
		snprintf(why, why_len, "destination QEMU refused cont: %s",
			 err.class[0] ? err.desc : strerror(-r));
	if (r == 0 && (r = qmp_wait_event(t->qmp, "RESUME", QMP_TIMEOUT_MS, &e)) < 0)
		snprintf(why, why_len, "the destination guest did not resume: %s", strerror(-r));
resumed:
	t->state = r == 0 ? T_RUNNING : T_FAILED;
	if (r == 0) {
		*resumed_us = e->qemu_us;
		log_info("migration %016llx: destination guest running", (unsigned long long)t->session);
	}
	return r;
}

static struct target *find(struct qemu_targets *ts, uint64_t session)
{
	for (struct target *t = ts->list; t; t = t->next)
		if (t->session == session)
			return t;
	return NULL;
}

/* Open of a generation: its number, and the parent's table for increments. */
static int open_generation(struct target *t, const Wpmig__Peer__Open *m,
			   struct peer_target_open *out, char *why, size_t why_len)
{
	char st[32] = "";
	int q = qemu_status(t->qmp, st, sizeof(st)), r;

	/* Fail in pre-copy, not at the switchover, when it went away. */
	if (q < 0 || strcmp(st, "inmigrate")) {
		snprintf(why, why_len, "the destination QEMU %s", q < 0 ? "is gone (its QMP socket "
			 "closed)" : "no longer waits for an incoming migration");
		return q < 0 ? q : -EBUSY;
	}
	out->newest = t->generation;
	out->newest_created_ns = (int64_t)t->generation;
	if (!m->full && (m->parent != t->generation || m->parent_created_ns != (int64_t)m->parent)) {
		snprintf(why, why_len, "generation %llu is not the last one written here (%llu)",
			 (unsigned long long)m->parent, (unsigned long long)t->generation);
		return -ESTALE;
	}
	if (!m->full) {
		r = regions_copy(t->regions, t->n_regions, &out->parent_regions);
		if (r < 0)
			return r;
		out->n_parent_regions = t->n_regions;
	}
	out->sink = target_sink_new(t, t->generation + 1, m->full ? 0 : t->generation);
	if (!out->sink) {
		regions_free(out->parent_regions, out->n_parent_regions);
		out->parent_regions = NULL;
		return -ENOMEM;
	}
	out->generation = t->generation + 1;
	return 0;
}

static int t_open(void *ud, uint64_t session, const Wpmig__Peer__Open *m,
		  struct peer_target_open *out, char *why, size_t why_len)
{
	struct qemu_targets *ts = ud;
	struct target *t;
	char *dir;
	size_t n = 0;
	int r;

	pthread_mutex_lock(&ts->lock);
	t = find(ts, session);
	dir = ts->dir ? strdup(ts->dir) : NULL;
	for (struct target *o = ts->list; o; o = o->next)
		n++;
	pthread_mutex_unlock(&ts->lock);
	if (!t && n >= MAX_TARGETS) {
		free(dir);
		snprintf(why, why_len, "%d migrations are being received already", MAX_TARGETS);
		return -EBUSY;
	}
	if (!t) {
		if (m->migrate->finish) {
			snprintf(why, why_len, "no migration of this source here to finish");
			free(dir);
			return -ENOENT;
		}
		r = target_new(dir, session, m->migrate, &t, why, why_len);
		free(dir);
		if (r < 0)
			return r;
		pthread_mutex_lock(&ts->lock);
		t->next = ts->list;
		ts->list = t;
		pthread_mutex_unlock(&ts->lock);
	} else {
		free(dir);
	}
	if (t->state != T_RECEIVING) {
		snprintf(why, why_len, "this migration is %s already", tstate_names[t->state]);
		return -EALREADY;
	}
	/* One connection at a time uses a target (the receiver runs its
	 * Opens one by one), so t needs no lock of its own. */
	if (m->migrate->finish)
		return target_finish(t, &out->resumed_us, &out->incoming_us, why, why_len);
	return open_generation(t, m, out, why, why_len);
}

/* The source's connection ended: the migration is over either way.  A
 * destination that was not resumed stays paused (inmigrate); its QEMU is
 * the operator's to stop. */
static void t_closed(void *ud, uint64_t session)
{
	struct qemu_targets *ts = ud;
	struct target *t, **pp;

	pthread_mutex_lock(&ts->lock);
	for (pp = &ts->list; (t = *pp) && t->session != session; pp = &t->next)
		;
	if (t)
		*pp = t->next;
	pthread_mutex_unlock(&ts->lock);
	if (!t)
		return;
	if (t->state != T_RUNNING)
		log_warning("migration %016llx: connection closed while %s: destination QEMU left "
			    "paused, not resumed", (unsigned long long)session, tstate_names[t->state]);
	target_free(t);
}

const struct peer_target_ops qemu_target_ops = { .open = t_open, .closed = t_closed };

size_t qemu_targets_list(struct qemu_targets *ts, struct qemu_target_info *out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&ts->lock);
	for (struct target *t = ts->list; t && n < max; t = t->next, n++) {
		out[n] = (struct qemu_target_info){
			.generation = t->generation, .pages_written = atomic_load(&t->pages_written),
			.pages_zeroed = atomic_load(&t->pages_zeroed),
			.age_ms = (now_ns() - t->t0_ns) / 1000000,
		};
		snprintf(out[n].qmp, sizeof(out[n].qmp), "%s", t->qmp_path);
		snprintf(out[n].state, sizeof(out[n].state), "%s", tstate_names[t->state]);
	}
	pthread_mutex_unlock(&ts->lock);
	return n;
}
