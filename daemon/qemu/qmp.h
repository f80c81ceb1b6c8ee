/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A blocking QMP client: one connection, used by one thread at a time (a
 * job thread of the daemon, a test, a benchmark).  Commands wait for their
 * own response; asynchronous events that arrive meanwhile are queued, each
 * with the time it was received, and are taken later by name.
 *
 *   qmp_open()          connect (with a timeout), read the greeting, send
 *                       qmp_capabilities; the QEMU PID comes from SO_PEERCRED
 *   qmp_execute()       one command; its "return" value or the QMP error
 *   qmp_wait_event()    the oldest queued event of a name, waiting for it
 *
 * Errors are negative errnos: -ETIMEDOUT (no answer in time), -ECONNRESET
 * (QEMU closed the socket or died), -EBADMSG (not QMP), -EREMOTEIO (QEMU
 * answered with an error: class and description in struct qmp_error).
 * Nothing here logs.
 */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct qmp;

struct qmp_error {
	char class[64]; /* "GenericError", "CommandNotFound", ... */
	char desc[256];
};

struct qmp_event {
	json_object *obj;  /* the whole message */
	const char *name;  /* its "event" member */
	json_object *data; /* its "data" member, or NULL */
	uint64_t recv_ns;  /* CLOCK_MONOTONIC when it was read */
	int64_t qemu_us;   /* QEMU's own timestamp (realtime), microseconds */
	struct qmp_event *next;
};

/* Connect to the QMP unix socket at path; timeout_ms covers connect,
 * greeting and capabilities negotiation. */
int qmp_open(const char *path, int timeout_ms, struct qmp **ret);
void qmp_close(struct qmp *q);
static inline void qmp_closep(struct qmp **q)
{
	qmp_close(*q);
}

/* The QEMU process on the other end (SO_PEERCRED at connect). */
pid_t qmp_pid(const struct qmp *q);
/* QEMU's version from the greeting, as major * 10000 + minor * 100 + micro. */
unsigned qmp_version(const struct qmp *q);

/*
 * Run cmd with args (taken over, may be NULL) and wait at most timeout_ms
 * for its response.  On success *ret (when not NULL) gets the "return"
 * value, a reference the caller puts.  -EREMOTEIO fills *err when given.
 */
int qmp_execute(struct qmp *q, const char *cmd, json_object *args, int timeout_ms,
		json_object **ret, struct qmp_error *err);

/* Build-and-run helper: args as alternating key / json_object* pairs, NULL
 * terminated ("value", json_object_new_int(1), NULL). */
int qmp_executev(struct qmp *q, const char *cmd, int timeout_ms, json_object **ret,
		 struct qmp_error *err, ...) __attribute__((sentinel));

/*
 * Take the oldest queued event called name, reading from QEMU until one
 * arrives or timeout_ms passes (0: only what is already readable).  The
 * caller frees it with qmp_event_free().
 */
int qmp_wait_event(struct qmp *q, const char *name, int timeout_ms, struct qmp_event **ret);
/* Read whatever QEMU has sent so far without blocking (queues events). */
int qmp_pump(struct qmp *q);
/* Drop every queued event. */
void qmp_drop_events(struct qmp *q);
void qmp_event_free(struct qmp_event *e);
static inline void qmp_event_freep(struct qmp_event **e)
{
	qmp_event_free(*e);
}

/*
 * Hand fd to QEMU (SCM_RIGHTS on one byte of whitespace, which QMP
 * ignores); QEMU keeps it until a command takes it, as qmp_getfd() does:
 * getfd names it, for a URI such as "fd:NAME".  The caller keeps its copy.
 */
int qmp_send_fd(struct qmp *q, int fd, int timeout_ms);
int qmp_getfd(struct qmp *q, const char *name, int fd, int timeout_ms, struct qmp_error *err);

/* Convenience: a string member of an object, or NULL. */
const char *qmp_str(json_object *o, const char *key);
/* The length of o when it is an array, else 0: a reply's shape is QEMU's
 * word, and json_object_array_length() asserts on anything but an array. */
size_t qmp_array_length(json_object *o);
