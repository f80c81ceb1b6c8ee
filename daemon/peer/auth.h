/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Authentication of the peer protocol (docs/protocol.md, "Handshake"):
 * the pre-shared key, fresh nonces, the handshake transcript, the HMAC
 * proofs of both roles, and the per-frame MAC (AES-256-GMAC) keyed by
 * session keys derived from the key and the transcript.  OpenSSL libcrypto
 * does the cryptography.  Nothing here logs.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define PEER_KEY_MIN 16
#define PEER_KEY_MAX 1024
#define PEER_HASH_SIZE 32

struct peer_key {
	uint8_t *bytes;
	size_t len;
};

/*
 * The key is the file's content, one trailing newline dropped.  Refused
 * (with why): not a regular file, not owned by us, any group or other
 * permission bit, shorter than PEER_KEY_MIN or longer than PEER_KEY_MAX.
 */
int peer_key_load(const char *path, struct peer_key *k, char *why, size_t why_len);
void peer_key_free(struct peer_key *k);

/* n bytes from the CSPRNG. */
int peer_random(uint8_t *buf, size_t n);

enum peer_role_label {
	PEER_LABEL_SOURCE,   /* the connecting side */
	PEER_LABEL_RECEIVER, /* the listening side */
};

/* SHA-256 over a label and both Hello messages exactly as sent. */
int peer_transcript(const uint8_t *hello_src, size_t src_len, const uint8_t *hello_rcv,
		    size_t rcv_len, uint8_t out[PEER_HASH_SIZE]);
/* HMAC-SHA256(key, "wpmig peer proof <role>" || transcript). */
int peer_proof(const struct peer_key *k, enum peer_role_label role,
	       const uint8_t transcript[PEER_HASH_SIZE], uint8_t out[PEER_HASH_SIZE]);
/* Constant-time check of a proof received from role. */
bool peer_proof_ok(const struct peer_key *k, enum peer_role_label role,
		   const uint8_t transcript[PEER_HASH_SIZE], const uint8_t *proof, size_t len);

/* The MAC of one direction (frames sent by `from`).  Each frame's tag
 * uses the next counter value as the GCM nonce: a replayed, dropped or
 * reordered frame fails. */
struct peer_mac {
	void *ctx; /* EVP_CIPHER_CTX */
	uint64_t counter;
};

int peer_mac_init(struct peer_mac *m, const struct peer_key *k, enum peer_role_label from,
		  const uint8_t transcript[PEER_HASH_SIZE]);
void peer_mac_free(struct peer_mac *m);
/* Tag over the pieces of one frame (header, message, tail). */
int peer_mac_seal(struct peer_mac *m, const struct iovec *iov, int n, uint8_t tag[16]);
/* -EBADMSG when the tag does not match. */
int peer_mac_verify(struct peer_mac *m, const struct iovec *iov, int n, const uint8_t tag[16]);
