/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The receiving end of the peer protocol: a listening socket (TCP or unix)
 * on the daemon's loop, one struct per connection, the handshake, and
 * generations stored into the local store by worker threads
 * (server-internal.h says which file does what).  Loop thread only.
 */
#pragma once

#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>

#include "control.pb-c.h"
#include "peer.pb-c.h"
#include "peer/auth.h"

struct store;
struct peer_server;
struct sink;
struct pass_region;

/*
 * Generations that do not go to the store: an Open carrying a migration
 * target (Wpmig__Peer__Open.migrate) is handed to these, implemented above
 * the peer layer (qemu/target.c).  open() runs on a worker thread and may
 * block (QMP); closed() on the loop when a connection that opened one ends.
 */
struct peer_target_open {
	struct sink *sink;            /* NULL for a finish (no generation) */
	uint64_t generation;
	uint64_t newest;
	int64_t newest_created_ns;
	struct pass_region *parent_regions; /* an increment's parent table (taken) */
	size_t n_parent_regions;
	int64_t resumed_us;           /* finish: the guest's RESUME event */
	int64_t incoming_us;          /* finish: QEMU's MIGRATION completed event */
};

struct peer_target_ops {
	int (*open)(void *ud, uint64_t session, const Wpmig__Peer__Open *m,
		    struct peer_target_open *out, char *why, size_t why_len);
	void (*closed)(void *ud, uint64_t session);
};

struct peer_server_opts {
	const char *listen;         /* HOST:PORT, [V6]:PORT, HOST or unix:/PATH */
	const struct peer_key *key; /* copied */
	uint32_t cache_slots;       /* most delta cache pages granted to a connection */
	uint64_t window;            /* unacknowledged bytes a source may send */
	unsigned max_connections;
	unsigned timeout_ms;        /* handshake, and a frame once started */
	unsigned workers;           /* decode/verify/store threads */
	int zstd_level;             /* re-encoding delta chunks for the store */
	bool verify_pages;          /* decode every chunk on arrival, not only some */
	struct store *store;
	pthread_mutex_t *store_lock;
	const struct peer_target_ops *targets; /* NULL: no migration targets */
	void *targets_ud;
};

int peer_server_open(struct event_base *base, const struct peer_server_opts *o,
		     struct peer_server **ret);
/* Stop accepting and close every connection (open generations are dropped). */
void peer_server_stop(struct peer_server *s);
void peer_server_free(struct peer_server *s);
/* A new key for the connections to come (SIGHUP). */
int peer_server_set_key(struct peer_server *s, const struct peer_key *key);
/* peer_verify for the generations to come (SIGHUP). */
void peer_server_set_verify(struct peer_server *s, bool pages);
/* Incoming links for status: (*ret)[i] and its strings live in s until
 * the next call; returns how many. */
size_t peer_server_links(struct peer_server *s, Wpmig__LinkInfo ***ret);
