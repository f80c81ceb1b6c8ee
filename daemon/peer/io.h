/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Frames of the peer protocol on a libevent buffer, for both ends: take
 * whole frames out of an input buffer (header checked before anything is
 * allocated, MAC checked before the message is unpacked), build frames
 * with their MAC, and parse addresses.
 */
#pragma once

#include <event2/buffer.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "peer/auth.h"
#include "peer/bufs.h"
#include "peer/wire.h"

/* Bytes one read() or write() of a peer socket moves at most. */
#define PEER_IO_CHUNK (1u << 20)

/* The receiving half of a connection. */
struct peer_rx {
	bool authed;         /* frames carry a MAC checked with mac */
	struct peer_mac mac;
	uint64_t frames, bytes; /* authenticated frames taken */
};

struct peer_frame {
	struct frame_header h;
	size_t size;         /* whole frame on the wire */
	uint8_t *buf;        /* header, message, tail (owned) */
	struct peer_bufs *bufs; /* where buf goes back to; NULL: malloc'ed */
	const uint8_t *msg;  /* h.length bytes */
	const uint8_t *tail; /* h.tail_length bytes */
	ProtobufCMessage *m; /* unpacked and checked */
};

/*
 * Take one whole frame from in: 1 when *f was filled, 0 when more bytes
 * are needed, a negative errno with *why when the stream is bad.
 */
int peer_rx_take(struct peer_rx *rx, struct evbuffer *in, struct peer_frame *f,
		 const char **why);
void peer_frame_clear(struct peer_frame *f);
/* Bytes in needs before the next frame can be taken whole (for the read
 * low watermark: no wake-up per packet of a long frame). */
size_t peer_rx_want(struct evbuffer *in);

/*
 * Frames read straight from a socket into their own buffers: libevent 2.1
 * reads at most 4 KiB per call into an evbuffer, which for the receiver's
 * hundreds of MB meant a read, an ioctl and an epoll_wait per 4 KiB and a
 * copy more.  The header is read and checked first; only then is the
 * frame's buffer allocated and the rest read into it.
 */
struct peer_reader {
	struct peer_bufs *bufs; /* frame buffers come from here (set by the owner) */
	uint8_t hdr[FRAME_HEADER_SIZE];
	size_t hdr_got;
	struct frame_header h;
	uint8_t *buf;
	size_t size, got;
};

/* 1: a frame in *f; 0: the socket has nothing more now; -EPIPE: closed
 * (*why says whether mid-frame); other negative errno with *why. */
int peer_reader_read(struct peer_reader *r, int fd, struct peer_rx *rx, struct peer_frame *f,
		     const char **why);
/* Part of a frame is in: it must be finished in time. */
bool peer_reader_partial(const struct peer_reader *r);
void peer_reader_free(struct peer_reader *r);

/*
 * One frame in one malloc'ed buffer: header, message, a copy of tail, and
 * room for the tag when mac (filled by peer_frame_seal()).
 */
int peer_frame_build(uint16_t type, const ProtobufCMessage *m, const uint8_t *tail,
		     uint32_t tail_len, bool mac, uint8_t **ret, size_t *ret_len);
/*
 * A chunk frame around a payload already in place, so the payload is
 * never copied: mem has room for the header and a message of up to
 * PEER_MAX_CHUNK_MSG bytes, the tail at mem + PEER_TAIL_OFF, then room for
 * the tag.  The frame starts at *start (inside mem), *len bytes long.
 */
#define PEER_TAIL_OFF (FRAME_HEADER_SIZE + PEER_MAX_CHUNK_MSG)
int peer_frame_around(uint16_t type, const ProtobufCMessage *m, uint8_t *mem, uint32_t tail_len,
		      bool mac, uint8_t **start, size_t *len);
/* Write the tag over the frame's last FRAME_MAC_SIZE bytes (the next counter). */
int peer_frame_seal(struct peer_mac *mac, uint8_t *buf, size_t len);
/* Hand a built buffer to an evbuffer without copying; it is freed there
 * (mem, which holds buf: malloc'ed, or from a struct peer_bufs when pooled). */
int peer_evbuffer_add(struct evbuffer *out, uint8_t *buf, size_t len);
int peer_evbuffer_add_in(struct evbuffer *out, uint8_t *mem, bool pooled, uint8_t *buf,
			 size_t len);
/* free(mem), or back to its pool. */
void peer_frame_mem_free(uint8_t *mem, bool pooled);

/* "HOST:PORT", "[V6]:PORT", "HOST" (PEER_DEFAULT_PORT), or "unix:/PATH".
 * Resolves (blocking: not on the loop).  -EINVAL/-ENOENT with why. */
int peer_addr_resolve(const char *addr, bool passive, struct sockaddr_storage *sa,
		      socklen_t *len, char *why, size_t why_len);
/* Printable form of a socket address ("1.2.3.4:5", "[::1]:5", "unix"). */
void peer_addr_name(const struct sockaddr *sa, socklen_t len, char *buf, size_t buf_len);
