// SPDX-License-Identifier: GPL-2.0-only
#include "frame.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xxhash.h>

static void put16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint32_t header_sum(const uint8_t *p)
{
	return XXH32(p, 20, FRAME_MAGIC);
}

void frame_header_encode(const struct frame_header *h, uint8_t out[FRAME_HEADER_SIZE])
{
	put32(out, h->magic);
	put16(out + 4, h->version);
	put16(out + 6, h->type);
	put32(out + 8, h->flags);
	put32(out + 12, h->length);
	put32(out + 16, h->tail_length);
	put32(out + 20, header_sum(out));
}

static int type_allowed(const struct frame_limits *lim, uint16_t type)
{
	for (size_t i = 0; i < lim->n_types; i++)
		if (lim->types[i] == type)
			return 1;
	return 0;
}

int frame_header_decode(const uint8_t in[FRAME_HEADER_SIZE], const struct frame_limits *lim,
			struct frame_header *h, const char **why)
{
	static const char *ignored;

	if (!why)
		why = &ignored;
	*h = (struct frame_header){
		.magic = get32(in), .version = get16(in + 4), .type = get16(in + 6),
		.flags = get32(in + 8), .length = get32(in + 12),
		.tail_length = get32(in + 16), .checksum = get32(in + 20),
	};
	if (h->magic != FRAME_MAGIC)
		return *why = "bad magic", -EBADMSG;
	if (h->checksum != header_sum(in))
		return *why = "bad header checksum", -EBADMSG;
	if (h->version != WPMIG_PROTO_VERSION)
		return *why = "unsupported protocol version", -EPROTONOSUPPORT;
	if (h->flags & ~lim->flags_allowed)
		return *why = "unknown frame flags", -EBADMSG;
	if (!type_allowed(lim, h->type))
		return *why = "unexpected frame type", -EPROTOTYPE;
	if (h->length > lim->max_length)
		return *why = "frame longer than this socket accepts", -EMSGSIZE;
	if (h->tail_length > lim->max_tail)
		return *why = "frame tail longer than this socket accepts", -EMSGSIZE;
	*why = NULL;
	return 0;
}

int frame_pack(uint16_t type, const ProtobufCMessage *msg, uint32_t tail_length,
	       uint8_t **ret, size_t *ret_len)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	struct frame_header h = {
		.magic = FRAME_MAGIC, .version = WPMIG_PROTO_VERSION, .type = type,
		.length = (uint32_t)len, .tail_length = tail_length,
	};
	uint8_t *buf;

	if (len > UINT32_MAX)
		return -EMSGSIZE;
	buf = malloc(FRAME_HEADER_SIZE + len);
	if (!buf)
		return -ENOMEM;
	frame_header_encode(&h, buf);
	protobuf_c_message_pack(msg, buf + FRAME_HEADER_SIZE);
	*ret = buf;
	*ret_len = FRAME_HEADER_SIZE + len;
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

		if (k < 0 && errno == ENOTSOCK)
			k = write(fd, p, n);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* 0 when all n bytes came; -EPIPE on EOF before the first, -EIO after. */
static int read_all(int fd, uint8_t *p, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k = read(fd, p + got, n - got);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			return got ? -EIO : -EPIPE;
		got += (size_t)k;
	}
	return 0;
}

int frame_write_fd(int fd, uint16_t type, const ProtobufCMessage *msg)
{
	uint8_t *buf;
	size_t len;
	int r = frame_pack(type, msg, 0, &buf, &len);

	if (r < 0)
		return r;
	r = write_all(fd, buf, len);
	free(buf);
	return r;
}

int frame_read_fd(int fd, const struct frame_limits *lim, struct frame_header *hdr,
		  uint8_t **payload, const char **why)
{
	uint8_t raw[FRAME_HEADER_SIZE];
	uint8_t *buf = NULL;
	int r;

	*payload = NULL;
	r = read_all(fd, raw, sizeof(raw));
	if (r < 0)
		return r;
	r = frame_header_decode(raw, lim, hdr, why);
	if (r < 0)
		return r;
	if (hdr->tail_length)
		return -EPROTO;
	if (hdr->length) {
		buf = malloc(hdr->length);
		if (!buf)
			return -ENOMEM;
		r = read_all(fd, buf, hdr->length);
		if (r < 0) {
			free(buf);
			return r == -EPIPE ? -EIO : r;
		}
	}
	*payload = buf;
	return 0;
}

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;

		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
	}
	return -EBADMSG;
}

static int strings_clean(const ProtobufCMessageDescriptor *d, const uint8_t *p,
			 const uint8_t *end, unsigned depth, const char **field)
{
	uint64_t tag, v;

	if (depth > 32)
		return -EBADMSG;
	while (p < end) {
		const ProtobufCFieldDescriptor *f;

		if (read_varint(&p, end, &tag) < 0 || tag >> 3 == 0 || tag >> 3 > UINT32_MAX)
			return -EBADMSG;
		switch (tag & 7) {
		case 0: /* varint */
			if (read_varint(&p, end, &v) < 0)
				return -EBADMSG;
			break;
		case 1: /* 64-bit */
		case 5: /* 32-bit */
			if ((size_t)(end - p) < ((tag & 7) == 1 ? 8u : 4u))
				return -EBADMSG;
			p += (tag & 7) == 1 ? 8 : 4;
			break;
		case 2: /* length-delimited: a string, bytes, a message or packed */
			if (read_varint(&p, end, &v) < 0 || v > (uint64_t)(end - p))
				return -EBADMSG;
			f = protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3));
			if (f && f->type == PROTOBUF_C_TYPE_STRING && memchr(p, 0, v)) {
				if (field)
					*field = f->name;
				return -EBADMSG;
			}
			if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
			    strings_clean(f->descriptor, p, p + v, depth + 1, field) < 0)
				return -EBADMSG;
			p += v;
			break;
		default: /* groups: not in proto3 */
			return -EBADMSG;
		}
	}
	return 0;
}

int pb_strings_clean(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
		     const char **field)
{
	if (field)
		*field = NULL;
	return strings_clean(d, buf, buf + len, 0, field);
}
