// SPDX-License-Identifier: GPL-2.0-only
#include "peer/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/util.h"

static const char *const proof_label[] = {
	[PEER_LABEL_SOURCE] = "wpmig peer proof source",
	[PEER_LABEL_RECEIVER] = "wpmig peer proof receiver",
};
static const char *const key_label[] = {
	[PEER_LABEL_SOURCE] = "wpmig peer mac source->receiver",
	[PEER_LABEL_RECEIVER] = "wpmig peer mac receiver->source",
};

static int key_file_ok(int fd, const char *path, char *why, size_t why_len)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, why_len, "%s is not a regular file", path);
		return -EINVAL;
	}
	if (st.st_uid != geteuid()) {
		snprintf(why, why_len, "%s is owned by uid %u, not by us", path, (unsigned)st.st_uid);
		return -EPERM;
	}
	if (st.st_mode & 077) {
		snprintf(why, why_len, "%s is accessible by group or others (mode %04o): "
			 "chmod 600 it", path, (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	if (st.st_size > PEER_KEY_MAX + 1 || st.st_size < PEER_KEY_MIN) {
		snprintf(why, why_len, "%s: the key must hold %d to %d bytes", path, PEER_KEY_MIN,
			 PEER_KEY_MAX);
		return -EINVAL;
	}
	return 0;
}

int peer_key_load(const char *path, struct peer_key *k, char *why, size_t why_len)
{
	/* O_NONBLOCK: a FIFO opens at once and is refused as not a regular file */
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	uint8_t buf[PEER_KEY_MAX + 2];
	ssize_t n;
	int r;

	*k = (struct peer_key){ 0 };
	if (fd < 0) {
		r = -errno;
		snprintf(why, why_len, "cannot open the peer key %s: %s", path, strerror(errno));
		return r;
	}
	r = key_file_ok(fd, path, why, why_len);
	if (r < 0)
		return r;
	n = read(fd, buf, sizeof(buf));
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n < PEER_KEY_MIN || n > PEER_KEY_MAX) {
		snprintf(why, why_len, "%s: the key must hold %d to %d bytes", path, PEER_KEY_MIN,
			 PEER_KEY_MAX);
		OPENSSL_cleanse(buf, sizeof(buf));
		return -EINVAL;
	}
	k->bytes = malloc((size_t)n);
	if (k->bytes) {
		memcpy(k->bytes, buf, (size_t)n);
		k->len = (size_t)n;
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	return k->bytes ? 0 : -ENOMEM;
}

void peer_key_free(struct peer_key *k)
{
	if (k->bytes)
		OPENSSL_cleanse(k->bytes, k->len);
	free(k->bytes);
	*k = (struct peer_key){ 0 };
}

int peer_random(uint8_t *buf, size_t n)
{
	return RAND_bytes(buf, (int)n) == 1 ? 0 : -EIO;
}

static void put_len(EVP_MD_CTX *c, size_t n)
{
	uint8_t b[4] = { (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24) };

	EVP_DigestUpdate(c, b, sizeof(b));
}

int peer_transcript(const uint8_t *hello_src, size_t src_len, const uint8_t *hello_rcv,
		    size_t rcv_len, uint8_t out[PEER_HASH_SIZE])
{
	static const char label[] = "wpmig peer handshake";
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned len = 0;
	int ok;

	if (!c)
		return -ENOMEM;
	ok = EVP_DigestInit_ex(c, EVP_sha256(), NULL) &&
	     EVP_DigestUpdate(c, label, sizeof(label));
	put_len(c, src_len);
	ok = ok && EVP_DigestUpdate(c, hello_src, src_len);
	put_len(c, rcv_len);
	ok = ok && EVP_DigestUpdate(c, hello_rcv, rcv_len) && EVP_DigestFinal_ex(c, out, &len);
	EVP_MD_CTX_free(c);
	return ok && len == PEER_HASH_SIZE ? 0 : -EIO;
}

static int labelled_hmac(const struct peer_key *k, const char *label,
			 const uint8_t transcript[PEER_HASH_SIZE], uint8_t out[PEER_HASH_SIZE])
{
	uint8_t msg[64 + PEER_HASH_SIZE];
	size_t l = strlen(label) + 1; /* the NUL separates label and transcript */
	unsigned len = 0;

	memcpy(msg, label, l);
	memcpy(msg + l, transcript, PEER_HASH_SIZE);
	if (!HMAC(EVP_sha256(), k->bytes, (int)k->len, msg, l + PEER_HASH_SIZE, out, &len))
		return -EIO;
	return len == PEER_HASH_SIZE ? 0 : -EIO;
}

int peer_proof(const struct peer_key *k, enum peer_role_label role,
	       const uint8_t transcript[PEER_HASH_SIZE], uint8_t out[PEER_HASH_SIZE])
{
	return labelled_hmac(k, proof_label[role], transcript, out);
}

bool peer_proof_ok(const struct peer_key *k, enum peer_role_label role,
		   const uint8_t transcript[PEER_HASH_SIZE], const uint8_t *proof, size_t len)
{
	uint8_t want[PEER_HASH_SIZE];
	bool ok;

	if (len != PEER_HASH_SIZE || peer_proof(k, role, transcript, want) < 0)
		return false;
	ok = CRYPTO_memcmp(want, proof, PEER_HASH_SIZE) == 0;
	OPENSSL_cleanse(want, sizeof(want));
	return ok;
}

int peer_mac_init(struct peer_mac *m, const struct peer_key *k, enum peer_role_label from,
		  const uint8_t transcript[PEER_HASH_SIZE])
{
	uint8_t key[PEER_HASH_SIZE];
	EVP_CIPHER_CTX *c;
	int r;

	*m = (struct peer_mac){ 0 };
	r = labelled_hmac(k, key_label[from], transcript, key);
	if (r < 0)
		return r;
	c = EVP_CIPHER_CTX_new();
	if (!c || EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, NULL) != 1) {
		EVP_CIPHER_CTX_free(c);
		OPENSSL_cleanse(key, sizeof(key));
		return -EIO;
	}
	OPENSSL_cleanse(key, sizeof(key));
	m->ctx = c;
	return 0;
}

void peer_mac_free(struct peer_mac *m)
{
	EVP_CIPHER_CTX_free(m->ctx);
	*m = (struct peer_mac){ 0 };
}

/* GMAC: GCM with everything as additional data and nothing encrypted. */
static int mac_compute(struct peer_mac *m, const struct iovec *iov, int n, uint8_t tag[16])
{
	uint8_t nonce[12] = { 0 }, none[16];
	uint64_t c = m->counter++;
	int len;

	for (int i = 0; i < 8; i++)
		nonce[i] = (uint8_t)(c >> (8 * i));
	if (!m->ctx || EVP_EncryptInit_ex(m->ctx, NULL, NULL, NULL, nonce) != 1)
		return -EIO;
	for (int i = 0; i < n; i++)
		if (iov[i].iov_len &&
		    EVP_EncryptUpdate(m->ctx, NULL, &len, iov[i].iov_base, (int)iov[i].iov_len) != 1)
			return -EIO;
	if (EVP_EncryptFinal_ex(m->ctx, none, &len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(m->ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
		return -EIO;
	return 0;
}

int peer_mac_seal(struct peer_mac *m, const struct iovec *iov, int n, uint8_t tag[16])
{
	return mac_compute(m, iov, n, tag);
}

int peer_mac_verify(struct peer_mac *m, const struct iovec *iov, int n, const uint8_t tag[16])
{
	uint8_t want[16];
	int r = mac_compute(m, iov, n, want);

	if (r < 0)
		return r;
	return CRYPTO_memcmp(want, tag, 16) == 0 ? 0 : -EBADMSG;
}
