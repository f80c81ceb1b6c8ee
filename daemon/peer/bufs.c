// SPDX-License-Identifier: GPL-2.0-only
#include "peer/bufs.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#define HDR 64              /* the mapping's size, before the buffer (keeps it aligned) */
#define GRAIN (256u << 10)  /* mappings are multiples: frames of like sizes share buffers */
#define MAX_FREE 64

struct peer_bufs {
	pthread_mutex_t lock;
	size_t keep, kept; /* bytes of free mappings: at most, now */
	uint8_t *free[MAX_FREE];
	unsigned n;
};

static size_t map_size(const uint8_t *m)
{
	return *(const size_t *)m;
}

static uint8_t *map_buf(size_t size)
{
	size_t len = (size + HDR + GRAIN - 1) / GRAIN * GRAIN;
	uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		return NULL;
	*(size_t *)m = len;
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

void peer_bufs_free(struct peer_bufs *b)
{
	if (!b)
		return;
	peer_bufs_drain(b);
	pthread_mutex_destroy(&b->lock);
	free(b);
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
	pthread_mutex_unlock(&b->lock);
	if (!m)
		m = map_buf(size);
	return m ? m + HDR : NULL;
}

void peer_bufs_put(struct peer_bufs *b, uint8_t *buf)
{
	uint8_t *m;
	size_t len;

	if (!buf)
		return;
	m = buf - HDR;
	len = map_size(m);
	pthread_mutex_lock(&b->lock);
	if (b->n < MAX_FREE && b->kept + len <= b->keep) {
		b->free[b->n++] = m;
		b->kept += len;
		m = NULL;
	}
	pthread_mutex_unlock(&b->lock);
	if (m)
		munmap(m, len);
}
