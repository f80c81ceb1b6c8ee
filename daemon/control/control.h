/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The control socket: a listening unix socket (socket-activated or our
 * own), one struct conn per client with its bufferevent, frame limits and
 * credentials, and requests handed to the daemon's dispatch.
 *
 * Each Request frame becomes a struct request.  Whoever handles it answers
 * it exactly once with request_reply() or request_fail() (which free it),
 * now or later from a job's done() on the loop, and may send
 * request_progress() before.  A request outlives its connection: once the
 * client is gone, replies to it are dropped.
 */
#pragma once

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "control.pb-c.h"

struct control;
struct request;

#define CONTROL_MAX_FRAME (64 * 1024) /* a request is small */

struct control_limits {
	unsigned max_connections;
	unsigned max_requests; /* in flight per connection */
	uint64_t max_output;   /* queued bytes per connection before we drop it */
	bool has_group;        /* members of group may connect besides root */
	gid_t group;
};

struct control_ops {
	/* msg belongs to the control socket and is freed when this returns:
	 * copy what a job needs. */
	void (*dispatch)(void *userdata, struct request *req, const Wpmig__Request *msg);
	/* The number of connections changed. */
	void (*changed)(void *userdata);
};

/* Socket activation (exactly one unix stream socket passed) or a socket
 * of our own at path (its directory created, a stale socket replaced). */
int control_open(struct event_base *base, const char *path, const struct control_ops *ops,
		 void *userdata, struct control **ret);
void control_set_limits(struct control *c, const struct control_limits *l);
/* Close the listener; remove the socket file if we created it. */
void control_stop_accepting(struct control *c);
void control_free(struct control *c);
unsigned control_n_connections(const struct control *c);
bool control_activated(const struct control *c);

uint32_t request_id(const struct request *req);
/* Sets resp->id, sends, frees req. */
void request_reply(struct request *req, Wpmig__Response *resp);
/* Answers with a negative errno and a message; returns error. */
int request_fail(struct request *req, int error, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void request_progress(struct request *req, Wpmig__Progress *p);
/* uid of the client that sent it. */
uid_t request_uid(const struct request *req);

/* auth.c: may this peer use the control socket?  0, or -EACCES /
 * -EPERM with why filled for the client. */
struct peer_cred {
	pid_t pid;
	uid_t uid;
	gid_t gid;
};
int control_auth_peer(int fd, const struct control_limits *l, struct peer_cred *cred,
		      char *why, size_t why_len);
