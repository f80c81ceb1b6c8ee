// SPDX-License-Identifier: GPL-2.0-only
/*
 * The loop side of the source's peer connection: connect, the handshake
 * (Hello both ways, the receiver's proof checked, ours sent, Ready), then
 * acknowledgements and replies for the threads waiting in link-send.c.
 */
#include "link-internal.h"

#include <errno.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "basic/log.h"
#include "basic/util.h"
#include "peer/regions.h"

static void drop_queue(struct peer_link *l)
{
	struct qframe *q = l->q_head, *next;

	for (; q; q = next) {
		next = q->next;
		peer_frame_mem_free(q->mem, q->pooled);
		free(q);
	}
	l->q_head = l->q_tail = NULL;
}

void link_down(struct peer_link *l, int error, const char *fmt, ...)
{
	va_list ap;

	if (l->bev) {
		bufferevent_free(l->bev);
		l->bev = NULL;
	}
	peer_mac_free(&l->rx.mac);
	l->rx = (struct peer_rx){ 0 };
	pthread_mutex_lock(&l->lock);
	if (l->state != LINK_DOWN && error) {
		if (!l->error) {
			va_start(ap, fmt);
			vsnprintf(l->why, sizeof(l->why), fmt, ap);
			va_end(ap);
			l->error = error;
		}
		log_notice("Peer link: %s", l->why);
	}
	l->state = LINK_DOWN;
	peer_mac_free(&l->tx_mac);
	drop_queue(l);
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

static void set_state(struct peer_link *l, enum link_state st)
{
	pthread_mutex_lock(&l->lock);
	l->state = st;
	l->last_rx_ns = now_ns();
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

/* Handshake frames go out directly: nothing else is queued yet. */
static int send_now(struct peer_link *l, uint16_t type, const ProtobufCMessage *m)
{
	uint8_t *buf;
	size_t len;
	int r = peer_frame_build(type, m, NULL, 0, false, &buf, &len);

	if (r == 0)
		r = peer_evbuffer_add(bufferevent_get_output(l->bev), buf, len);
	return r;
}

static int send_hello(struct peer_link *l)
{
	Wpmig__Peer__Hello h = WPMIG__PEER__HELLO__INIT;
	uint8_t nonce[PEER_NONCE_SIZE];
	int r = peer_random(nonce, sizeof(nonce));

	if (r < 0)
		return r;
	h.role = WPMIG__PEER__ROLE__ROLE_SOURCE;
	h.min_version = h.max_version = PEER_PROTO_VERSION;
	h.nonce = (ProtobufCBinaryData){ sizeof(nonce), nonce };
	h.software = (char *)"wpmigd " WPMIG_VERSION;
	h.cache_slots = l->want_slots;
	free(l->hello);
	l->hello_len = protobuf_c_message_get_packed_size(&h.base);
	l->hello = malloc(l->hello_len);
	if (!l->hello)
		return -ENOMEM;
	protobuf_c_message_pack(&h.base, l->hello);
	return send_now(l, PEER_HELLO, &h.base);
}

static int on_hello(struct peer_link *l, const struct peer_frame *f)
{
	const Wpmig__Peer__Hello *m = (const Wpmig__Peer__Hello *)f->m;

	if (m->role != WPMIG__PEER__ROLE__ROLE_RECEIVER) {
		link_down(l, -EPROTO, "%s is not a receiving wpmigd", l->addr);
		return -EPROTO;
	}
	if (m->version != PEER_PROTO_VERSION || !m->window) {
		link_down(l, -EPROTONOSUPPORT, "%s chose peer protocol version %u; we speak %d",
			  l->addr, m->version, PEER_PROTO_VERSION);
		return -EPROTONOSUPPORT;
	}
	pthread_mutex_lock(&l->lock);
	l->window = MIN(l->want_window, m->window);
	l->slots = MIN(l->want_slots, m->cache_slots);
	pthread_mutex_unlock(&l->lock);
	if (peer_transcript(l->hello, l->hello_len, f->msg, f->h.length, l->transcript) < 0)
		return -EIO;
	set_state(l, LINK_AUTH);
	return 0;
}

static int on_auth(struct peer_link *l, const struct peer_frame *f)
{
	const Wpmig__Peer__Auth *m = (const Wpmig__Peer__Auth *)f->m;
	Wpmig__Peer__Auth mine = WPMIG__PEER__AUTH__INIT;
	uint8_t proof[PEER_HASH_SIZE];
	int r;

	if (!peer_proof_ok(&l->key, PEER_LABEL_RECEIVER, l->transcript, m->proof.data,
			   m->proof.len)) {
		link_down(l, -EACCES, "%s failed authentication: is peer_key_file the same "
			  "key on both hosts?", l->addr);
		return -EACCES;
	}
	r = peer_proof(&l->key, PEER_LABEL_SOURCE, l->transcript, proof);
	mine.proof = (ProtobufCBinaryData){ sizeof(proof), proof };
	if (r == 0)
		r = send_now(l, PEER_AUTH, &mine.base);
	if (r == 0)
		r = peer_mac_init(&l->rx.mac, &l->key, PEER_LABEL_RECEIVER, l->transcript);
	pthread_mutex_lock(&l->lock);
	if (r == 0)
		r = peer_mac_init(&l->tx_mac, &l->key, PEER_LABEL_SOURCE, l->transcript);
	pthread_mutex_unlock(&l->lock);
	if (r < 0)
		return r;
	l->rx.authed = true;
	set_state(l, LINK_WAIT_READY);
	return 0;
}

static void on_ack(struct peer_link *l, const Wpmig__Peer__Ack *m)
{
	uint64_t now = now_ns();

	if (m->bytes > l->sent || m->bytes < l->acked) {
		pthread_mutex_unlock(&l->lock);
		link_down(l, -EPROTO, "%s acknowledged %llu bytes of %llu sent", l->addr,
			  (unsigned long long)m->bytes, (unsigned long long)l->sent);
		pthread_mutex_lock(&l->lock);
		return;
	}
	/* The rate over the last quarter second of transfer, not of idle time. */
	if (now - l->rate_ns > 1000000000ULL) {
		l->rate_ns = now - 1;
		l->rate_acked = l->total_acked;
	}
	l->total_acked += m->bytes - l->acked;
	l->acked = m->bytes;
	if (now - l->rate_ns >= 250000000ULL) {
		l->rate = (double)(l->total_acked - l->rate_acked) * 1e9 / (double)(now - l->rate_ns);
		l->rate_ns = now;
		l->rate_acked = l->total_acked;
	}
}

/* An authenticated frame: acknowledgements, replies, the end. */
static void on_ready_frame(struct peer_link *l, struct peer_frame *f)
{
	pthread_mutex_lock(&l->lock);
	l->last_rx_ns = now_ns();
	if (f->h.type == PEER_ACK) {
		on_ack(l, (const Wpmig__Peer__Ack *)f->m);
	} else if (f->h.type == l->reply_type && !l->reply) {
		l->reply = f->m;
		f->m = NULL;
	} else if (f->h.type != PEER_CLOSE) {
		pthread_mutex_unlock(&l->lock);
		link_down(l, -EPROTO, "unexpected %s frame from %s", peer_type_name(f->h.type),
			  l->addr);
		return;
	}
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	if (f->h.type == PEER_CLOSE)
		link_down(l, -ECONNRESET, "%s closed the connection: %s", l->addr,
			  ((const Wpmig__Peer__Close *)f->m)->reason);
}

static int on_frame(struct peer_link *l, struct peer_frame *f)
{
	enum link_state st = l->state; /* only the loop changes it past CONNECTING */

	if (f->h.type == PEER_ERROR) {
		const Wpmig__Peer__Error *e = (const Wpmig__Peer__Error *)f->m;
		link_down(l, e->error < 0 ? e->error : -EPROTO, "%s: %s", l->addr, e->message);
		return -1;
	}
	if (st == LINK_HELLO && f->h.type == PEER_HELLO)
		return on_hello(l, f);
	if (st == LINK_AUTH && f->h.type == PEER_AUTH)
		return on_auth(l, f);
	if (st == LINK_WAIT_READY && f->h.type == PEER_READY) {
		pthread_mutex_lock(&l->lock);
		l->sent = l->acked = 0;
		pthread_mutex_unlock(&l->lock);
		bufferevent_set_timeouts(l->bev, NULL, NULL); /* an idle link may wait */
		log_info("peer %s: authenticated", l->addr);
		set_state(l, LINK_READY);
		return 0;
	}
	if (st == LINK_READY) {
		on_ready_frame(l, f);
		return l->state == LINK_READY ? 0 : -1;
	}
	link_down(l, -EPROTO, "unexpected %s frame from %s during the handshake",
		  peer_type_name(f->h.type), l->addr);
	return -1;
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct peer_link *l = arg;
	struct peer_frame f;
	const char *why = NULL;
	int r;

	while (l->bev && (r = peer_rx_take(&l->rx, bufferevent_get_input(bev), &f, &why)) > 0) {
		r = on_frame(l, &f);
		peer_frame_clear(&f);
		if (r < 0) {
			if (l->bev && r != -1)
				link_down(l, r, "handshake with %s failed: %s", l->addr, strerror(-r));
			return;
		}
	}
	if (l->bev && r < 0)
		link_down(l, r, "bad frame from %s: %s", l->addr, why);
	else if (l->bev)
		bufferevent_setwatermark(bev, EV_READ, peer_rx_want(bufferevent_get_input(bev)),
					 peer_frame_max());
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct peer_link *l = arg;
	int one = 1, err = EVUTIL_SOCKET_ERROR();
	int fd = (int)bufferevent_getfd(bev);

	if (what & BEV_EVENT_CONNECTED) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		set_state(l, LINK_HELLO);
		if (send_hello(l) < 0)
			link_down(l, -ENOMEM, "cannot send hello to %s", l->addr);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		link_down(l, -ETIMEDOUT, "%s: peer_timeout (%u s) elapsed waiting for %s", l->addr,
			  l->timeout_ms / 1000, link_waiting_for(l->state));
	else if (what & BEV_EVENT_EOF)
		link_down(l, -ECONNRESET, "%s closed the connection", l->addr);
	else
		link_down(l, err ? -err : -ECONNRESET, "connection to %s: %s", l->addr,
			  strerror(err ? err : ECONNRESET));
}

static void start_connect(struct peer_link *l)
{
	struct timeval tv = { l->timeout_ms / 1000, (l->timeout_ms % 1000) * 1000 };
	struct sockaddr_storage sa;
	socklen_t len;

	pthread_mutex_lock(&l->lock);
	sa = l->sa;
	len = l->sa_len;
	pthread_mutex_unlock(&l->lock);
	l->bev = bufferevent_socket_new(l->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!l->bev) {
		link_down(l, -ENOMEM, "connecting to %s: out of memory", l->addr);
		return;
	}
	bufferevent_setcb(l->bev, on_read, NULL, on_event, l);
	bufferevent_setwatermark(l->bev, EV_READ, FRAME_HEADER_SIZE, peer_frame_max());
	bufferevent_set_max_single_write(l->bev, PEER_IO_CHUNK); /* libevent's default is 16 KiB */
	bufferevent_set_timeouts(l->bev, &tv, &tv); /* connect and handshake */
	bufferevent_enable(l->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(l->bev, (struct sockaddr *)&sa, (int)len) < 0) {
		int e = errno ? errno : ECONNREFUSED;
		link_down(l, -e, "cannot connect to %s: %s", l->addr, strerror(e));
	}
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct peer_link *l = arg;
	struct qframe *q, *next;
	bool close_it, connect_it;

	pthread_mutex_lock(&l->lock);
	close_it = l->want_close;
	connect_it = l->want_connect;
	l->want_close = l->want_connect = false;
	q = l->q_head;
	l->q_head = l->q_tail = NULL;
	pthread_mutex_unlock(&l->lock);
	if (close_it)
		link_down(l, -ECONNABORTED, "connection to %s closed by us", l->addr);
	if (connect_it && !l->bev)
		start_connect(l);
	for (; q; q = next) {
		next = q->next;
		if (l->bev)
			peer_evbuffer_add_in(bufferevent_get_output(l->bev), q->mem, q->pooled,
					     q->buf, q->len);
		else
			peer_frame_mem_free(q->mem, q->pooled);
		free(q);
	}
}

int peer_link_new(struct event_base *base, const struct peer_link_opts *o,
		  struct peer_link **ret)
{
	struct peer_link *l = calloc(1, sizeof(*l));
	pthread_condattr_t ca;

	if (!l)
		return -ENOMEM;
	*l = (struct peer_link){ .base = base, .want_slots = o->cache_slots,
				 .want_window = o->window, .timeout_ms = o->timeout_ms };

	pthread_mutex_init(&l->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* waits use now_ns() */
	pthread_cond_init(&l->cond, &ca);
	pthread_condattr_destroy(&ca);
	l->addr = strdup(o->addr);
	l->key.bytes = malloc(o->key->len);
	l->kick = event_new(base, -1, 0, on_kick, l);
	if (o->cache_slots)
		l->cache = pcache_new(o->cache_slots, o->cache_budget);
	/* the window's worth can be in flight, a little more queued */
	l->frames = peer_bufs_new(o->window + (8u << 20));
	if (!l->addr || !l->key.bytes || !l->kick || (o->cache_slots && !l->cache) || !l->frames) {
		peer_link_free(l);
		return -ENOMEM;
	}
	memcpy(l->key.bytes, o->key->bytes, o->key->len);
	l->key.len = o->key->len;
	peer_random((uint8_t *)&l->session_id, sizeof(l->session_id));
	*ret = l;
	return 0;
}

void peer_link_free(struct peer_link *l)
{
	if (!l)
		return;
	if (l->bev)
		link_down(l, 0, "closed");
	if (l->kick)
		event_free(l->kick);
	drop_queue(l);
	peer_bufs_free(l->frames); /* the last frame libevent releases frees it */
	peer_mac_free(&l->tx_mac);
	peer_msg_free(l->reply);
	pcache_free(l->cache);
	peer_key_free(&l->key);
	regions_free(l->committed.regions, l->committed.n_regions);
	free(l->hello);
	free(l->addr);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	free(l);
}

const char *peer_link_addr(const struct peer_link *l)
{
	return l->addr;
}

void peer_link_info(struct peer_link *l, Wpmig__LinkInfo *info)
{
	static const char *const names[] = {
		[LINK_DOWN] = "DOWN", [LINK_CONNECTING] = "CONNECTING", [LINK_HELLO] = "HELLO",
		[LINK_AUTH] = "AUTH", [LINK_WAIT_READY] = "AUTH", [LINK_READY] = "READY",
	};

	pthread_mutex_lock(&l->lock);
	info->peer = l->addr;
	info->state = (char *)names[l->state];
	info->generation = l->committed.generation;
	info->bytes_sent = l->total_sent;
	info->bytes_acked = l->total_acked;
	info->rate = l->rate; /* of the last transfer */
	info->ratio = l->total_sent ? (double)l->total_raw / (double)l->total_sent : 0;
	pthread_mutex_unlock(&l->lock);
}
