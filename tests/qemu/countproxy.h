/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A byte-counting TCP proxy for the benchmark: listens on 127.0.0.1 (an
 * ephemeral port), forwards every connection to a target, counts what
 * passes each way.  Bytes on the wire are counted here, never taken from
 * QEMU's counters (multifd's count pages before compression).
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct cproxy {
	int lfd, port;
	char host[64];
	int target_port;
	pthread_t accept_th;
	atomic_uint_least64_t bytes;
	atomic_int conns;
	atomic_bool stop;
};

/* Listen and forward to host:target_port; *p must stay put while running. */
int cproxy_start(struct cproxy *p, const char *host, int target_port);
void cproxy_stop(struct cproxy *p);
static inline uint64_t cproxy_bytes(struct cproxy *p)
{
	return atomic_load(&p->bytes);
}
