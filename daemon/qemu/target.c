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
#include <time.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/util.h"
#include "pipeline/sink.h"
#include "qemu/backend.h"
#include "qemu/qmp.h"
#include "qemu/target.h"
#include "track/regions.h"

#define QMP_TIMEOUT_MS 10000
#define FINISH_TIMEOUT_MS 60000

enum tstate { T_RECEIVING, T_FINISHING, T_RUNNING, T_FAILED };
static const char *const tstate_names[] = { "receiving", "finishing", "running", "failed" };

struct tbackend {
	char id[QEMU_BACKEND_ID_MAX];
	uint64_t src_start, size;
	int fd;
};

struct target {
	uint64_t session;
	char qmp_path[256];
	struct qmp *qmp;
	struct tbackend b[QEMU_MAX_BACKENDS];
	size_t n;
	enum tstate state;
	uint64_t generation; /* committed */
	struct pass_region *regions;
	size_t n_regions;
	uint64_t t0_ns;
	atomic_uint_least64_t pages_written, pages_zeroed;
	struct target *next;
};

struct qemu_targets {
	pthread_mutex_t lock;
	char *dir;
	struct target *list;
};

/* A generation being received into a target. */
struct tsink {
	struct sink sink;
	struct target *t;
	uint64_t generation, parent;
	atomic_uint_least64_t data_pages, zero_pages;
};

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

/* ---- pages into the backends ---- */

static struct tbackend *backend_at(struct target *t, uint64_t addr, uint64_t *off,
				   uint64_t *room)
{
	for (size_t i = 0; i < t->n; i++) {
		struct tbackend *b = &t->b[i];

		if (addr >= b->src_start && addr - b->src_start < b->size) {
			*off = addr - b->src_start;
			*room = b->size - *off;
			return b;
		}
	}
	return NULL;
}

static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Make [off, off + len) zero, writing nothing where it already is (a hole:
 * a fresh backend is one big hole). */
static int zero_range(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[PAGE_SIZE_4K];
	off_t d = lseek(fd, (off_t)off, SEEK_DATA);

	if ((d < 0 && errno == ENXIO) || (d >= 0 && (uint64_t)d >= off + len))
		return 0;
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		return 0;
	for (uint64_t o = 0; o < len; o += PAGE_SIZE_4K) {
		int r = pwrite_all(fd, zeros, PAGE_SIZE_4K, off + o);

		if (r < 0)
			return r;
	}
	return 0;
}

/* Pages [addr, addr + n pages): data at p, or zero when p is NULL. */
static int put_run(struct tsink *s, uint64_t addr, uint64_t pages, const uint8_t *p)
{
	while (pages) {
		uint64_t off, room;
		struct tbackend *b = backend_at(s->t, addr, &off, &room);
		uint64_t n = MIN(pages, room / PAGE_SIZE_4K);
		int r;

		if (!b)
			return -ERANGE;
		r = p ? pwrite_all(b->fd, p, n * PAGE_SIZE_4K, off)
		      : zero_range(b->fd, off, n * PAGE_SIZE_4K);
		if (r < 0)
			return r;
		if (p) {
			atomic_fetch_add(&s->t->pages_written, n);
			atomic_fetch_add(&s->data_pages, n);
			p += n * PAGE_SIZE_4K;
		} else {
			atomic_fetch_add(&s->t->pages_zeroed, n);
			atomic_fetch_add(&s->zero_pages, n);
		}
		addr += n * PAGE_SIZE_4K;
		pages -= n;
	}
	return 0;
}

static int t_put_decoded(struct sink *sk, const struct enc_chunk *c, const uint8_t *pages)
{
	struct tsink *s = (struct tsink *)sk;
	const uint8_t *p = pages;

	for (uint32_t i = 0; i < c->n_ext; i++) {
		const struct ext *e = &c->ext[i];
		int r = put_run(s, e->addr, e->pages, e->kind == EXT_DATA ? p : NULL);

		if (r < 0)
			return r;
		if (e->kind == EXT_DATA)
			p += (size_t)e->pages * PAGE_SIZE_4K;
	}
	return 0;
}

static int t_put_chunk(struct sink *sk, const struct enc_chunk *c)
{
	return -EOPNOTSUPP; /* the receiver decodes for put_decoded */
}

static int t_put_zero(struct sink *sk, uint64_t seq, const struct range_set *zero)
{
	struct tsink *s = (struct tsink *)sk;

	for (size_t i = 0; i < zero->n; i++) {
		int r = put_run(s, zero->r[i].start,
				(zero->r[i].end - zero->r[i].start) / PAGE_SIZE_4K, NULL);

		if (r < 0)
			return r;
	}
	return 0;
}

static int t_commit(struct sink *sk, const struct pass_region *regions, size_t n,
		    struct gen_summary *out)
{
	struct tsink *s = (struct tsink *)sk;
	struct target *t = s->t;
	struct pass_region *copy = NULL;
	int r = 0;

	/* Durable before the source may stop waiting for it. */
	for (size_t i = 0; r == 0 && i < t->n; i++)
		if (fdatasync(t->b[i].fd) < 0 && errno != EINVAL)
			r = -errno;
	if (r == 0)
		r = regions_copy(regions, n, &copy);
	if (r < 0)
		return r;
	regions_free(t->regions, t->n_regions);
	t->regions = copy;
	t->n_regions = n;
	t->generation = s->generation;
	*out = (struct gen_summary){
		.generation = s->generation, .parent = s->parent,
		.data_pages = atomic_load(&s->data_pages), .zero_pages = atomic_load(&s->zero_pages),
		.raw_bytes = atomic_load(&s->data_pages) * PAGE_SIZE_4K,
	};
	out->bytes_stored = out->raw_bytes;
	return 0;
}

static void t_free(struct sink *sk)
{
	free(sk);
}

static const struct sink_ops tsink_ops = {
	.put_chunk = t_put_chunk,
	.put_decoded = t_put_decoded,
	.put_zero = t_put_zero,
	.commit = t_commit,
	.abort = t_free,
	.close = t_free,
};

/* ---- a migration's destination QEMU ---- */

/* Is path a socket under dir (symlinks resolved)? */
static int check_qmp_path(const char *dir, const char *path, char *why, size_t why_len)
{
	char rdir[PATH_MAX], rpath[PATH_MAX];
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
	char st[32] = "";
	int r;

	if (!t)
		return -ENOMEM;
	t->session = session;
	t->t0_ns = now_ns();
	snprintf(t->qmp_path, sizeof(t->qmp_path), "%s", m->qmp);
	r = check_qmp_path(dir, m->qmp, why, why_len);
	if (r == 0 && (r = qmp_open(m->qmp, QMP_TIMEOUT_MS, &t->qmp)) < 0)
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
static int wait_incoming(struct target *t, char *why, size_t why_len)
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
		if (status && !strcmp(status, "completed"))
			return 0;
		if (status && (!strcmp(status, "failed") || !strcmp(status, "cancelled"))) {
			snprintf(why, why_len, "the destination QEMU's incoming migration %s", status);
			return -EIO;
		}
	}
}

/* Device state arrived: run the guest (it comes up paused, the source
 * having been stopped before its migrate). */
static int target_finish(struct target *t, int64_t *resumed_us, char *why, size_t why_len)
{
	_cleanup_(qmp_event_freep) struct qmp_event *e = NULL;
	struct qmp_error err = { "", "" };
	char st[32] = "";
	int r;

	t->state = T_FINISHING;
	r = wait_incoming(t, why, why_len);
	if (r == 0 && (r = qemu_status(t->qmp, st, sizeof(st))) < 0)
		snprintf(why, why_len, "destination QEMU: query-status: %s", strerror(-r));
	if (r == 0 && strcmp(st, "running") && (r = qmp_execute(t->qmp, "cont", NULL,
								QMP_TIMEOUT_MS, NULL, &err)) < 0)
		snprintf(why, why_len, "destination QEMU refused cont: %s", err.desc);
	if (r == 0 && (r = qmp_wait_event(t->qmp, "RESUME", QMP_TIMEOUT_MS, &e)) < 0)
		snprintf(why, why_len, "the destination guest did not resume: %s", strerror(-r));
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
	struct tsink *s;
	int r;

	char st[32] = "";
	int q = qemu_status(t->qmp, st, sizeof(st));

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
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->sink.ops = &tsink_ops;
	s->t = t;
	s->generation = t->generation + 1;
	s->parent = m->full ? 0 : t->generation;
	out->sink = &s->sink;
	out->generation = s->generation;
	return 0;
}

static int t_open(void *ud, uint64_t session, const Wpmig__Peer__Open *m,
		  struct peer_target_open *out, char *why, size_t why_len)
{
	struct qemu_targets *ts = ud;
	struct target *t;
	char *dir;
	int r;

	pthread_mutex_lock(&ts->lock);
	t = find(ts, session);
	dir = ts->dir ? strdup(ts->dir) : NULL;
	pthread_mutex_unlock(&ts->lock);
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
		return target_finish(t, &out->resumed_us, why, why_len);
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
