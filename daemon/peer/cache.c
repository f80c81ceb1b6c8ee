// SPDX-License-Identifier: GPL-2.0-only
#include "peer/cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "basic/util.h"

#define NIL UINT32_MAX

enum { S_FREE, S_COMMITTED, S_PINNED, S_STAGED };

struct pslot {
	uint64_t addr, seq;
	uint32_t prev, next; /* LRU list (committed) or free list (next only) */
	uint32_t hnext;      /* hash chain of committed copies: ~slot, 0 at the end */
	uint8_t state;
};

struct pcache {
	pthread_mutex_t lock;
	uint32_t n;
	uint8_t *mem;
	struct pslot *s;
	uint32_t *bucket, bmask;     /* chains: ~slot, 0 when empty */
	uint32_t free_head;          /* slots used before and free again */
	uint32_t fresh;              /* slots [fresh, n) never written: not in the free list */
	struct pcache_budget *budget; /* fresh slots come from it; NULL: no limit but n */
	uint32_t lru_head, lru_tail; /* committed, not pinned; head = oldest */
	bool no_store;               /* bases only (pcache_bases_only) */
	uint32_t *staged, n_staged;
	uint32_t *pinned, n_pinned;
};

/*
 * Zeroed memory that costs nothing until written: a cache's pages and its
 * bookkeeping (slots, hash buckets) are touched only as slots are used, so
 * a link that keeps little costs little whatever its size (hence the hash
 * chains hold ~slot: zero is an empty chain, with no initialising pass).
 */
static void *map_zero(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void unmap_zero(void *p, size_t len)
{
	if (p)
		munmap(p, len);
}

static uint8_t *map_pages(uint32_t n)
{
	return map_zero((size_t)n * PAGE_SIZE_4K);
}

static void unmap_pages(uint8_t *p, uint32_t n)
{
	unmap_zero(p, (size_t)n * PAGE_SIZE_4K);
}

static uint32_t hash(const struct pcache *c, uint64_t addr)
{
	return (uint32_t)(((addr >> 12) * 0x9E3779B97F4A7C15ULL) >> 32) & c->bmask;
}

void pcache_budget_set(struct pcache_budget *b, uint64_t slots)
{
	int64_t total = (int64_t)MIN(slots, (uint64_t)INT64_MAX / 2);

	atomic_fetch_add(&b->free, total - b->total);
	b->total = total;
}

/* One never-written slot's page from the budget. */
static bool budget_take(struct pcache_budget *b)
{
	int64_t v;

	if (!b)
		return true;
	v = atomic_load(&b->free);
	while (v > 0)
		if (atomic_compare_exchange_weak(&b->free, &v, v - 1))
			return true;
	return false;
}

static void pcache_release(struct pcache *c)
{
	if (c->budget)
		atomic_fetch_add(&c->budget->free, (int64_t)c->fresh);
	c->fresh = 0;
	unmap_pages(c->mem, c->n);
	unmap_zero(c->s, (size_t)c->n * sizeof(*c->s));
	unmap_zero(c->bucket, ((size_t)c->bmask + 1) * sizeof(*c->bucket));
	unmap_zero(c->staged, (size_t)c->n * sizeof(*c->staged));
	unmap_zero(c->pinned, (size_t)c->n * sizeof(*c->pinned));
	c->mem = NULL;
	c->s = NULL;
	c->bucket = c->staged = c->pinned = NULL;
	c->n = c->bmask = 0;
}

static int pcache_alloc(struct pcache *c, uint32_t n)
{
	uint32_t b = 1;

	while (b < n)
		b <<= 1;
	c->n = n;
	c->bmask = b - 1;
	c->mem = map_pages(n);
	c->s = map_zero((size_t)n * sizeof(*c->s));
	c->bucket = map_zero((size_t)b * sizeof(*c->bucket));
	c->staged = map_zero((size_t)n * sizeof(*c->staged));
	c->pinned = map_zero((size_t)n * sizeof(*c->pinned));
	if (!c->mem || !c->s || !c->bucket || !c->staged || !c->pinned) {
		pcache_release(c);
		return -ENOMEM;
	}
	/* Slots are set up when taken ([0, fresh) only). */
	c->free_head = NIL;
	c->fresh = 0;
	c->lru_head = c->lru_tail = NIL;
	c->n_staged = c->n_pinned = 0;
	return 0;
}

struct pcache *pcache_new(uint32_t n_slots, struct pcache_budget *budget)
{
	struct pcache *c;

	if (!n_slots) {
		errno = EINVAL;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	pthread_mutex_init(&c->lock, NULL);
	c->budget = budget;
	if (pcache_alloc(c, n_slots) < 0) {
		pcache_free(c);
		errno = ENOMEM;
		return NULL;
	}
	return c;
}

void pcache_free(struct pcache *c)
{
	if (!c)
		return;
	pcache_release(c);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

int pcache_reset(struct pcache *c, uint32_t n_slots)
{
	int r;

	pthread_mutex_lock(&c->lock);
	pcache_release(c);
	r = n_slots ? pcache_alloc(c, n_slots) : 0;
	pthread_mutex_unlock(&c->lock);
	return r;
}

void pcache_bases_only(struct pcache *c, bool on)
{
	pthread_mutex_lock(&c->lock);
	c->no_store = on;
	pthread_mutex_unlock(&c->lock);
}

uint32_t pcache_slots(const struct pcache *c)
{
	return c ? c->n : 0;
}

uint32_t pcache_room(const struct pcache *c)
{
	int64_t left;

	if (!c)
		return 0;
	left = c->budget ? MAX(atomic_load(&c->budget->free), (int64_t)0) : (int64_t)c->n;
	return (uint32_t)MIN((int64_t)c->fresh + left, (int64_t)c->n);
}

uint8_t *pcache_page(const struct pcache *c, uint32_t slot)
{
	return c->mem + (size_t)slot * PAGE_SIZE_4K;
}

static void lru_unlink(struct pcache *c, uint32_t i)
{
	struct pslot *s = &c->s[i];

	if (s->prev != NIL)
		c->s[s->prev].next = s->next;
	else
		c->lru_head = s->next;
	if (s->next != NIL)
		c->s[s->next].prev = s->prev;
	else
		c->lru_tail = s->prev;
	s->prev = s->next = NIL;
}

static void lru_push(struct pcache *c, uint32_t i)
{
	c->s[i].state = S_COMMITTED;
	c->s[i].prev = c->lru_tail;
	c->s[i].next = NIL;
	if (c->lru_tail != NIL)
		c->s[c->lru_tail].next = i;
	else
		c->lru_head = i;
	c->lru_tail = i;
}

static uint32_t hash_find(const struct pcache *c, uint64_t addr)
{
	uint32_t e = c->bucket[hash(c, addr)];

	while (e && c->s[~e].addr != addr)
		e = c->s[~e].hnext;
	return e ? ~e : NIL;
}

static void hash_insert(struct pcache *c, uint32_t i)
{
	uint32_t *b = &c->bucket[hash(c, c->s[i].addr)];

	c->s[i].hnext = *b;
	*b = ~i;
}

static void hash_remove(struct pcache *c, uint32_t i)
{
	uint32_t *p = &c->bucket[hash(c, c->s[i].addr)];

	while (*p && *p != ~i)
		p = &c->s[~*p].hnext;
	if (*p == ~i)
		*p = c->s[i].hnext;
	c->s[i].hnext = 0;
}

static void free_push(struct pcache *c, uint32_t i)
{
	c->s[i].state = S_FREE;
	c->s[i].next = c->free_head;
	c->free_head = i;
}

/*
 * A slot to write a copy into: a free one, a never-written one while the
 * budget allows (so the pages touched are always [0, fresh)), or the
 * oldest unpinned copy.
 */
static uint32_t take_slot(struct pcache *c, bool evict)
{
	uint32_t i = c->free_head;

	if (i != NIL) {
		c->free_head = c->s[i].next;
		return i;
	}
	if (c->fresh < c->n && budget_take(c->budget))
		return c->fresh++;
	if (!evict || c->lru_head == NIL)
		return NIL;
	i = c->lru_head;
	lru_unlink(c, i);
	hash_remove(c, i);
	return i;
}

uint32_t pcache_plan(struct pcache *c, uint64_t seq, const uint64_t *addrs, uint32_t n,
		     bool evict, uint32_t *base, uint32_t *store)
{
	uint32_t hits = 0;

	pthread_mutex_lock(&c->lock);
	for (uint32_t p = 0; p < n; p++) {
		uint32_t i = c->n ? hash_find(c, addrs[p]) : NIL;

		base[p] = store[p] = 0;
		if (i != NIL) {
			if (c->s[i].state == S_COMMITTED) {
				lru_unlink(c, i);
				c->s[i].state = S_PINNED;
				c->pinned[c->n_pinned++] = i;
			}
			base[p] = i + 1;
			hits++;
		}
		i = c->n && !c->no_store ? take_slot(c, evict) : NIL;
		if (i == NIL)
			continue;
		c->s[i] = (struct pslot){ .addr = addrs[p], .seq = seq, .prev = NIL, .next = NIL,
					  .state = S_STAGED };
		c->staged[c->n_staged++] = i;
		store[p] = i + 1;
	}
	pthread_mutex_unlock(&c->lock);
	return hits;
}

static int cmp_staged(const void *a, const void *b, void *arg)
{
	const struct pslot *s = arg;
	const struct pslot *x = &s[*(const uint32_t *)a], *y = &s[*(const uint32_t *)b];

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The winning copy of a page replaces the committed one. */
static void promote(struct pcache *c, uint32_t i)
{
	uint32_t old = hash_find(c, c->s[i].addr);

	if (old != NIL) {
		hash_remove(c, old);
		if (c->s[old].state == S_COMMITTED)
			lru_unlink(c, old);
		free_push(c, old); /* a pinned one is skipped below: it is free now */
	}
	hash_insert(c, i);
	lru_push(c, i);
}

void pcache_commit(struct pcache *c)
{
	pthread_mutex_lock(&c->lock);
	qsort_r(c->staged, c->n_staged, sizeof(*c->staged), cmp_staged, c->s);
	for (uint32_t k = 0; k < c->n_staged; k++) {
		uint32_t i = c->staged[k];
		bool last = k + 1 == c->n_staged || c->s[c->staged[k + 1]].addr != c->s[i].addr;

		if (last)
			promote(c, i);
		else
			free_push(c, i);
	}
	/* Bases used: most recently useful. */
	for (uint32_t k = 0; k < c->n_pinned; k++)
		if (c->s[c->pinned[k]].state == S_PINNED)
			lru_push(c, c->pinned[k]);
	c->n_staged = c->n_pinned = 0;
	pthread_mutex_unlock(&c->lock);
}

void pcache_abort(struct pcache *c)
{
	pthread_mutex_lock(&c->lock);
	for (uint32_t k = 0; k < c->n_staged; k++)
		free_push(c, c->staged[k]);
	for (uint32_t k = 0; k < c->n_pinned; k++)
		lru_push(c, c->pinned[k]);
	c->n_staged = c->n_pinned = 0;
	pthread_mutex_unlock(&c->lock);
}

/* ---- receiver ---- */

enum { R_VALID = 1, R_WRITTEN = 2, R_BASE = 4 };

struct rcache {
	uint32_t n;
	uint8_t *mem;
	uint8_t *state;
	uint32_t *touched, n_touched;
};

struct rcache *rcache_new(uint32_t n_slots)
{
	struct rcache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->n = n_slots;
	c->mem = map_pages(n_slots);
	c->state = calloc(n_slots, 1);
	c->touched = malloc((size_t)n_slots * sizeof(*c->touched));
	if (!c->mem || !c->state || !c->touched) {
		rcache_free(c);
		errno = ENOMEM;
		return NULL;
	}
	return c;
}

void rcache_free(struct rcache *c)
{
	if (!c)
		return;
	unmap_pages(c->mem, c->n);
	free(c->state);
	free(c->touched);
	free(c);
}

uint8_t *rcache_page(const struct rcache *c, uint32_t slot)
{
	return c->mem + (size_t)slot * PAGE_SIZE_4K;
}

static void touch(struct rcache *c, uint32_t s, uint8_t bit)
{
	if (!(c->state[s] & (R_WRITTEN | R_BASE)))
		c->touched[c->n_touched++] = s;
	c->state[s] |= bit;
}

int rcache_claim(struct rcache *c, const uint32_t *base, const uint32_t *store, uint32_t n,
		 const char **why)
{
	for (uint32_t i = 0; base && i < n; i++) {
		uint32_t s = base[i] - 1;

		if (!base[i])
			continue;
		if (s >= c->n || (c->state[s] & (R_VALID | R_WRITTEN)) != R_VALID)
			return *why = "delta base is not a committed cache slot", -EBADMSG;
		touch(c, s, R_BASE);
	}
	for (uint32_t i = 0; store && i < n; i++) {
		uint32_t s = store[i] - 1;

		if (!store[i])
			continue;
		if (s >= c->n || c->state[s] & (R_WRITTEN | R_BASE))
			return *why = "cache slot written twice or while it is a base", -EBADMSG;
		touch(c, s, R_WRITTEN);
		c->state[s] &= (uint8_t)~R_VALID;
	}
	return 0;
}

static void rcache_end(struct rcache *c, bool commit)
{
	for (uint32_t k = 0; k < c->n_touched; k++) {
		uint8_t *st = &c->state[c->touched[k]];

		if (*st & R_WRITTEN)
			*st = commit ? R_VALID : 0;
		else
			*st &= (uint8_t)~R_BASE;
	}
	c->n_touched = 0;
}

void rcache_commit(struct rcache *c)
{
	rcache_end(c, true);
}

void rcache_abort(struct rcache *c)
{
	rcache_end(c, false);
}
