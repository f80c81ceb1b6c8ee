// SPDX-License-Identifier: GPL-2.0-only
#include "peer/io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "basic/util.h"

/* A frame buffer goes back where it came from. */
static void buf_release(struct peer_bufs *bufs, uint8_t *buf)
{
	if (bufs)
		peer_bufs_put(bufs, buf);
	else
		free(buf);
}

void peer_frame_clear(struct peer_frame *f)
{
	peer_msg_free(f->m);
	buf_release(f->bufs, f->buf);
	*f = (struct peer_frame){ 0 };
}

static int verify(struct peer_rx *rx, struct peer_frame *f, const char **why)
{
	size_t body = f->size - FRAME_MAC_SIZE;
	struct iovec iov = { f->buf, body };

	if (peer_mac_verify(&rx->mac, &iov, 1, f->buf + body) < 0)
		return *why = "frame MAC mismatch: corrupted, replayed or forged", -EBADMSG;
	rx->frames++;
	rx->bytes += f->size;
	return 0;
}

size_t peer_rx_want(struct evbuffer *in)
{
	uint8_t raw[FRAME_HEADER_SIZE];
	struct frame_header h;
	const char *why;

	if (evbuffer_copyout(in, raw, sizeof(raw)) < (ssize_t)sizeof(raw) ||
	    frame_header_decode(raw, &peer_frame_limits, &h, &why) < 0)
		return FRAME_HEADER_SIZE;
	return MIN(peer_frame_size(&h), peer_frame_max());
}

/* A whole frame in f->buf: its MAC, then its message. */
static int finish(struct peer_rx *rx, struct peer_frame *f, const char **why)
{
	int r;

	f->msg = f->buf + FRAME_HEADER_SIZE;
	f->tail = f->msg + f->h.length;
	r = f->h.flags & FRAME_F_MAC ? verify(rx, f, why) : 0;
	if (r == 0)
		r = peer_msg_unpack(f->h.type, f->msg, f->h.length, &f->m, why);
	if (r < 0)
		peer_frame_clear(f);
	return r < 0 ? r : 1;
}

int peer_rx_take(struct peer_rx *rx, struct evbuffer *in, struct peer_frame *f,
		 const char **why)
{
	uint8_t raw[FRAME_HEADER_SIZE];
	int r;

	*f = (struct peer_frame){ 0 };
	if (evbuffer_copyout(in, raw, sizeof(raw)) < (ssize_t)sizeof(raw))
		return 0;
	r = frame_header_decode(raw, &peer_frame_limits, &f->h, why);
	if (r == 0)
		r = peer_frame_check(&f->h, rx->authed, why);
	if (r < 0)
		return r;
	f->size = peer_frame_size(&f->h);
	if (evbuffer_get_length(in) < f->size)
		return 0;
	/* Every length is within its type's limit now: allocate. */
	f->buf = malloc(f->size);
	if (!f->buf)
		return *why = "out of memory", -ENOMEM;
	evbuffer_remove(in, f->buf, f->size);
	return finish(rx, f, why);
}

/* read() into p: bytes read, 0 when it would block, -EPIPE at EOF. */
static ssize_t read_some(int fd, uint8_t *p, size_t n)
{
	ssize_t k;

	do
		k = read(fd, p, n);
	while (k < 0 && errno == EINTR);
	if (k < 0)
		return errno == EAGAIN ? 0 : -errno;
	return k ? k : -EPIPE;
}

static int header_done(struct peer_reader *r, struct peer_rx *rx, const char **why)
{
	int e = frame_header_decode(r->hdr, &peer_frame_limits, &r->h, why);

	if (e == 0)
		e = peer_frame_check(&r->h, rx->authed, why);
	if (e < 0)
		return e;
	r->size = peer_frame_size(&r->h);
	/* every length is within its type's limit */
	r->buf = r->bufs ? peer_bufs_get(r->bufs, r->size) : malloc(r->size);
	if (!r->buf)
		return *why = "out of memory", -ENOMEM;
	memcpy(r->buf, r->hdr, FRAME_HEADER_SIZE);
	r->got = FRAME_HEADER_SIZE;
	return 0;
}

int peer_reader_read(struct peer_reader *r, int fd, struct peer_rx *rx, struct peer_frame *f,
		     const char **why)
{
	ssize_t k;
	int e;

	*f = (struct peer_frame){ 0 };
	while (!r->buf) {
		k = read_some(fd, r->hdr + r->hdr_got, FRAME_HEADER_SIZE - r->hdr_got);
		if (k <= 0) {
			*why = r->hdr_got ? "connection closed mid-frame" : "connection closed";
			return (int)k;
		}
		r->hdr_got += (size_t)k;
		if (r->hdr_got == FRAME_HEADER_SIZE && (e = header_done(r, rx, why)) < 0)
			return e;
	}
	while (r->got < r->size) {
		k = read_some(fd, r->buf + r->got, r->size - r->got);
		if (k <= 0) {
			*why = "connection closed mid-frame";
			return (int)k;
		}
		r->got += (size_t)k;
	}
	*f = (struct peer_frame){ .h = r->h, .size = r->size, .buf = r->buf, .bufs = r->bufs };
	*r = (struct peer_reader){ .bufs = r->bufs };
	return finish(rx, f, why);
}

bool peer_reader_partial(const struct peer_reader *r)
{
	return r->hdr_got > 0;
}

void peer_reader_free(struct peer_reader *r)
{
	buf_release(r->bufs, r->buf);
	*r = (struct peer_reader){ .bufs = r->bufs };
}

int peer_frame_build(uint16_t type, const ProtobufCMessage *m, const uint8_t *tail,
		     uint32_t tail_len, bool mac, uint8_t **ret, size_t *ret_len)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	size_t total = FRAME_HEADER_SIZE + len + tail_len + (mac ? FRAME_MAC_SIZE : 0);
	struct frame_header h = {
		.magic = FRAME_MAGIC, .version = WPMIG_PROTO_VERSION, .type = type,
		.flags = mac ? FRAME_F_MAC : 0, .length = (uint32_t)len, .tail_length = tail_len,
	};
	uint8_t *buf;

	if (len > PEER_MAX_REGIONS_MSG)
		return -EMSGSIZE;
	buf = malloc(total);
	if (!buf)
		return -ENOMEM;
	frame_header_encode(&h, buf);
	protobuf_c_message_pack(m, buf + FRAME_HEADER_SIZE);
	if (tail_len)
		memcpy(buf + FRAME_HEADER_SIZE + len, tail, tail_len);
	*ret = buf;
	*ret_len = total;
	return 0;
}

int peer_frame_around(uint16_t type, const ProtobufCMessage *m, uint8_t *mem, uint32_t tail_len,
		      bool mac, uint8_t **start, size_t *len)
{
	size_t msg = protobuf_c_message_get_packed_size(m);
	struct frame_header h = peer_frame_header(type, msg, tail_len, mac);
	uint8_t *p;

	if (msg > PEER_MAX_CHUNK_MSG)
		return -EMSGSIZE;
	p = mem + PEER_TAIL_OFF - msg - FRAME_HEADER_SIZE;
	frame_header_encode(&h, p);
	protobuf_c_message_pack(m, p + FRAME_HEADER_SIZE);
	*start = p;
	*len = FRAME_HEADER_SIZE + msg + tail_len + (mac ? FRAME_MAC_SIZE : 0);
	return 0;
}

int peer_frame_seal(struct peer_mac *mac, uint8_t *buf, size_t len)
{
	struct iovec iov = { buf, len - FRAME_MAC_SIZE };

	return peer_mac_seal(mac, &iov, 1, buf + len - FRAME_MAC_SIZE);
}

static void free_cleanup(const void *data, size_t len, void *extra)
{
	free(extra);
}

static void release_cleanup(const void *data, size_t len, void *extra)
{
	peer_bufs_release(extra);
}

int peer_evbuffer_add_in(struct evbuffer *out, uint8_t *mem, bool pooled, uint8_t *buf,
			 size_t len)
{
	if (evbuffer_add_reference(out, buf, len, pooled ? release_cleanup : free_cleanup,
				   mem) < 0) {
		peer_frame_mem_free(mem, pooled);
		return -ENOMEM;
	}
	return 0;
}

int peer_evbuffer_add(struct evbuffer *out, uint8_t *buf, size_t len)
{
	return peer_evbuffer_add_in(out, buf, false, buf, len);
}

void peer_frame_mem_free(uint8_t *mem, bool pooled)
{
	if (pooled)
		peer_bufs_release(mem);
	else
		free(mem);
}

static int resolve_unix(const char *path, struct sockaddr_storage *sa, socklen_t *len,
			char *why, size_t why_len)
{
	struct sockaddr_un *un = (struct sockaddr_un *)sa;

	if (path[0] != '/' || strlen(path) >= sizeof(un->sun_path)) {
		snprintf(why, why_len, "unix:%s: expected an absolute path under %zu bytes", path,
			 sizeof(un->sun_path));
		return -EINVAL;
	}
	memset(sa, 0, sizeof(*sa));
	un->sun_family = AF_UNIX;
	strcpy(un->sun_path, path);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
	return 0;
}

static int copy_part(char *dst, size_t dst_len, const char *src, size_t n)
{
	if (!n || n >= dst_len)
		return -EINVAL;
	memcpy(dst, src, n);
	dst[n] = 0;
	return 0;
}

/* Split HOST:PORT, [V6]:PORT, [V6], HOST or a bare IPv6 address. */
static int split_host(const char *addr, char *host, size_t host_len, char *port, size_t port_len)
{
	const char *p = NULL, *colon;

	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');

		if (!close || (close[1] && close[1] != ':'))
			return -EINVAL;
		p = close[1] ? close + 2 : NULL;
		if (copy_part(host, host_len, addr + 1, (size_t)(close - addr - 1)) < 0)
			return -EINVAL;
	} else {
		colon = strchr(addr, ':');
		if (colon && strchr(colon + 1, ':'))
			colon = NULL; /* several colons: an IPv6 address without port */
		p = colon ? colon + 1 : NULL;
		if (copy_part(host, host_len, addr, colon ? (size_t)(colon - addr) : strlen(addr)) < 0)
			return -EINVAL;
	}
	if (p)
		snprintf(port, port_len, "%s", p);
	else
		snprintf(port, port_len, "%d", PEER_DEFAULT_PORT);
	return 0;
}

int peer_addr_resolve(const char *addr, bool passive, struct sockaddr_storage *sa,
		      socklen_t *len, char *why, size_t why_len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char host[256], port[16];
	uint64_t p;
	int r;

	if (!strncmp(addr, "unix:", 5))
		return resolve_unix(addr + 5, sa, len, why, why_len);
	if (split_host(addr, host, sizeof(host), port, sizeof(port)) < 0 ||
	    parse_number(port, 65535, &p) < 0 || p == 0) {
		snprintf(why, why_len, "%s: expected HOST:PORT, [IPv6]:PORT, HOST or unix:/PATH",
			 addr);
		return -EINVAL;
	}
	if (passive)
		hints.ai_flags |= AI_PASSIVE;
	r = getaddrinfo(host, port, &hints, &res);
	if (r != 0 || !res) {
		snprintf(why, why_len, "cannot resolve %s: %s", host, gai_strerror(r));
		return -ENOENT;
	}
	memcpy(sa, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

void peer_addr_name(const struct sockaddr *sa, socklen_t len, char *buf, size_t buf_len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, buf_len, "%s:%u", ip, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, buf_len, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, buf_len, "unix");
	}
}
