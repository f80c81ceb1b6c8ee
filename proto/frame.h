/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Framing shared by the control socket and the peer protocol.  A frame is
 *
 *   header (24 bytes, little endian)   magic, version, type, flags,
 *                                      length, tail_length, checksum
 *   payload (length bytes)             one packed protobuf message
 *   tail (tail_length bytes)           raw bytes the message describes
 *                                      (page payloads of the peer protocol)
 *
 * The checksum (XXH32 of the first 20 header bytes) catches a stream that
 * lost its framing before the lengths are believed.  Both lengths are
 * checked against the receiving socket's limits before anything is
 * allocated; an unknown version or a type the socket does not accept is
 * rejected.  The tail length is in the header too, so every frame can be
 * delimited without decoding it; the message states what the tail holds
 * and the receiver checks the two agree.
 */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#define FRAME_MAGIC 0x474d5057u /* "WPMG" as little-endian bytes */
/* Bump when you change this: the header layout, a frame type, or any
 * message in proto/ in a way an older peer would misread. */
#define WPMIG_PROTO_VERSION 1
#define FRAME_HEADER_SIZE 24

enum frame_type {
	FRAME_CTL_REQUEST = 1,  /* client -> daemon: wpmig.Request */
	FRAME_CTL_RESPONSE = 2, /* daemon -> client: wpmig.Response, ends a request */
	FRAME_CTL_PROGRESS = 3, /* daemon -> client: wpmig.Progress */
	/* 0x100 and up: the peer protocol (daemon/peer-wire.h) */
};

/* Header flags.  A socket accepts only those in its frame_limits. */
enum {
	FRAME_F_MAC = 1u << 0, /* a FRAME_MAC_SIZE tag follows the tail (peer protocol) */
};
#define FRAME_MAC_SIZE 16

struct frame_header {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t flags; /* FRAME_F_*; 0 on the control socket */
	uint32_t length;
	uint32_t tail_length;
	uint32_t checksum;
};

/* What one socket accepts. */
struct frame_limits {
	uint32_t max_length;
	uint32_t max_tail;
	const uint16_t *types;
	size_t n_types;
	uint32_t flags_allowed; /* FRAME_F_* this socket accepts; others are -EBADMSG */
};

void frame_header_encode(const struct frame_header *h, uint8_t out[FRAME_HEADER_SIZE]);
/*
 * Decode and check a header: -EBADMSG (magic, checksum, flags),
 * -EPROTONOSUPPORT (version), -EPROTOTYPE (type), -EMSGSIZE (a length over
 * the limit).  *why gets a short static explanation.
 */
int frame_header_decode(const uint8_t in[FRAME_HEADER_SIZE], const struct frame_limits *lim,
			struct frame_header *out, const char **why);

/* Header + packed message in one malloc'ed buffer; the tail is the
 * caller's to send after it. */
int frame_pack(uint16_t type, const ProtobufCMessage *msg, uint32_t tail_length,
	       uint8_t **ret, size_t *ret_len);

/*
 * protobuf-c gives a string field as a C string: an embedded NUL would cut
 * it short unseen ("set\0x" read as "set").  This walks a packed message of
 * type d on the wire and fails with -EBADMSG if any string field, at any
 * depth, holds a NUL byte, or the wire format is broken; *field (may be
 * NULL) names the field.  Run it on what a peer sent, before believing the
 * unpacked strings.
 */
int pb_strings_clean(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
		     const char **field);

/* Blocking helpers for simple clients (wpmig-ctl, tests). */
int frame_write_fd(int fd, uint16_t type, const ProtobufCMessage *msg);
/* Reads one whole frame without a tail; *payload is malloc'ed (may be
 * NULL when the length is 0).  -EPIPE on a clean EOF before a header. */
int frame_read_fd(int fd, const struct frame_limits *lim, struct frame_header *hdr,
		  uint8_t **payload, const char **why);
