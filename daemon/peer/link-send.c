// SPDX-License-Identifier: GPL-2.0-only
/*
 * The thread side of the source's peer connection: bring it up, send
 * frames within the window and the bandwidth cap, wait for replies.
 * Never on the loop: everything here may block.
 */
#include "link-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/util.h"
#include "peer/regions.h"

#define BURST_NS 50000000ULL /* the bandwidth cap lets this much time's worth through at once */

static void kick(struct peer_link *l)
{
	event_active(l->kick, 0, 0);
}

/* Wait on the link's condition until abs_ns (CLOCK_MONOTONIC). */
static void wait_until(struct peer_link *l, uint64_t abs_ns)
{
	struct timespec ts = { (time_t)(abs_ns / 1000000000ULL), (long)(abs_ns % 1000000000ULL) };

	pthread_cond_timedwait(&l->cond, &l->lock, &ts);
}

static int link_error(struct peer_link *l)
{
	return l->error ? l->error : -ENOTCONN;
}

/*
 * Under the lock: no progress for too long.  Tear the connection down,
 * and say which setting ran out and what we waited for: this reason stays
 * (link_down keeps the first one of a connection).
 */
static int timed_out(struct peer_link *l, const char *fmt, ...)
{
	char what[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(l->why, sizeof(l->why), "%s: peer_timeout (%u s) elapsed waiting for %s",
		 l->addr, l->timeout_ms / 1000, what);
	l->error = -ETIMEDOUT;
	l->want_close = true;
	kick(l);
	return -ETIMEDOUT;
}

/* What the handshake waits for in state st. */
const char *link_waiting_for(enum link_state st)
{
	switch (st) {
	case LINK_CONNECTING: return "the connection to be accepted";
	case LINK_HELLO: return "the receiver's hello";
	case LINK_AUTH: return "the receiver's proof of the key";
	case LINK_WAIT_READY: return "the receiver to accept our proof";
	default: return "the handshake";
	}
}

static uint64_t deadline(const struct peer_link *l)
{
	return l->last_rx_ns + (uint64_t)l->timeout_ms * 1000000ULL;
}

static int resolve(struct peer_link *l, char *why, size_t why_len)
{
	struct sockaddr_storage sa;
	socklen_t len;
	int r = peer_addr_resolve(l->addr, false, &sa, &len, why, why_len);

	if (r < 0)
		return r;
	pthread_mutex_lock(&l->lock);
	l->sa = sa;
	l->sa_len = len;
	l->state = LINK_CONNECTING;
	l->error = 0;
	l->why[0] = 0;
	l->want_connect = true;
	l->last_rx_ns = now_ns();
	pthread_mutex_unlock(&l->lock);
	kick(l);
	return 0;
}

int peer_link_up(struct peer_link *l, char *why, size_t why_len)
{
	uint32_t slots;
	int r;

	pthread_mutex_lock(&l->lock);
	r = l->state == LINK_READY;
	pthread_mutex_unlock(&l->lock);
	if (r)
		return 0;
	r = resolve(l, why, why_len);
	if (r < 0)
		return r;
	pthread_mutex_lock(&l->lock);
	while (l->state != LINK_READY && l->state != LINK_DOWN) {
		if (now_ns() >= deadline(l)) {
			timed_out(l, "%s", link_waiting_for(l->state));
			break;
		}
		wait_until(l, deadline(l));
	}
	r = l->state == LINK_READY ? 0 : link_error(l);
	snprintf(why, why_len, "%s", l->why);
	slots = l->slots;
	pthread_mutex_unlock(&l->lock);
	/* A new connection: the receiver's cache is empty, so is ours. */
	if (r == 0 && l->cache)
		r = pcache_reset(l->cache, slots);
	return r;
}

/* Room in the window, then a place in the bandwidth schedule. */
static int reserve(struct peer_link *l, size_t size)
{
	int r = 0;

	pthread_mutex_lock(&l->lock);
	for (;;) {
		if (l->state != LINK_READY) {
			r = link_error(l);
			break;
		}
		if (l->sent == l->acked || l->sent - l->acked + size <= l->window) {
			l->sent += size;
			break;
		}
		if (now_ns() >= deadline(l)) {
			r = timed_out(l, "an acknowledgement: %llu bytes unacknowledged of a %llu "
				      "byte window (the receiver reads or stores slowly)",
				      (unsigned long long)(l->sent - l->acked),
				      (unsigned long long)l->window);
			break;
		}
		wait_until(l, deadline(l));
	}
	if (r == 0 && l->bw) {
		uint64_t now = now_ns(), start = MAX(l->bw_next_ns, now > BURST_NS ? now - BURST_NS : 0);

		l->bw_next_ns = start + (uint64_t)((double)size * 1e9 / (double)l->bw);
		while (l->state == LINK_READY && now_ns() < start)
			wait_until(l, start);
	}
	pthread_mutex_unlock(&l->lock);
	return r;
}

static int enqueue(struct peer_link *l, uint8_t *mem, bool pooled, uint8_t *buf, size_t len)
{
	struct qframe *q = malloc(sizeof(*q));
	int r;

	if (!q) {
		peer_frame_mem_free(mem, pooled);
		return -ENOMEM;
	}
	*q = (struct qframe){ mem, pooled, buf, len, NULL };
	pthread_mutex_lock(&l->lock);
	r = l->state == LINK_READY ? peer_frame_seal(&l->tx_mac, buf, len) : link_error(l);
	if (r == 0) {
		if (l->q_tail)
			l->q_tail->next = q;
		else
			l->q_head = q;
		l->q_tail = q;
		l->total_sent += len;
	}
	pthread_mutex_unlock(&l->lock);
	if (r < 0) {
		peer_frame_mem_free(mem, pooled);
		free(q);
		return r;
	}
	kick(l);
	return 0;
}

int peer_link_send(struct peer_link *l, uint16_t type, const ProtobufCMessage *m,
		   const uint8_t *tail, uint32_t tail_len)
{
	uint8_t *buf;
	size_t len;
	int r = peer_frame_build(type, m, tail, tail_len, true, &buf, &len);

	if (r < 0)
		return r;
	r = reserve(l, len);
	if (r < 0) {
		free(buf);
		return r;
	}
	return enqueue(l, buf, false, buf, len);
}

uint8_t *peer_link_frame_mem(struct peer_link *l, size_t size)
{
	return peer_bufs_get(l->frames, size);
}

void peer_link_frame_mem_free(struct peer_link *l, uint8_t *mem)
{
	peer_bufs_put(l->frames, mem);
}

void peer_link_frames_idle(struct peer_link *l)
{
	peer_bufs_drain(l->frames);
}

int peer_link_send_frame(struct peer_link *l, uint8_t *mem, uint8_t *buf, size_t len)
{
	int r = reserve(l, len);

	if (r < 0) {
		peer_link_frame_mem_free(l, mem);
		return r;
	}
	return enqueue(l, mem, true, buf, len);
}

int peer_link_call(struct peer_link *l, uint16_t type, const ProtobufCMessage *m,
		   uint16_t reply_type, ProtobufCMessage **reply)
{
	int r;

	*reply = NULL;
	pthread_mutex_lock(&l->lock);
	peer_msg_free(l->reply);
	l->reply = NULL;
	l->reply_type = reply_type;
	pthread_mutex_unlock(&l->lock);
	r = peer_link_send(l, type, m, NULL, 0);
	pthread_mutex_lock(&l->lock);
	while (r == 0 && !l->reply) {
		if (l->state != LINK_READY)
			r = link_error(l);
		else if (now_ns() >= deadline(l))
			r = timed_out(l, "its answer to our %s (%llu bytes sent not yet "
				      "acknowledged)", peer_type_name(type),
				      (unsigned long long)(l->sent - l->acked));
		else
			wait_until(l, deadline(l));
	}
	if (r == 0)
		*reply = l->reply;
	else
		peer_msg_free(l->reply);
	l->reply = NULL;
	l->reply_type = 0;
	pthread_mutex_unlock(&l->lock);
	return r;
}

void peer_link_why(struct peer_link *l, char *buf, size_t len)
{
	pthread_mutex_lock(&l->lock);
	snprintf(buf, len, "%s", l->why);
	pthread_mutex_unlock(&l->lock);
}

void peer_link_note(struct peer_link *l, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&l->lock);
	va_start(ap, fmt);
	vsnprintf(l->why, sizeof(l->why), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&l->lock);
}

void peer_link_reset(struct peer_link *l)
{
	uint64_t until = now_ns() + 5000000000ULL;

	pthread_mutex_lock(&l->lock);
	if (l->state != LINK_DOWN) {
		l->want_close = true;
		kick(l);
	}
	while (l->state != LINK_DOWN && now_ns() < until)
		wait_until(l, until);
	pthread_mutex_unlock(&l->lock);
}

void peer_link_set_bandwidth(struct peer_link *l, uint64_t bytes_per_s)
{
	pthread_mutex_lock(&l->lock);
	l->bw = bytes_per_s;
	l->bw_next_ns = 0;
	pthread_mutex_unlock(&l->lock);
}

void peer_link_account(struct peer_link *l, uint64_t raw_bytes, uint64_t wire_bytes,
		       uint64_t ns)
{
	pthread_mutex_lock(&l->lock);
	l->total_raw += raw_bytes;
	if (ns)
		l->rate = (double)wire_bytes * 1e9 / (double)ns; /* the generation's */
	pthread_mutex_unlock(&l->lock);
}

uint64_t peer_link_bytes_sent(struct peer_link *l)
{
	uint64_t n;

	pthread_mutex_lock(&l->lock);
	n = l->total_sent;
	pthread_mutex_unlock(&l->lock);
	return n;
}

struct pcache *peer_link_cache(struct peer_link *l)
{
	return l->cache;
}

uint64_t peer_link_session(const struct peer_link *l)
{
	return l->session_id;
}

struct peer_committed *peer_link_committed(struct peer_link *l)
{
	return &l->committed;
}
