/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Frame buffers a receiver keeps for reuse.  Chunk frames of up to a few
 * MiB were malloc'ed on the loop and freed on a worker; glibc then gave
 * the top of its heap back to the kernel and faulted the same pages in
 * again for the next frames: page faults, brk and munmap were 28 % of a
 * receiver's CPU.  Buffers here are mapped once, kept while generations
 * are being received (at most `keep` bytes of them free), and given back
 * when none is (server.c).  A sender's link keeps its chunk frames here
 * too (link.c): a frame is given back when libevent has written it.
 * Thread-safe.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct peer_bufs;

struct peer_bufs *peer_bufs_new(size_t keep);
/* Buffers still out are unmapped when put back; the last one frees b
 * (libevent may release a freed bufferevent's chains later, on its loop). */
void peer_bufs_free(struct peer_bufs *b);
/* Unmap the free buffers (idle). */
void peer_bufs_drain(struct peer_bufs *b);
/* A buffer of at least size bytes, or NULL (out of memory). */
uint8_t *peer_bufs_get(struct peer_bufs *b, size_t size);
void peer_bufs_put(struct peer_bufs *b, uint8_t *buf);
/* Put buf back in the pool it came from. */
void peer_bufs_release(uint8_t *buf);
