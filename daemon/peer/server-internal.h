/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The receiver, shared by its files and not for others.  From the bottom:
 * recv.c (the worker side of a generation's tasks), server.c (a
 * connection: its state, frames out, the handshake, closing it and
 * dropping its generation), recv-frames.c (accepting connections, reading
 * their frames, a generation's frames on the loop), listen.c (the port and
 * the server's life).  A file calls only the files before it.
 */
#pragma once

#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <stdbool.h>
#include <sys/queue.h>

#include "basic/log.h"
#include "peer/cache.h"
#include "peer/io.h"
#include "peer/pool.h"
#include "peer/server.h"
#include "pipeline/sink.h"
#include "store/store.h"

enum rc_state {
	RC_HELLO,      /* waiting for the source's Hello */
	RC_AUTH,       /* ours and our proof sent, waiting for its proof */
	RC_IDLE,       /* authenticated, no generation open */
	RC_OPENING,    /* an Open is being handled by a worker */
	RC_OPEN,       /* receiving a generation */
	RC_COMMITTING, /* Commit received, waiting for the chunks and the commit */
	RC_ABORTING,   /* Abort received, dropping the generation */
	RC_CLOSING,    /* finishing tasks, then freed */
	_RC_STATE_MAX,
};

enum rt_kind { RT_OPEN, RT_CHUNK, RT_ZERO, RT_SECTION, RT_COMMIT, RT_ABORT };

/*
 * Connections still in the handshake (HELLO, AUTH) have limits of their
 * own, apart from the authenticated ones (peer_max_connections), so that
 * clients without the key can never crowd out a source that holds it: a
 * short deadline from accept to authenticated, a few per source address
 * (an IPv4 address, an IPv6 /64), and a bound on all of them, at which the
 * oldest makes room for the new one.
 */
#define PEER_HANDSHAKE_MS 5000 /* or peer_timeout, if shorter */
#define PEER_MAX_HANDSHAKES 64
#define PEER_MAX_HANDSHAKES_PER_ADDR 4

/* Where a connection comes from, for the per-address limit; len 0: no
 * limit (unix sockets: the socket file's mode keeps others out). */
struct peer_addr_key {
	uint8_t b[8];
	uint8_t len;
};

struct rconn;

/* A section of the open generation, its pieces put together in order. */
struct rsection {
	char name[SECTION_NAME_MAX + 1];
	uint32_t type;
	uint64_t length, sum, got;
	uint8_t *buf;
	size_t cap;
};

/* One received frame of a generation, handled by a worker. */
/* Under peer_verify = payload, one chunk in this many (the first of each
 * generation among them) is still decoded on arrival. */
#define PEER_SPOT_CHECK 64

struct rtask {
	struct wtask w;
	struct rconn *rc;
	enum rt_kind kind;
	struct peer_frame f;     /* owns the frame and its message */
	struct enc_chunk view;   /* RT_CHUNK: the frame as an encoded chunk */
	bool decode;             /* RT_CHUNK: decode and check every page, not only the payload */
	int r;
	char why[192];
	/* results */
	struct sink *sink;       /* RT_OPEN */
	uint64_t generation, newest, raw_bytes;
	int64_t newest_created_ns;
	struct pass_region *parent_regions;
	size_t n_parent_regions;
	struct gen_summary sum;  /* RT_COMMIT */
	int64_t resumed_us;      /* RT_OPEN of a migration's finish */
	int64_t incoming_us;
	struct rsection section; /* RT_SECTION: complete, its bytes owned */
	TAILQ_ENTRY(rtask) link;
};

struct rconn {
	struct peer_server *srv;
	struct bufferevent *bev;   /* output only */
	struct event *rd_ev;       /* input: read straight into frame buffers */
	struct peer_reader rd;
	struct event *free_ev;
	uint64_t id;
	char name[80];
	struct peer_addr_key from;
	uint64_t accepted_ns;
	enum rc_state state;
	uint64_t state_ns;
	struct peer_rx rx;
	struct peer_mac tx_mac;
	bool tx_authed;
	uint8_t transcript[PEER_HASH_SIZE];
	uint32_t slots;
	struct rcache *cache;

	/* the open generation */
	uint64_t session;   /* the source's, from Open */
	bool target;        /* opened a migration target (told when we close) */
	struct sink *sink;
	char set[STORE_SET_NAME_MAX + 1];
	uint64_t generation;
	struct pass_region *parent_regions; /* what the changes apply to */
	size_t n_parent_regions;
	ProtobufCMessage *changes;          /* RegionChanges, once received */
	uint64_t gen_chunks, gen_zero_frames, gen_bytes, gen_t0;
	uint64_t gen_decoded;                /* chunks decoded on arrival */
	uint64_t gen_section_frames;
	struct rsection section;             /* the one being put together */
	char (*section_names)[SECTION_NAME_MAX + 1]; /* sections begun, at most
							SECTION_MAX_COUNT */
	size_t n_sections;
	bool verify_pages;                   /* peer_verify = pages for this generation */

	/* frames waiting or running */
	TAILQ_HEAD(, rtask) q;
	unsigned in_flight;
	bool barrier;          /* an Open, Commit or Abort runs: nothing else */
	uint64_t queued_bytes; /* taken, not done */
	uint64_t done_bytes, acked_bytes;
	bool paused;           /* reading stopped: too much queued */

	/* status */
	uint64_t raw_bytes, committed;
	double rate;
	uint64_t rate_ns, rate_bytes;
	TAILQ_ENTRY(rconn) link;
};

struct peer_server {
	struct event_base *base;
	struct evconnlistener *listener;
	char *listen;
	char *unix_path; /* ours to remove */
	struct peer_key key;
	struct peer_server_opts o;
	struct wpool *pool;
	struct peer_bufs *bufs;    /* frame buffers, drained when no connection is left */
	TAILQ_HEAD(, rconn) conns;
	unsigned n_conns;
	uint64_t next_id;
	struct log_limit refusals; /* connections refused at accept */
	Wpmig__LinkInfo *info;     /* status buffers */
	Wpmig__LinkInfo **info_ptrs;
	char (*info_state)[48];
};

/* peer-server.c */
/* recv.c: the worker side */
void *recv_ctx_new(void *arg);
void recv_ctx_free(void *ctx);
/* Give back what a worker decoded with (no task may run). */
void recv_ctx_trim(void *ctx);
void recv_task_run(struct wtask *w, void *ctx);
void recv_task_free(struct rtask *t);
/* Abort the open generation and free what it holds, on the loop. */
void recv_drop_generation(struct rconn *rc);

/* server.c: one connection */
void rconn_free(struct rconn *rc);
const char *rconn_state_name(enum rc_state st);
void rconn_close(struct rconn *rc, int error, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Send an authenticated frame; false when the connection is closing. */
bool rconn_send(struct rconn *rc, uint16_t type, const ProtobufCMessage *m);
void rconn_enter(struct rconn *rc, enum rc_state st);
/* A frame before the connection is authenticated (f is cleared). */
void rconn_handshake(struct rconn *rc, struct peer_frame *f);
/* Drop queued tasks, and once none runs what the generation holds (its
 * file is removed by a worker: in_flight rises until it is done). */
void rconn_drop(struct rconn *rc);
/* The last task of a closing connection finished. */
void rconn_closed(struct rconn *rc);
/* Set the read timeout for the connection's state (see server.c). */
void rconn_arm(struct rconn *rc);
/* How long the handshake may take, from accept (ms). */
uint64_t rconn_handshake_ms(const struct peer_server *s);
/* Connections in a state: handshaking (HELLO, AUTH) or authenticated
 * (IDLE .. ABORTING); closing ones are neither. */
unsigned rconn_count(const struct peer_server *s, bool authed, const struct peer_addr_key *from);

/* recv-frames.c: the input side */
void rconn_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		  int socklen, void *arg);
/* Read and handle what frames the socket holds. */
void rconn_read(struct rconn *rc);
/* An authenticated frame (f is taken over or cleared). */
void recv_frame(struct rconn *rc, struct peer_frame *f);
