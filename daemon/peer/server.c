// SPDX-License-Identifier: GPL-2.0-only
/*
 * A receiver connection: its state, the frames it sends, the handshake
 * (Hello both ways, our proof, theirs checked, Ready), its read timeouts,
 * and its end: a connection that breaks a rule gets one Error frame and is
 * closed, and its open generation is dropped (the file removed on a
 * worker).  Frames come in through recv-frames.c; the listening socket is
 * in listen.c.
 */
#include "server-internal.h"

#include <errno.h>
#include <event2/buffer.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build-config.h"
#include "basic/log.h"
#include "basic/util.h"

#define LINGER_S 5 /* wait this long for a closing connection's last frame to leave */

static const char *const state_names[_RC_STATE_MAX] = {
	[RC_HELLO] = "HELLO", [RC_AUTH] = "AUTH", [RC_IDLE] = "IDLE", [RC_OPENING] = "OPENING",
	[RC_OPEN] = "OPEN", [RC_COMMITTING] = "COMMITTING", [RC_ABORTING] = "ABORTING",
	[RC_CLOSING] = "CLOSING",
};

const char *rconn_state_name(enum rc_state st)
{
	return st < _RC_STATE_MAX ? state_names[st] : "?";
}

/* No generation is being received: the free frame buffers, the workers'
 * decoding memory and the heap they freed go back, so a receiver between
 * generations is as small as one that never received any. */
static void drain_if_idle(struct peer_server *s)
{
	struct rconn *rc;

	TAILQ_FOREACH(rc, &s->conns, link)
		if (rc->state >= RC_OPENING && rc->state <= RC_ABORTING)
			return;
	peer_bufs_drain(s->bufs);
	if (s->pool && wpool_trim(s->pool, recv_ctx_trim))
		malloc_trim(0);
}

void rconn_enter(struct rconn *rc, enum rc_state st)
{
	log_debug("peer conn %llu (%s): %s -> %s", (unsigned long long)rc->id, rc->name,
		  state_names[rc->state], state_names[st]);
	rc->state = st;
	rc->state_ns = now_ns();
	if (st == RC_IDLE || st == RC_CLOSING)
		drain_if_idle(rc->srv);
}

void rconn_free(struct rconn *rc)
{
	struct peer_server *s = rc->srv;

	TAILQ_REMOVE(&s->conns, rc, link);
	s->n_conns--;
	if (rc->target && s->o.targets)
		s->o.targets->closed(s->o.targets_ud, rc->session);
	event_free(rc->rd_ev);
	peer_reader_free(&rc->rd);
	bufferevent_free(rc->bev);
	event_free(rc->free_ev);
	peer_mac_free(&rc->rx.mac);
	peer_mac_free(&rc->tx_mac);
	free(rc);
	drain_if_idle(s);
}

static void on_flushed(struct bufferevent *bev, void *arg)
{
	event_active(((struct rconn *)arg)->free_ev, 0, 0);
}

static void on_linger_event(struct bufferevent *bev, short what, void *arg)
{
	event_active(((struct rconn *)arg)->free_ev, 0, 0);
}

bool rconn_send(struct rconn *rc, uint16_t type, const ProtobufCMessage *m)
{
	uint8_t *buf;
	size_t len;

	if (!rc->bev || peer_frame_build(type, m, NULL, 0, rc->tx_authed, &buf, &len) < 0)
		return false;
	if (rc->tx_authed && peer_frame_seal(&rc->tx_mac, buf, len) < 0) {
		free(buf);
		return false;
	}
	return peer_evbuffer_add(bufferevent_get_output(rc->bev), buf, len) == 0;
}

/* Aborting a generation removes its file: on a worker, not the loop. */
struct drop_task {
	struct wtask w;
	struct rconn *rc;
	struct sink *sink;
};

static void drop_run(struct wtask *w, void *ctx)
{
	struct drop_task *d = (struct drop_task *)w;

	d->sink->ops->abort(d->sink);
}

static void drop_done(struct wtask *w)
{
	struct rconn *rc = ((struct drop_task *)w)->rc;

	free(w);
	rc->in_flight--;
	rconn_closed(rc);
}

void rconn_drop(struct rconn *rc)
{
	struct drop_task *d;
	struct rtask *t;

	while ((t = TAILQ_FIRST(&rc->q))) {
		TAILQ_REMOVE(&rc->q, t, link);
		recv_task_free(t);
	}
	if (rc->in_flight)
		return;
	if (rc->sink && (d = calloc(1, sizeof(*d)))) {
		log_info("peer conn %llu (%s): generation %llu of %s dropped",
			 (unsigned long long)rc->id, rc->name, (unsigned long long)rc->generation,
			 rc->set);
		*d = (struct drop_task){ .w = { .run = drop_run, .done = drop_done }, .rc = rc,
					 .sink = rc->sink };
		rc->sink = NULL;
		rc->in_flight++;
		wpool_submit(rc->srv->pool, &d->w);
	}
	recv_drop_generation(rc);
}

void rconn_closed(struct rconn *rc)
{
	struct timeval tv = { LINGER_S, 0 };

	rconn_drop(rc);
	if (rc->in_flight)
		return; /* the generation's file is being removed: called again after */
	rcache_free(rc->cache);
	rc->cache = NULL;
	/* Let an Error frame leave before the socket closes. */
	if (evbuffer_get_length(bufferevent_get_output(rc->bev)) == 0) {
		event_active(rc->free_ev, 0, 0);
		return;
	}
	bufferevent_setcb(rc->bev, NULL, on_flushed, on_linger_event, rc);
	bufferevent_set_timeouts(rc->bev, NULL, &tv);
	bufferevent_enable(rc->bev, EV_WRITE);
}

void rconn_close(struct rconn *rc, int error, const char *fmt, ...)
{
	Wpmig__Peer__Error e = WPMIG__PEER__ERROR__INIT;
	char why[256];
	va_list ap;

	if (rc->state == RC_CLOSING)
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (error) {
		unsigned quiet = 0;
		bool last = false;

		/* Anyone can make unauthenticated connections fail: their
		 * lines share the server's rate limit. */
		if (rc->state >= RC_IDLE || log_limit_pass(&rc->srv->refusals, &quiet, &last) ||
		    quiet)
			log_notice("peer conn %llu (%s): %s%s%s", (unsigned long long)rc->id,
				   rc->name, why, last ? "; for a while more such lines are "
				   "only counted" : "", quiet ? " (and more not logged)" : "");
		e.error = error;
		e.message = why;
		rconn_send(rc, PEER_ERROR, &e.base);
	} else {
		log_info("peer conn %llu (%s): %s", (unsigned long long)rc->id, rc->name, why);
	}
	rconn_enter(rc, RC_CLOSING);
	event_del(rc->rd_ev);
	peer_reader_free(&rc->rd);
	rconn_drop(rc);
	if (rc->in_flight == 0)
		rconn_closed(rc);
}

static int send_hello(struct rconn *rc, const Wpmig__Peer__Hello *theirs,
		      const struct peer_frame *f)
{
	struct peer_server *s = rc->srv;
	Wpmig__Peer__Hello h = WPMIG__PEER__HELLO__INIT;
	Wpmig__Peer__Auth a = WPMIG__PEER__AUTH__INIT;
	uint8_t nonce[PEER_NONCE_SIZE], proof[PEER_HASH_SIZE], *buf;
	size_t len;
	int r = peer_random(nonce, sizeof(nonce));

	rc->slots = MIN(theirs->cache_slots, s->o.cache_slots);
	h.role = WPMIG__PEER__ROLE__ROLE_RECEIVER;
	h.min_version = h.max_version = h.version = PEER_PROTO_VERSION;
	h.nonce = (ProtobufCBinaryData){ sizeof(nonce), nonce };
	h.software = (char *)"wpmigd " WPMIG_VERSION;
	h.cache_slots = rc->slots;
	h.window = s->o.window;
	h.max_chunk_pages = PEER_MAX_CHUNK_PAGES;
	if (r == 0)
		r = peer_frame_build(PEER_HELLO, &h.base, NULL, 0, false, &buf, &len);
	if (r < 0)
		return r;
	/* The transcript covers both messages exactly as they travel. */
	r = peer_transcript(f->msg, f->h.length, buf + FRAME_HEADER_SIZE,
			    len - FRAME_HEADER_SIZE, rc->transcript);
	if (r == 0)
		r = peer_evbuffer_add(bufferevent_get_output(rc->bev), buf, len);
	else
		free(buf);
	if (r == 0)
		r = peer_proof(&s->key, PEER_LABEL_RECEIVER, rc->transcript, proof);
	a.proof = (ProtobufCBinaryData){ sizeof(proof), proof };
	if (r == 0 && !rconn_send(rc, PEER_AUTH, &a.base))
		r = -ENOMEM;
	return r;
}

static void on_hello(struct rconn *rc, const struct peer_frame *f)
{
	const Wpmig__Peer__Hello *m = (const Wpmig__Peer__Hello *)f->m;

	if (m->role != WPMIG__PEER__ROLE__ROLE_SOURCE) {
		rconn_close(rc, -EPROTO, "hello: only a source may connect to a receiver");
		return;
	}
	if (m->min_version > PEER_PROTO_VERSION || m->max_version < PEER_PROTO_VERSION) {
		rconn_close(rc, -EPROTONOSUPPORT, "the source speaks peer protocol versions "
			    "%u..%u, we speak %d", m->min_version, m->max_version,
			    PEER_PROTO_VERSION);
		return;
	}
	if (send_hello(rc, m, f) < 0) {
		rconn_close(rc, -ENOMEM, "cannot answer the hello");
		return;
	}
	rconn_enter(rc, RC_AUTH);
}

unsigned rconn_count(const struct peer_server *s, bool authed, const struct peer_addr_key *from)
{
	const struct rconn *rc;
	unsigned n = 0;

	TAILQ_FOREACH(rc, &s->conns, link)
		if (rc->state != RC_CLOSING && (rc->state >= RC_IDLE) == authed &&
		    (!from || (rc->from.len == from->len &&
			       !memcmp(rc->from.b, from->b, from->len))))
			n++;
	return n;
}

static void on_auth(struct rconn *rc, const struct peer_frame *f)
{
	const Wpmig__Peer__Auth *m = (const Wpmig__Peer__Auth *)f->m;
	Wpmig__Peer__Ready ready = WPMIG__PEER__READY__INIT;
	struct peer_server *s = rc->srv;
	unsigned authed;

	if (!peer_proof_ok(&s->key, PEER_LABEL_SOURCE, rc->transcript, m->proof.data,
			   m->proof.len)) {
		rconn_close(rc, -EACCES, "authentication failed: the source does not hold our key");
		return;
	}
	if (peer_mac_init(&rc->rx.mac, &s->key, PEER_LABEL_SOURCE, rc->transcript) < 0 ||
	    peer_mac_init(&rc->tx_mac, &s->key, PEER_LABEL_RECEIVER, rc->transcript) < 0) {
		rconn_close(rc, -ENOMEM, "out of memory");
		return;
	}
	/* From here on our frames carry a MAC: the source trusts what we say. */
	rc->rx.authed = rc->tx_authed = true;
	authed = rconn_count(s, true, NULL);
	if (authed >= s->o.max_connections) {
		rconn_close(rc, -EUSERS, "the receiver is full: %u authenticated connections "
			    "(peer_max_connections = %u)", authed, s->o.max_connections);
		return;
	}
	if (rc->slots && !(rc->cache = rcache_new(rc->slots))) {
		rconn_close(rc, -ENOMEM, "out of memory");
		return;
	}
	rconn_send(rc, PEER_READY, &ready.base);
	log_info("peer conn %llu (%s): authenticated, %u cache slots", (unsigned long long)rc->id,
		 rc->name, rc->slots);
	rconn_enter(rc, RC_IDLE);
}

void rconn_handshake(struct rconn *rc, struct peer_frame *f)
{
	if (f->h.type == PEER_ERROR || f->h.type == PEER_CLOSE)
		rconn_close(rc, 0, "the source ended the handshake");
	else if (rc->state == RC_HELLO && f->h.type == PEER_HELLO)
		on_hello(rc, f);
	else if (rc->state == RC_AUTH && f->h.type == PEER_AUTH)
		on_auth(rc, f);
	else
		rconn_close(rc, -EPROTO, "unexpected %s frame during the handshake",
			    peer_type_name(f->h.type));
	peer_frame_clear(f);
}

uint64_t rconn_handshake_ms(const struct peer_server *s)
{
	return MIN(s->o.timeout_ms, PEER_HANDSHAKE_MS);
}

/*
 * Reading stops while too much is queued.  Timeouts: the handshake must
 * end by a deadline counted from accept (bytes now and then do not renew
 * it), a frame once started must finish in time, and a generation waiting
 * for the source must hear from it in time (a source gone silent would
 * hold the set).  An idle link, or one we keep busy, may wait.
 */
void rconn_arm(struct rconn *rc)
{
	struct timeval tv = { rc->srv->o.timeout_ms / 1000, rc->srv->o.timeout_ms % 1000 * 1000 };
	bool waiting = rc->state == RC_OPEN && !rc->in_flight && TAILQ_EMPTY(&rc->q);

	if (rc->state == RC_CLOSING || rc->paused)
		return;
	if (rc->state < RC_IDLE) {
		uint64_t end = rc->accepted_ns + rconn_handshake_ms(rc->srv) * 1000000ULL,
			 now = now_ns(), left = end > now ? (end - now) / 1000 : 0;

		tv = (struct timeval){ (time_t)(left / 1000000), (suseconds_t)(left % 1000000) };
	}
	if (rc->state < RC_IDLE || peer_reader_partial(&rc->rd) || waiting) {
		event_add(rc->rd_ev, &tv);
		return;
	}
	/* event_add() with no timeout keeps one already set: drop it first */
	event_del(rc->rd_ev);
	event_add(rc->rd_ev, NULL);
}
