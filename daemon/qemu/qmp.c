// SPDX-License-Identifier: GPL-2.0-only
/* A blocking QMP client (see qmp.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "qemu/qmp.h"

/* QEMU's replies are small; qom-list of a big machine is the largest seen
 * (tens of KiB).  A line longer than this is not QMP. */
#define QMP_MAX_LINE (4u << 20)
/* Events nobody took yet: the oldest go first beyond this. */
#define QMP_MAX_EVENTS 1024u

struct qmp {
	int fd;
	pid_t pid;
	unsigned version;
	uint64_t next_id;
	char *buf;
	size_t len, cap;
	struct qmp_event *events, **events_tail;
	unsigned n_events;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int ms_left(uint64_t deadline)
{
	uint64_t now = mono_ns();

	if (now >= deadline)
		return 0;
	return (int)((deadline - now + 999999) / 1000000);
}

const char *qmp_str(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

size_t qmp_array_length(json_object *o)
{
	return json_object_is_type(o, json_type_array) ? json_object_array_length(o) : 0;
}

void qmp_event_free(struct qmp_event *e)
{
	if (!e)
		return;
	json_object_put(e->obj);
	free(e);
}

void qmp_drop_events(struct qmp *q)
{
	while (q->events) {
		struct qmp_event *e = q->events;

		q->events = e->next;
		qmp_event_free(e);
	}
	q->events_tail = &q->events;
	q->n_events = 0;
}

void qmp_close(struct qmp *q)
{
	if (!q)
		return;
	qmp_drop_events(q);
	if (q->fd >= 0)
		close(q->fd);
	free(q->buf);
	free(q);
}

pid_t qmp_pid(const struct qmp *q)
{
	return q->pid;
}

unsigned qmp_version(const struct qmp *q)
{
	return q->version;
}

static int queue_event(struct qmp *q, json_object *o)
{
	struct qmp_event *e = calloc(1, sizeof(*e));
	json_object *ts, *v;

	if (!e) {
		json_object_put(o);
		return -ENOMEM;
	}
	e->obj = o;
	e->name = qmp_str(o, "event");
	e->recv_ns = mono_ns();
	if (json_object_object_get_ex(o, "data", &v))
		e->data = v;
	if (json_object_object_get_ex(o, "timestamp", &ts)) {
		json_object *s, *us;

		int64_t t;

		/* QEMU's word: a time that does not fit is no time (0) */
		if (json_object_object_get_ex(ts, "seconds", &s) &&
		    json_object_object_get_ex(ts, "microseconds", &us) &&
		    !__builtin_mul_overflow(json_object_get_int64(s), 1000000, &t) &&
		    !__builtin_add_overflow(t, json_object_get_int64(us), &t))
			e->qemu_us = t;
	}
	*q->events_tail = e;
	q->events_tail = &e->next;
	if (++q->n_events > QMP_MAX_EVENTS) {
		struct qmp_event *old = q->events;

		q->events = old->next;
		qmp_event_free(old);
		q->n_events--;
	}
	return 0;
}

/* Fill the buffer with what the socket holds; wait at most timeout_ms for
 * the first bytes.  0, -ETIMEDOUT, -ECONNRESET. */
static int read_some(struct qmp *q, int timeout_ms)
{
	struct pollfd p = { .fd = q->fd, .events = POLLIN };
	ssize_t n;
	int r;

	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (r == 0)
		return -ETIMEDOUT;
	if (q->cap - q->len < 65536) {
		size_t cap = q->cap ? q->cap * 2 : 131072;
		char *b;

		if (cap > QMP_MAX_LINE + 65536)
			return -EBADMSG;
		b = realloc(q->buf, cap);
		if (!b)
			return -ENOMEM;
		q->buf = b;
		q->cap = cap;
	}
	n = recv(q->fd, q->buf + q->len, q->cap - q->len, MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -ECONNRESET;
	if (n == 0)
		return -ECONNRESET;
	q->len += (size_t)n;
	return 0;
}

/* Take one complete line off the buffer as a JSON object: 1 and *ret, or 0
 * when no line is complete yet. */
static int next_message(struct qmp *q, json_object **ret)
{
	char *nl;
	size_t used;
	json_object *o;

	*ret = NULL;
	nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;
	if (!nl)
		return q->len > QMP_MAX_LINE ? -EBADMSG : 0;
	*nl = '\0';
	o = json_tokener_parse(q->buf);
	used = (size_t)(nl - q->buf) + 1;
	memmove(q->buf, nl + 1, q->len - used);
	q->len -= used;
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return -EBADMSG;
	}
	*ret = o;
	return 1;
}

/*
 * Read messages until one that is not an event arrives (returned), queuing
 * events; deadline in CLOCK_MONOTONIC ns, 0 for "only what is readable".
 */
static int read_reply(struct qmp *q, uint64_t deadline, json_object **ret)
{
	for (;;) {
		json_object *o;
		int r = next_message(q, &o);

		if (r < 0)
			return r;
		if (r > 0) {
			if (!qmp_str(o, "event")) {
				*ret = o;
				return 0;
			}
			r = queue_event(q, o);
			if (r < 0)
				return r;
			continue;
		}
		r = read_some(q, deadline ? ms_left(deadline) : 0);
		if (r < 0)
			return r;
	}
}

int qmp_pump(struct qmp *q)
{
	json_object *o = NULL;
	int r;

	/* Replies nobody waits for any more (a command that timed out) are
	 * dropped here; events are queued. */
	do {
		json_object_put(o);
		o = NULL;
		r = read_reply(q, 0, &o);
	} while (r == 0);
	return r == -ETIMEDOUT ? 0 : r;
}

static void fill_error(json_object *reply, struct qmp_error *err)
{
	json_object *e = NULL;
	const char *cls, *desc;

	if (!err)
		return;
	json_object_object_get_ex(reply, "error", &e);
	cls = qmp_str(e, "class");
	desc = qmp_str(e, "desc");
	snprintf(err->class, sizeof(err->class), "%s", cls ? cls : "?");
	snprintf(err->desc, sizeof(err->desc), "%s", desc ? desc : "?");
}

static int send_all(struct qmp *q, const char *s, size_t n, uint64_t deadline)
{
	while (n) {
		ssize_t w = send(q->fd, s, n, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			struct pollfd p = { .fd = q->fd, .events = POLLOUT };
			int r = poll(&p, 1, ms_left(deadline));

			if (r == 0)
				return -ETIMEDOUT;
			continue;
		}
		if (w < 0)
			return -ECONNRESET;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

int qmp_execute(struct qmp *q, const char *cmd, json_object *args, int timeout_ms,
		json_object **ret, struct qmp_error *err)
{
	uint64_t deadline = mono_ns() + (uint64_t)timeout_ms * 1000000ull, id = ++q->next_id;
	json_object *msg = json_object_new_object(), *reply = NULL, *v;
	const char *text;
	int r;

	if (ret)
		*ret = NULL;
	if (!msg) {
		json_object_put(args);
		return -ENOMEM;
	}
	json_object_object_add(msg, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(msg, "arguments", args);
	json_object_object_add(msg, "id", json_object_new_uint64(id));
	text = json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN);
	r = send_all(q, text, strlen(text), deadline);
	if (r == 0)
		r = send_all(q, "\n", 1, deadline);
	json_object_put(msg);
	while (r == 0) {
		r = read_reply(q, deadline, &reply);
		if (r < 0)
			break;
		/* A late reply to an earlier command that timed out: skip it. */
		if (!json_object_object_get_ex(reply, "id", &v) ||
		    json_object_get_uint64(v) != id) {
			json_object_put(reply);
			reply = NULL;
			continue;
		}
		if (json_object_object_get_ex(reply, "return", &v)) {
			if (ret)
				*ret = json_object_get(v);
		} else {
			fill_error(reply, err);
			r = -EREMOTEIO;
		}
		json_object_put(reply);
		break;
	}
	return r;
}

int qmp_executev(struct qmp *q, const char *cmd, int timeout_ms, json_object **ret,
		 struct qmp_error *err, ...)
{
	json_object *args = json_object_new_object();
	const char *key;
	va_list ap;

	if (!args)
		return -ENOMEM;
	va_start(ap, err);
	while ((key = va_arg(ap, const char *)))
		json_object_object_add(args, key, va_arg(ap, json_object *));
	va_end(ap);
	return qmp_execute(q, cmd, args, timeout_ms, ret, err);
}

static struct qmp_event *take_event(struct qmp *q, const char *name)
{
	for (struct qmp_event **pp = &q->events; *pp; pp = &(*pp)->next) {
		struct qmp_event *e = *pp;

		if (!e->name || strcmp(e->name, name) != 0)
			continue;
		*pp = e->next;
		if (q->events_tail == &e->next)
			q->events_tail = pp;
		e->next = NULL;
		q->n_events--;
		return e;
	}
	return NULL;
}

int qmp_wait_event(struct qmp *q, const char *name, int timeout_ms, struct qmp_event **ret)
{
	uint64_t deadline = mono_ns() + (uint64_t)timeout_ms * 1000000ull;

	for (;;) {
		json_object *o;
		int r;

		*ret = take_event(q, name);
		if (*ret)
			return 0;
		r = next_message(q, &o);
		if (r < 0)
			return r;
		if (r > 0) {
			if (qmp_str(o, "event")) {
				r = queue_event(q, o);
				if (r < 0)
					return r;
			} else {
				json_object_put(o);
			}
			continue;
		}
		r = read_some(q, ms_left(deadline));
		if (r < 0)
			return r;
	}
}

static int connect_unix(const char *path, uint64_t deadline, int *ret)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		int r = -errno;

		close(fd);
		return r;
	}
	/* A unix connect completes at once or is queued in the backlog
	 * (EAGAIN, not EINPROGRESS); either way the greeting tells. */
	(void)deadline;
	*ret = fd;
	return 0;
}

static int parse_greeting(struct qmp *q, json_object *g)
{
	json_object *qmp, *ver, *qemu, *v;
	unsigned parts[3] = { 0, 0, 0 };
	const char *names[3] = { "major", "minor", "micro" };

	if (!json_object_object_get_ex(g, "QMP", &qmp))
		return -EBADMSG;
	if (json_object_object_get_ex(qmp, "version", &ver) &&
	    json_object_object_get_ex(ver, "qemu", &qemu))
		for (int i = 0; i < 3; i++)
			if (json_object_object_get_ex(qemu, names[i], &v))
				parts[i] = (unsigned)json_object_get_int(v);
	q->version = parts[0] * 10000 + parts[1] * 100 + parts[2];
	return 0;
}

int qmp_open(const char *path, int timeout_ms, struct qmp **ret)
{
	uint64_t deadline = mono_ns() + (uint64_t)timeout_ms * 1000000ull;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	json_object *greeting = NULL;
	struct qmp *q;
	int r;

	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->fd = -1;
	q->events_tail = &q->events;
	r = connect_unix(path, deadline, &q->fd);
	if (r < 0)
		goto fail;
	if (getsockopt(q->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		r = -errno;
		goto fail;
	}
	/* 0: QEMU runs in a PID namespace we cannot see into, and its memory
	 * is reached through its pid (pidfd, /proc/PID/map_files). */
	if (cred.pid <= 0) {
		r = -ESRCH;
		goto fail;
	}
	q->pid = cred.pid;
	r = read_reply(q, deadline, &greeting);
	if (r < 0)
		goto fail;
	r = parse_greeting(q, greeting);
	json_object_put(greeting);
	if (r < 0)
		goto fail;
	r = qmp_execute(q, "qmp_capabilities", NULL, ms_left(deadline) ? ms_left(deadline) : 1,
			NULL, NULL);
	if (r < 0)
		goto fail;
	*ret = q;
	return 0;
fail:
	qmp_close(q);
	return r;
}

int qmp_send_fd(struct qmp *q, int fd, int timeout_ms)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (char *)" ", .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			      .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	uint64_t deadline = mono_ns() + (uint64_t)timeout_ms * 1000000ull;

	memset(u.buf, 0, sizeof(u.buf));
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	for (;;) {
		ssize_t w = sendmsg(q->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w == 1)
			return 0;
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return -ECONNRESET;
		struct pollfd p = { .fd = q->fd, .events = POLLOUT };
		if (poll(&p, 1, ms_left(deadline)) == 0)
			return -ETIMEDOUT;
	}
}

int qmp_getfd(struct qmp *q, const char *name, int fd, int timeout_ms, struct qmp_error *err)
{
	int r = qmp_send_fd(q, fd, timeout_ms);

	if (r < 0)
		return r;
	return qmp_executev(q, "getfd", timeout_ms, NULL, err, "fdname",
			    json_object_new_string(name), NULL);
}
