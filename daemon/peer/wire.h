/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The peer protocol on the wire: frame types, limits, and the decoder that
 * turns bytes from another daemon into checked messages (docs/protocol.md).
 * Nothing here trusts its input: every length is checked against a limit
 * before anything is allocated, every message against its own rules after
 * it is unpacked.  No logging, no state: the fuzz target (tests/fuzz/)
 * drives exactly this code.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "peer.pb-c.h"
#include "pipeline/codec.h"
#include "pipeline/sink.h"

/* Bump when you change this: a frame type, a message's meaning, the
 * handshake or the MAC.  Negotiated in Hello (min..max).
 * 2: PEER_SECTION, and Commit counts its frames. */
#define PEER_PROTO_VERSION 2
#define PEER_DEFAULT_PORT 7369

#define PEER_NONCE_SIZE 32
#define PEER_PROOF_SIZE 32

enum peer_frame_type {
	PEER_HELLO = 0x100,  /* both ways, first */
	PEER_AUTH,           /* both ways */
	PEER_READY,          /* receiver -> source: authenticated */
	PEER_OPEN,           /* source -> receiver */
	PEER_OPEN_RESULT,    /* receiver -> source */
	PEER_CHUNK,          /* source -> receiver, with a tail */
	PEER_ZERO,           /* source -> receiver */
	PEER_REGIONS,        /* source -> receiver */
	PEER_COMMIT,         /* source -> receiver */
	PEER_COMMIT_RESULT,  /* receiver -> source */
	PEER_ABORT,          /* source -> receiver */
	PEER_ACK,            /* receiver -> source */
	PEER_ERROR,          /* both ways, then close */
	PEER_CLOSE,          /* both ways */
	PEER_SECTION,        /* source -> receiver, with a tail (version 2) */
	_PEER_FRAME_END,
};

/* Limits of what one peer may send another. */
#define PEER_MAX_CHUNK_PAGES 1024u       /* 4 MiB of pages per chunk */
#define PEER_MAX_SMALL 4096u             /* handshake and control messages */
#define PEER_MAX_CHUNK_MSG (64u << 10)   /* a chunk's message (extents, sums, slots) */
#define PEER_MAX_ZERO_RANGES 8192u       /* per Zero frame */
#define PEER_MAX_ZERO_MSG (256u << 10)
#define PEER_MAX_REGIONS_MSG (8u << 20)  /* a region table */
#define PEER_MAX_REGIONS 65536u
#define PEER_MAX_PATH 4096u
#define PEER_MAX_STRING 1024u            /* set names, messages, software */
#define PEER_MAX_CACHE_SLOTS (1u << 20)  /* 4 GiB of cached pages at most */
#define PEER_MAX_MIG_BACKENDS 16u        /* guest RAM backends of a migration */
#define PEER_MAX_MIG_ID 64u              /* a backend's id */
#define PEER_MAX_SECTION_PIECE (4u << 20) /* bytes of a section in one frame */

/* Header checks every peer socket applies (frame_header_decode). */
extern const struct frame_limits peer_frame_limits;

/* Bytes of a whole frame: header, message, tail, tag. */
size_t peer_frame_size(const struct frame_header *h);
/* Largest whole frame any peer may send: sizes input buffers. */
size_t peer_frame_max(void);

/*
 * After frame_header_decode(&peer_frame_limits): the type's own limits,
 * a tail only on chunks and sections, and the MAC flag exactly when
 * authenticated.
 * 0 or -EMSGSIZE / -EBADMSG / -EPROTOTYPE with *why set.
 */
int peer_frame_check(const struct frame_header *h, bool authed, const char **why);

/*
 * Unpack the message of a frame of this type and check it against its
 * rules (lengths, counts, ranges).  *ret is freed with peer_msg_free().
 */
int peer_msg_unpack(uint16_t type, const uint8_t *data, size_t len, ProtobufCMessage **ret,
		    const char **why);
void peer_msg_free(ProtobufCMessage *m);
const char *peer_type_name(uint16_t type);

/*
 * A chunk message and its tail as an enc_chunk (ext allocated into
 * out->ext, capacity reused; page_sums and payload point into m and tail)
 * after codec_check(); slots must be below n_slots.  Does not decode.
 */
int peer_chunk_view(const Wpmig__Peer__Chunk *m, const uint8_t *tail, uint32_t tail_len,
		    uint32_t n_slots, struct enc_chunk *out, const char **why);
/* Frees only what peer_chunk_view allocated. */
void peer_chunk_view_free(struct enc_chunk *v);

/* The header of a peer frame carrying a len-byte message. */
struct frame_header peer_frame_header(uint16_t type, size_t len, uint32_t tail_len, bool mac);
/* Header + packed message (+ room for nothing else) in one malloc'ed
 * buffer; the caller sends the tail and, with mac, the tag after it. */
int peer_frame_pack(uint16_t type, const ProtobufCMessage *m, uint32_t tail_len, bool mac,
		    uint8_t **ret, size_t *ret_len);
