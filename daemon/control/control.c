// SPDX-License-Identifier: GPL-2.0-only
#include "control/control.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "frame.h"
#include "basic/log.h"
#include "basic/util.h"
#include "control/socket.h"

#define PARTIAL_FRAME_TIMEOUT_S 30 /* a frame started must be finished */
#define FLUSH_TIMEOUT_S 5          /* a refusal that cannot be written out at once */
/* Refusals logged: at most REFUSAL_LOG_BURST per REFUSAL_LOG_INTERVAL_S. */
#define REFUSAL_LOG_INTERVAL_S 10
#define REFUSAL_LOG_BURST 10

struct request {
	struct conn *conn; /* NULL once the client is gone */
	uint32_t id;
	uid_t uid;
	TAILQ_ENTRY(request) link;
};

struct conn {
	struct control *c;
	struct bufferevent *bev;
	uint64_t id;
	struct peer_cred cred;
	bool root;    /* counted in root's pool of connections */
	bool closing; /* answered an error: closed once that is written out */
	bool dropped; /* freed on the next loop iteration; sends nothing more */
	bool read_eof; /* the client shut its side: close once all is answered */
	uint64_t frame_start_ns; /* first byte of a frame not yet whole; 0: none */
	struct event *free_ev;
	unsigned n_requests;
	TAILQ_HEAD(, request) requests;
	TAILQ_ENTRY(conn) link;
};

struct control {
	struct event_base *base;
	struct evconnlistener *listener;
	struct control_socket sock;
	const struct control_ops *ops;
	void *userdata;
	struct control_limits lim;
	TAILQ_HEAD(, conn) conns;
	/* Open connections: [0] others, [1] root.  Each pool has
	 * max_connections, so no other user can crowd root out. */
	unsigned n_conns[2];
	uint64_t next_id;
	struct log_limit refusals; /* refusals logged, the rest counted */
};

static const uint16_t request_types[] = { FRAME_CTL_REQUEST };
static const struct frame_limits request_limits = {
	.max_length = CONTROL_MAX_FRAME, .types = request_types, .n_types = 1,
};

static void conn_free(struct conn *cn)
{
	struct control *c = cn->c;
	struct request *req;

	while ((req = TAILQ_FIRST(&cn->requests))) {
		TAILQ_REMOVE(&cn->requests, req, link);
		req->conn = NULL; /* its handler still answers it, into the void */
	}
	TAILQ_REMOVE(&c->conns, cn, link);
	c->n_conns[cn->root]--;
	log_debug("conn %llu: closed", (unsigned long long)cn->id);
	bufferevent_free(cn->bev);
	event_free(cn->free_ev);
	free(cn);
	if (c->ops->changed)
		c->ops->changed(c->userdata);
}

static void conn_on_free(evutil_socket_t fd, short what, void *arg)
{
	conn_free(arg);
}

/* Drop a client from inside a callback that still uses cn. */
static void conn_drop(struct conn *cn)
{
	cn->dropped = true;
	bufferevent_disable(cn->bev, EV_READ | EV_WRITE);
	event_active(cn->free_ev, 0, 0);
}

/* Queue a frame; false when the client does not read and is dropped. */
static bool conn_send(struct conn *cn, uint16_t type, const ProtobufCMessage *msg)
{
	struct evbuffer *out = bufferevent_get_output(cn->bev);
	uint8_t *buf;
	size_t len;

	if (cn->dropped)
		return false;
	if (frame_pack(type, msg, 0, &buf, &len) < 0)
		return true;
	if (evbuffer_get_length(out) + len > cn->c->lim.max_output) {
		log_warning("conn %llu: client reads too slowly (%zu bytes queued); dropping it",
			    (unsigned long long)cn->id, evbuffer_get_length(out));
		free(buf);
		conn_drop(cn);
		return false;
	}
	evbuffer_add(out, buf, len);
	free(buf);
	return true;
}

static void conn_on_write(struct bufferevent *bev, void *arg)
{
	struct conn *cn = arg;

	/* A refusal is out, or a half-closed client has all its answers.  On
	 * a unix socket the client reads what we wrote before it sees our
	 * close, even with its own request unread: no need to linger. */
	if (cn->closing || (cn->read_eof && cn->n_requests == 0))
		conn_drop(cn);
}

/*
 * Refusals are logged, but a client that makes them by the thousand must
 * not flood the log: REFUSAL_LOG_BURST lines per interval, then a count.
 */
static void log_refusal(struct control *c, const struct peer_cred *cred, const char *why)
{
	unsigned quiet;
	bool last = false, pass = log_limit_pass(&c->refusals, &quiet, &last);

	if (quiet)
		log_notice("%u more refused control connections were not logged", quiet);
	if (pass)
		log_notice("refused a control client (pid %d uid %u): %s%s", (int)cred->pid,
			   (unsigned)cred->uid, why, last ? "; for a while more refusals are "
			   "only counted" : "");
}

/* Answer a protocol error with id 0 and close once that is written out. */
static void conn_refuse(struct conn *cn, int error, const char *why)
{
	Wpmig__Response resp = WPMIG__RESPONSE__INIT;
	struct timeval tv = { FLUSH_TIMEOUT_S, 0 };

	log_refusal(cn->c, &cn->cred, why);
	resp.error = error;
	resp.message = (char *)why;
	if (!conn_send(cn, FRAME_CTL_RESPONSE, &resp.base))
		return;
	cn->closing = true;
	evbuffer_drain(bufferevent_get_input(cn->bev), SIZE_MAX);
	bufferevent_set_timeouts(cn->bev, &tv, &tv);
	if (evbuffer_get_length(bufferevent_get_output(cn->bev)) == 0)
		conn_on_write(cn->bev, cn);
}

/*
 * A client refused before it got a connection of its own (not allowed,
 * too many connections): one frame sent without waiting, and closed.  The
 * socket is new, so the small frame fits its buffer; nothing of ours
 * stays behind, so refusals cost nothing however many come.
 */
static void refuse_at_once(struct control *c, evutil_socket_t fd, const struct peer_cred *cred,
			   int error, const char *why)
{
	Wpmig__Response resp = WPMIG__RESPONSE__INIT;
	uint8_t *buf;
	size_t len;

	log_refusal(c, cred, why);
	resp.error = error;
	resp.message = (char *)why;
	if (frame_pack(FRAME_CTL_RESPONSE, &resp.base, 0, &buf, &len) == 0) {
		if (send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			log_debug_errno(errno, "refused client: %m");
		free(buf);
	}
	evutil_closesocket(fd);
}

static void conn_dispatch(struct conn *cn, const uint8_t *payload, uint32_t len)
{
	Wpmig__Request *msg = wpmig__request__unpack(NULL, len, payload);
	const char *field = NULL;
	bool clean = pb_strings_clean(&wpmig__request__descriptor, payload, len, &field) == 0;
	struct request *req;

	if (!msg) {
		conn_refuse(cn, -EBADMSG, "malformed request: cannot decode the message");
		return;
	}
	req = calloc(1, sizeof(*req));
	if (!req) {
		wpmig__request__free_unpacked(msg, NULL);
		conn_refuse(cn, -ENOMEM, "out of memory");
		return;
	}
	*req = (struct request){ .conn = cn, .id = msg->id, .uid = cn->cred.uid };
	TAILQ_INSERT_TAIL(&cn->requests, req, link);
	cn->n_requests++;
	log_debug("conn %llu: request %u", (unsigned long long)cn->id, msg->id);
	if (!clean && field)
		request_fail(req, -EINVAL, "malformed request: the string %s holds a NUL byte",
			     field);
	else if (!clean)
		request_fail(req, -EBADMSG, "malformed request: cannot decode the message");
	else if (cn->n_requests > cn->c->lim.max_requests)
		request_fail(req, -EBUSY, "too many requests in flight on this connection (max %u)",
			     cn->c->lim.max_requests);
	else
		cn->c->ops->dispatch(cn->c->userdata, req, msg);
	wpmig__request__free_unpacked(msg, NULL);
}

/* Take one whole frame from the input; false when more bytes are needed
 * or the connection was refused. */
static bool conn_take_frame(struct conn *cn)
{
	struct evbuffer *in = bufferevent_get_input(cn->bev);
	uint8_t raw[FRAME_HEADER_SIZE];
	struct frame_header h;
	const char *why;
	char msg[128];
	int r;

	if (evbuffer_copyout(in, raw, sizeof(raw)) < (ssize_t)sizeof(raw))
		return false;
	r = frame_header_decode(raw, &request_limits, &h, &why);
	if (r < 0) {
		snprintf(msg, sizeof(msg), "malformed frame: %s", why);
		conn_refuse(cn, r, msg);
		return false;
	}
	if (evbuffer_get_length(in) < FRAME_HEADER_SIZE + (size_t)h.length)
		return false;
	evbuffer_drain(in, FRAME_HEADER_SIZE);
	/* Contiguous in libevent's buffer: bounded by max_length above. */
	const uint8_t *payload = evbuffer_pullup(in, h.length);
	conn_dispatch(cn, payload, h.length);
	evbuffer_drain(in, h.length);
	return true;
}

static void conn_on_event(struct bufferevent *bev, short what, void *arg);

/*
 * Called for every byte that arrives (the read low watermark is 0), so a
 * frame started with a single byte is timed too.  The time limit is a
 * deadline from the frame's first byte, not an idle time a client could
 * renew with a byte now and then.
 */
static void conn_on_read(struct bufferevent *bev, void *arg)
{
	struct conn *cn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	uint64_t now, deadline;
	bool took = false;

	if (cn->closing) {
		evbuffer_drain(in, SIZE_MAX);
		return;
	}
	while (!cn->closing && !cn->dropped && conn_take_frame(cn))
		took = true;
	if (cn->closing || cn->dropped)
		return;
	if (!evbuffer_get_length(in)) {
		cn->frame_start_ns = 0;
		bufferevent_set_timeouts(bev, NULL, NULL);
		return;
	}
	now = now_ns();
	if (took || !cn->frame_start_ns)
		cn->frame_start_ns = now; /* the rest is the start of the next frame */
	deadline = cn->frame_start_ns + PARTIAL_FRAME_TIMEOUT_S * 1000000000ULL;
	if (now >= deadline) {
		conn_on_event(bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, cn);
		return;
	}
	struct timeval tv = { (time_t)((deadline - now) / 1000000000ULL),
			      (suseconds_t)((deadline - now) % 1000000000ULL / 1000) };
	bufferevent_set_timeouts(bev, &tv, NULL);
}

static void conn_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *cn = arg;
	size_t pending = evbuffer_get_length(bufferevent_get_input(bev));

	if (cn->closing) {
		conn_free(cn);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		char why[96];

		snprintf(why, sizeof(why), "truncated frame: not finished within %d s of its "
			 "first byte", PARTIAL_FRAME_TIMEOUT_S);
		conn_refuse(cn, -ETIMEDOUT, why);
		return;
	}
	if ((what & BEV_EVENT_EOF) && pending) {
		conn_refuse(cn, -EBADMSG, "truncated frame: connection closed mid-frame");
		return;
	}
	if ((what & BEV_EVENT_EOF) && cn->n_requests) {
		/* shutdown(SHUT_WR) after its requests: answer them first */
		cn->read_eof = true;
		bufferevent_disable(bev, EV_READ);
		return;
	}
	if (what & BEV_EVENT_ERROR)
		log_debug_errno(EVUTIL_SOCKET_ERROR(), "conn %llu: %m", (unsigned long long)cn->id);
	conn_free(cn);
}

static struct conn *conn_new(struct control *c, evutil_socket_t fd, const struct peer_cred *cred)
{
	struct conn *cn = calloc(1, sizeof(*cn));

	if (!cn)
		return NULL;
	/* The bufferevent last: once it exists it owns fd (the caller closes
	 * fd when this fails). */
	cn->free_ev = event_new(c->base, -1, 0, conn_on_free, cn);
	cn->bev = cn->free_ev ? bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
	if (!cn->bev) {
		if (cn->free_ev)
			event_free(cn->free_ev);
		free(cn);
		return NULL;
	}
	cn->c = c;
	cn->id = ++c->next_id;
	cn->cred = *cred;
	cn->root = cred->uid == 0;
	TAILQ_INIT(&cn->requests);
	TAILQ_INSERT_TAIL(&c->conns, cn, link);
	c->n_conns[cn->root]++;
	/* Read at most one whole frame ahead: the rest waits in the kernel.
	 * Every byte wakes us (low mark 0): a partial header is timed too. */
	bufferevent_setwatermark(cn->bev, EV_READ, 0, FRAME_HEADER_SIZE + CONTROL_MAX_FRAME);
	bufferevent_setcb(cn->bev, conn_on_read, conn_on_write, conn_on_event, cn);
	/* bufferevent adds its write event only while output is queued. */
	bufferevent_enable(cn->bev, EV_READ | EV_WRITE);
	return cn;
}

/*
 * Who may connect is checked first, from the socket's credentials; a
 * refused client costs one frame and a close.  Root has a pool of
 * max_connections of its own: a user admitted through control_group may
 * fill the other pool, never root's.
 */
static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *arg)
{
	struct control *c = arg;
	struct peer_cred cred = { .pid = 0, .uid = (uid_t)-1 };
	char why[256];
	struct conn *cn;
	int r;

	evutil_make_socket_closeonexec(fd);
	r = control_auth_peer(fd, &c->lim, &cred, why, sizeof(why));
	if (r == 0 && c->n_conns[cred.uid == 0] >= c->lim.max_connections) {
		r = -EUSERS;
		snprintf(why, sizeof(why), "too many connections (max_connections=%u%s)",
			 c->lim.max_connections, cred.uid == 0 ? " for root" : "");
	}
	if (r < 0) {
		refuse_at_once(c, fd, &cred, r, why);
		return;
	}
	cn = conn_new(c, fd, &cred);
	if (!cn) {
		refuse_at_once(c, fd, &cred, -ENOMEM, "out of memory");
		return;
	}
	log_debug("conn %llu: pid %d uid %u", (unsigned long long)cn->id, (int)cn->cred.pid,
		  (unsigned)cn->cred.uid);
	if (c->ops->changed)
		c->ops->changed(c->userdata);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	/* EMFILE and friends: the pending client waits in the backlog. */
	log_warning_errno(EVUTIL_SOCKET_ERROR(), "Cannot accept a control connection: %m");
}

int control_open(struct event_base *base, const char *path, const struct control_ops *ops,
		 void *userdata, struct control **ret)
{
	struct control *c = calloc(1, sizeof(*c));
	int r;

	if (!c)
		return log_error_errno(ENOMEM, "Out of memory");
	*c = (struct control){ .base = base, .ops = ops, .userdata = userdata,
			       .refusals = { REFUSAL_LOG_INTERVAL_S, REFUSAL_LOG_BURST },
			       .lim = { .max_connections = 64, .max_requests = 16,
					.max_output = 4 << 20 } };
	TAILQ_INIT(&c->conns);
	r = control_socket_open(path, &c->sock);
	if (r < 0) {
		free(c);
		return r;
	}
	c->listener = evconnlistener_new(base, on_accept, c, LEV_OPT_CLOSE_ON_FREE, 0,
					 c->sock.fd);
	if (!c->listener) {
		control_socket_close(&c->sock);
		free(c);
		return log_error_errno(ENOMEM, "Cannot watch the control socket");
	}
	c->sock.fd = -1; /* the listener owns it now */
	evconnlistener_set_error_cb(c->listener, on_accept_error);
	*ret = c;
	return 0;
}

void control_set_limits(struct control *c, const struct control_limits *l)
{
	c->lim = *l;
	control_socket_set_group(&c->sock, l->has_group ? (int64_t)l->group : -1);
}

void control_stop_accepting(struct control *c)
{
	if (c->listener) {
		evconnlistener_free(c->listener);
		c->listener = NULL;
	}
	control_socket_close(&c->sock);
}

void control_free(struct control *c)
{
	struct conn *cn;

	if (!c)
		return;
	control_stop_accepting(c);
	while ((cn = TAILQ_FIRST(&c->conns)))
		conn_free(cn);
	free(c);
}

unsigned control_n_connections(const struct control *c)
{
	return c->n_conns[0] + c->n_conns[1];
}

bool control_activated(const struct control *c)
{
	return c->sock.activated;
}

uint32_t request_id(const struct request *req)
{
	return req->id;
}

uid_t request_uid(const struct request *req)
{
	return req->uid;
}

void request_reply(struct request *req, Wpmig__Response *resp)
{
	struct conn *cn = req->conn;

	resp->id = req->id;
	if (cn) {
		TAILQ_REMOVE(&cn->requests, req, link);
		cn->n_requests--;
		if (conn_send(cn, FRAME_CTL_RESPONSE, &resp->base) && cn->read_eof &&
		    !cn->n_requests && !evbuffer_get_length(bufferevent_get_output(cn->bev)))
			conn_drop(cn);
	}
	free(req);
}

int request_fail(struct request *req, int error, const char *fmt, ...)
{
	Wpmig__Response resp = WPMIG__RESPONSE__INIT;
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	resp.error = error < 0 ? error : -error;
	resp.message = msg;
	request_reply(req, &resp);
	return resp.error;
}

void request_progress(struct request *req, Wpmig__Progress *p)
{
	struct conn *cn = req->conn;

	if (!cn || cn->dropped)
		return;
	/* Progress is a hint: skip it rather than fill a slow client's queue. */
	if (evbuffer_get_length(bufferevent_get_output(cn->bev)) > cn->c->lim.max_output / 2)
		return;
	p->id = req->id;
	conn_send(cn, FRAME_CTL_PROGRESS, &p->base);
}
