/* SPDX-License-Identifier: GPL-2.0-only */
/* The source's peer connection: shared by link.c (the loop side) and
 * link-send.c (the job and worker side).  Not for other files. */
#pragma once

#include <event2/bufferevent.h>
#include <pthread.h>
#include <sys/socket.h>

#include "peer/io.h"
#include "peer/link.h"

enum link_state {
	LINK_DOWN,       /* no connection; error/why say why */
	LINK_CONNECTING, /* connect() in progress */
	LINK_HELLO,      /* our Hello sent, waiting for theirs */
	LINK_AUTH,       /* waiting for the receiver's proof */
	LINK_WAIT_READY, /* our proof sent */
	LINK_READY,      /* authenticated */
};

struct qframe {
	uint8_t *mem; /* holds the frame: malloc'ed, or from the link's frames pool */
	bool pooled;
	uint8_t *buf; /* the frame */
	size_t len;
	struct qframe *next;
};

struct peer_link {
	struct event_base *base;
	char *addr;
	struct peer_key key;
	uint32_t want_slots;
	uint64_t want_window;
	unsigned timeout_ms;
	struct event *kick; /* any thread -> loop: connect, close, flush the queue */

	/* loop thread only */
	struct bufferevent *bev;
	struct peer_rx rx;
	uint8_t transcript[PEER_HASH_SIZE];
	uint8_t *hello; /* our Hello message as sent: part of the transcript */
	size_t hello_len;

	pthread_mutex_t lock; /* guards everything below */
	pthread_cond_t cond;  /* state, acks and replies changed */
	enum link_state state;
	int error;
	char why[256];
	bool want_connect, want_close;
	struct sockaddr_storage sa;
	socklen_t sa_len;
	struct qframe *q_head, *q_tail;
	struct peer_bufs *frames; /* chunk frames, reused: a fresh ~1 MiB malloc faulted its pages in */
	struct peer_mac tx_mac;
	uint64_t sent, acked, window; /* this connection's authenticated bytes */
	uint32_t slots;               /* delta cache slots granted */
	uint16_t reply_type;          /* a call waits for this frame type */
	ProtobufCMessage *reply;
	uint64_t last_rx_ns;
	uint64_t bw, bw_next_ns;
	uint64_t total_sent, total_acked, total_raw;
	double rate;
	uint64_t rate_ns, rate_acked;

	/* the job thread that holds the session */
	uint64_t session_id; /* random, for the life of the link */
	struct pcache *cache;
	struct peer_committed committed;
};

/* What the handshake waits for in a state ("the receiver's hello"). */
const char *link_waiting_for(enum link_state st);
/* link.c, loop thread: end the connection, wake every waiter.  The first
 * reason given for a connection stays (a timeout's, set by a thread). */
void link_down(struct peer_link *l, int error, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
