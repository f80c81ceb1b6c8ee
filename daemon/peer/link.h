/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The source's end of a peer connection: one per session that streams to
 * a peer, kept between checkpoints (the delta cache lives as long as the
 * connection).  The socket is a bufferevent on the daemon's loop; the
 * checkpoint job and the pipeline's workers send through a queue the loop
 * drains, and wait on a condition for acknowledgements and replies.
 *
 * Loop thread: peer_link_new, peer_link_free, peer_link_info.
 * Job and worker threads: everything else.
 */
#pragma once

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "control.pb-c.h"
#include "peer/auth.h"
#include "peer/cache.h"
#include "track/tracker.h"

struct peer_link;

struct peer_link_opts {
	const char *addr;         /* HOST:PORT, [V6]:PORT, HOST or unix:/PATH */
	const struct peer_key *key; /* copied */
	uint32_t cache_slots;     /* delta cache pages wanted; 0: no delta */
	struct pcache_budget *cache_budget; /* shared with other links; NULL: none */
	uint64_t window;          /* most unacknowledged bytes; the receiver may lower it */
	unsigned timeout_ms;      /* no progress for this long: the link fails */
};

/* What the source believes the peer has committed for this session. */
struct peer_committed {
	uint64_t generation;      /* 0: nothing */
	int64_t created_ns;       /* its identity on the receiver */
	struct pass_region *regions;
	size_t n_regions;
};

int peer_link_new(struct event_base *base, const struct peer_link_opts *o,
		  struct peer_link **ret);
void peer_link_free(struct peer_link *l);
const char *peer_link_addr(const struct peer_link *l);
/* Fill info (strings point into l) for status. */
void peer_link_info(struct peer_link *l, Wpmig__LinkInfo *info);

/* Connected and authenticated (connecting if need be): 0 or negative errno
 * with why. */
int peer_link_up(struct peer_link *l, char *why, size_t why_len);
/* Queue a frame, waiting while the window is full or the bandwidth cap
 * says so.  Thread-safe. */
int peer_link_send(struct peer_link *l, uint16_t type, const ProtobufCMessage *m,
		   const uint8_t *tail, uint32_t tail_len);
/* The same for a frame built in place (peer_frame_around): buf inside mem,
 * from peer_link_frame_mem, which goes back to the link once sent.  The
 * tag's room must be at the end. */
int peer_link_send_frame(struct peer_link *l, uint8_t *mem, uint8_t *buf, size_t len);
/* Room for a frame built in place, reused from earlier frames when one is
 * free (a fresh mapping costs a page fault a page); NULL: out of memory.
 * Give it back with peer_link_frame_mem_free when it is not sent.
 * Thread-safe. */
uint8_t *peer_link_frame_mem(struct peer_link *l, size_t size);
void peer_link_frame_mem_free(struct peer_link *l, uint8_t *mem);
/* No generation is being sent: unmap the free frames. */
void peer_link_frames_idle(struct peer_link *l);
/* Send and wait for the frame of reply_type (*reply: free with peer_msg_free). */
int peer_link_call(struct peer_link *l, uint16_t type, const ProtobufCMessage *m,
		   uint16_t reply_type, ProtobufCMessage **reply);
/* Why the link or the last generation failed ("" if nothing did). */
void peer_link_why(struct peer_link *l, char *buf, size_t len);
void peer_link_note(struct peer_link *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Close the connection now (after a failed generation the cache is stale). */
void peer_link_reset(struct peer_link *l);
/* Bytes per second for the next sends; 0: unlimited. */
void peer_link_set_bandwidth(struct peer_link *l, uint64_t bytes_per_s);
/* A generation committed: raw bytes it carried (data pages * 4096, the
 * ratio's numerator), bytes it took on the wire and how long. */
void peer_link_account(struct peer_link *l, uint64_t raw_bytes, uint64_t wire_bytes,
		       uint64_t ns);
/* Frame bytes sent since the link was made. */
uint64_t peer_link_bytes_sent(struct peer_link *l);

struct pcache *peer_link_cache(struct peer_link *l);
/* Random, for the link's life: tells the receiver a reconnection is ours. */
uint64_t peer_link_session(const struct peer_link *l);
struct peer_committed *peer_link_committed(struct peer_link *l);
