/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The delta cache of the peer protocol: a number of page slots mirrored
 * on both ends of a connection.  The source decides everything and tells
 * the receiver, per data page of a chunk, which slot to take as the base
 * of the delta and which slot to keep the page in (docs/protocol.md).
 *
 * Rules both ends keep, so their slots always hold the same bytes:
 *  - a base is a slot committed by an earlier generation, not written in
 *    this one; a slot is written at most once per generation and never
 *    while it serves as a base in it;
 *  - what a generation wrote becomes a base only when it commits; an
 *    abort makes those slots unusable;
 *  - the cache lives as long as the connection.
 *
 * Source side (pcache): thread-safe, called by the pipeline's workers.
 * Receiver side (rcache): claims are checked on the event loop in arrival
 * order; workers then read bases and fill stored slots without locks.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct pcache;

/*
 * The memory the caches of a daemon's links may touch together, in slots:
 * a slot a cache writes for the first time is taken from it, and given back
 * when the cache is reset or freed (its pages unmapped).  A cache without
 * budget room keeps what it has and recycles its own oldest copies.
 */
struct pcache_budget {
	_Atomic int64_t free; /* may go below 0 after a reload lowered the total */
	int64_t total;        /* set by pcache_budget_set, on one thread */
};
/* The total, in slots (at start and on a reload: the difference is applied). */
void pcache_budget_set(struct pcache_budget *b, uint64_t slots);

/* n_slots pages, drawing on budget (NULL: n_slots of its own); memory is
 * reserved, not touched.  NULL with errno. */
struct pcache *pcache_new(uint32_t n_slots, struct pcache_budget *budget);
void pcache_free(struct pcache *c);
/* Forget everything (a new connection) and take n_slots slots. */
int pcache_reset(struct pcache *c, uint32_t n_slots);
uint32_t pcache_slots(const struct pcache *c);
/* Slots it could hold now: those it touched and what the budget has left. */
uint32_t pcache_room(const struct pcache *c);

/*
 * For the n data pages at addrs of a chunk of pass seq: base[i] = k when
 * slot k-1 holds the copy of addrs[i] sent before (0: none); store[i] = k
 * when the page is to be kept in slot k-1 (0: not kept).  Slots come from
 * the free ones, or with evict from the least recently used copies.
 * Returns how many pages got a base.
 */
uint32_t pcache_plan(struct pcache *c, uint64_t seq, const uint64_t *addrs, uint32_t n,
		     bool evict, uint32_t *base, uint32_t *store);
uint8_t *pcache_page(const struct pcache *c, uint32_t slot);
/*
 * on: plans take bases but keep no new copies (store[] all 0), for a last
 * generation after which nothing is sent: writing a copy into a slot never
 * touched before costs a page fault on both ends (~10 us each here).
 */
void pcache_bases_only(struct pcache *c, bool on);
/* The generation committed: its copies become bases (the latest pass of
 * each page wins); older copies of those pages are freed. */
void pcache_commit(struct pcache *c);
/* The generation was dropped: what it stored is forgotten. */
void pcache_abort(struct pcache *c);

struct rcache;

struct rcache *rcache_new(uint32_t n_slots);
void rcache_free(struct rcache *c);
/* Check a chunk's slots against the rules and mark them; -EBADMSG with why. */
int rcache_claim(struct rcache *c, const uint32_t *base, const uint32_t *store, uint32_t n,
		 const char **why);
uint8_t *rcache_page(const struct rcache *c, uint32_t slot);
void rcache_commit(struct rcache *c);
void rcache_abort(struct rcache *c);
