// SPDX-License-Identifier: GPL-2.0-only
#include "peer/bufs.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>

#define HDR 64              /* the mapping's size and pool, before the buffer (keeps it aligned) */
#define GRAIN (256u << 10)  /* mappings are multiples: frames of like sizes share buffers */
#define MAX_FREE 64

struct peer_bufs {
	pthread_mutex_t lock;
	size_t keep, kept; /* bytes of free mappings: at most, now */
	uint8_t *free[MAX_FREE];
	unsigned n;
	size_t out;        /* buffers given out, not yet put back */
	bool dying;        /* peer_bufs_free() called: the last put frees */
};

struct map_hdr {
	size_t len;
	struct peer_bufs *pool;
};

static size_t map_size(const uint8_t *m)
{
	return ((const struct map_hdr *)m)->len;
}

static uint8_t *map_buf(struct peer_bufs *b, size_t size)
{
	size_t len = (size + HDR + GRAIN - 1) / GRAIN * GRAIN;
	uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		return NULL;
	*(struct map_hdr *)m = (struct map_hdr){ len, b };
	return m;
}

struct peer_bufs *peer_bufs_new(size_t keep)
{
	struct peer_bufs *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	pthread_mutex_init(&b->lock, NULL);
	b->keep = keep;
	return b;
}

void peer_bufs_drain(struct peer_bufs *b)
{
	uint8_t *m[MAX_FREE];
	unsigned n;

	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	n = b->n;
	for (unsigned i = 0; i < n; i++)
		m[i] = b->free[i];
	b->n = 0;
	b->kept = 0;
	pthread_mutex_unlock(&b->lock);
	for (unsigned i = 0; i < n; i++)
		munmap(m[i], map_size(m[i]));
}

static void destroy(struct peer_bufs *b)
{
	pthread_mutex_destroy(&b->lock);
	free(b);
}

void peer_bufs_free(struct peer_bufs *b)
{
	bool last;

	if (!b)
		return;
	peer_bufs_drain(b);
	pthread_mutex_lock(&b->lock);
	b->dying = true;
	last = b->out == 0;
	pthread_mutex_unlock(&b->lock);
	if (last)
		destroy(b);
}

/* Under the lock: take the smallest free mapping that holds size, or NULL. */
static uint8_t *take_fit(struct peer_bufs *b, size_t size)
{
	unsigned best = MAX_FREE;
	uint8_t *m;

	for (unsigned i = 0; i < b->n; i++)
		if (map_size(b->free[i]) >= size + HDR &&
		    (best == MAX_FREE || map_size(b->free[i]) < map_size(b->free[best])))
			best = i;
	if (best == MAX_FREE)
		return NULL;
	m = b->free[best];
	b->free[best] = b->free[--b->n];
	b->kept -= map_size(m);
	return m;
}

uint8_t *peer_bufs_get(struct peer_bufs *b, size_t size)
{
	uint8_t *m;

	pthread_mutex_lock(&b->lock);
	m = take_fit(b, size);
	if (m)
		b->out++;
	pthread_mutex_unlock(&b->lock);
	if (m)
		return m + HDR;
	m = map_buf(b, size);
	if (!m)
		return NULL;
	pthread_mutex_lock(&b->lock);
	b->out++;
	pthread_mutex_unlock(&b->lock);
	return m + HDR;
}

void peer_bufs_put(struct peer_bufs *b, uint8_t *buf)
{
	uint8_t *m;
	size_t len;
	bool last;

	if (!buf)
		return;
	m = buf - HDR;
	len = map_size(m);
	pthread_mutex_lock(&b->lock);
	b->out--;
	if (!b->dying && b->n < MAX_FREE && b->kept + len <= b->keep) {
		b->free[b->n++] = m;
		b->kept += len;
		m = NULL;
	}
	last = b->dying && b->out == 0;
	pthread_mutex_unlock(&b->lock);
	if (m)
		munmap(m, len);
	if (last)
		destroy(b);
}

void peer_bufs_release(uint8_t *buf)
{
	if (buf)
		peer_bufs_put(((struct map_hdr *)(buf - HDR))->pool, buf);
}
