// SPDX-License-Identifier: GPL-2.0-only
#include "peer/wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "basic/util.h"

struct type_info {
	const char *name;
	const ProtobufCMessageDescriptor *desc;
	uint32_t max_len;   /* packed message */
	size_t alloc_limit; /* what unpacking it may allocate */
	bool pre_auth;      /* allowed before the handshake ends */
};

#define SMALL_ALLOC (64u << 10)

static const struct type_info types[_PEER_FRAME_END - PEER_HELLO] = {
	[PEER_HELLO - PEER_HELLO] = { "hello", &wpmig__peer__hello__descriptor,
				      PEER_MAX_SMALL, SMALL_ALLOC, true },
	[PEER_AUTH - PEER_HELLO] = { "auth", &wpmig__peer__auth__descriptor,
				     PEER_MAX_SMALL, SMALL_ALLOC, true },
	[PEER_READY - PEER_HELLO] = { "ready", &wpmig__peer__ready__descriptor,
				      PEER_MAX_SMALL, SMALL_ALLOC, false },
	[PEER_OPEN - PEER_HELLO] = { "open", &wpmig__peer__open__descriptor,
				     PEER_MAX_SMALL, SMALL_ALLOC, false },
	[PEER_OPEN_RESULT - PEER_HELLO] = { "open-result", &wpmig__peer__open_result__descriptor,
					    PEER_MAX_SMALL, SMALL_ALLOC, false },
	[PEER_CHUNK - PEER_HELLO] = { "chunk", &wpmig__peer__chunk__descriptor,
				      PEER_MAX_CHUNK_MSG, 1u << 20, false },
	[PEER_ZERO - PEER_HELLO] = { "zero", &wpmig__peer__zero__descriptor,
				     PEER_MAX_ZERO_MSG, 2u << 20, false },
	[PEER_REGIONS - PEER_HELLO] = { "regions", &wpmig__peer__region_changes__descriptor,
					PEER_MAX_REGIONS_MSG, 16u << 20, false },
	[PEER_COMMIT - PEER_HELLO] = { "commit", &wpmig__peer__commit__descriptor,
				       PEER_MAX_SMALL, SMALL_ALLOC, false },
	[PEER_COMMIT_RESULT - PEER_HELLO] = { "commit-result",
					      &wpmig__peer__commit_result__descriptor,
					      PEER_MAX_SMALL, SMALL_ALLOC, false },
	[PEER_ABORT - PEER_HELLO] = { "abort", &wpmig__peer__abort__descriptor,
				      PEER_MAX_SMALL, SMALL_ALLOC, false },
	[PEER_ACK - PEER_HELLO] = { "ack", &wpmig__peer__ack__descriptor,
				    PEER_MAX_SMALL, SMALL_ALLOC, false },
	[PEER_ERROR - PEER_HELLO] = { "error", &wpmig__peer__error__descriptor,
				      PEER_MAX_SMALL, SMALL_ALLOC, true },
	[PEER_CLOSE - PEER_HELLO] = { "close", &wpmig__peer__close__descriptor,
				      PEER_MAX_SMALL, SMALL_ALLOC, true },
	[PEER_SECTION - PEER_HELLO] = { "section", &wpmig__peer__section__descriptor,
					PEER_MAX_SMALL, SMALL_ALLOC, false },
};

static const uint16_t all_types[] = {
	PEER_HELLO, PEER_AUTH, PEER_READY, PEER_OPEN, PEER_OPEN_RESULT, PEER_CHUNK, PEER_ZERO,
	PEER_REGIONS, PEER_COMMIT, PEER_COMMIT_RESULT, PEER_ABORT, PEER_ACK, PEER_ERROR,
	PEER_CLOSE, PEER_SECTION,
};

const struct frame_limits peer_frame_limits = {
	.max_length = PEER_MAX_REGIONS_MSG,
	.max_tail = 0xffffffffu, /* checked per type by peer_frame_check() */
	.types = all_types,
	.n_types = ARRAY_SIZE(all_types),
	.flags_allowed = FRAME_F_MAC,
};

static const struct type_info *info(uint16_t type)
{
	if (type < PEER_HELLO || type >= _PEER_FRAME_END)
		return NULL;
	return &types[type - PEER_HELLO];
}

const char *peer_type_name(uint16_t type)
{
	const struct type_info *t = info(type);

	return t ? t->name : "unknown";
}

size_t peer_frame_size(const struct frame_header *h)
{
	return FRAME_HEADER_SIZE + (size_t)h->length + h->tail_length +
	       (h->flags & FRAME_F_MAC ? FRAME_MAC_SIZE : 0);
}

size_t peer_frame_max(void)
{
	size_t chunk = FRAME_HEADER_SIZE + PEER_MAX_CHUNK_MSG +
		       codec_payload_bound(PEER_MAX_CHUNK_PAGES) + FRAME_MAC_SIZE;
	size_t regions = FRAME_HEADER_SIZE + PEER_MAX_REGIONS_MSG + FRAME_MAC_SIZE;

	return MAX(chunk, regions);
}

int peer_frame_check(const struct frame_header *h, bool authed, const char **why)
{
	const struct type_info *t = info(h->type);

	if (!t)
		return *why = "unknown frame type", -EPROTOTYPE;
	if (!authed && !t->pre_auth)
		return *why = "frame before authentication", -EACCES;
	/* An error may come unauthenticated at any time (a refused handshake):
	 * it only ends the connection, which anyone on the path can do. */
	if (!!(h->flags & FRAME_F_MAC) != authed &&
	    !(h->type == PEER_ERROR && !(h->flags & FRAME_F_MAC)))
		return *why = authed ? "frame without MAC" : "MAC before authentication", -EBADMSG;
	if (h->length > t->max_len)
		return *why = "message longer than its type allows", -EMSGSIZE;
	if (h->tail_length && h->type != PEER_CHUNK && h->type != PEER_SECTION)
		return *why = "tail on a frame that has none", -EBADMSG;
	if (h->tail_length > codec_payload_bound(PEER_MAX_CHUNK_PAGES))
		return *why = "chunk payload longer than allowed", -EMSGSIZE;
	if (h->type == PEER_SECTION && h->tail_length > PEER_MAX_SECTION_PIECE)
		return *why = "section piece longer than allowed", -EMSGSIZE;
	return 0;
}

/* protobuf-c allocates more than the bytes it decodes (4 bytes per packed
 * varint, a struct per empty sub-message): cap what one message may take. */
struct budget {
	ProtobufCAllocator a;
	size_t used, limit;
};

static void *budget_alloc(void *ud, size_t size)
{
	struct budget *b = ud;

	if (size > b->limit - b->used)
		return NULL;
	b->used += size;
	return malloc(size);
}

static void budget_free(void *ud, void *p)
{
	free(p);
}

static bool str_ok(const char *s, size_t max)
{
	return s && strnlen(s, max + 1) <= max;
}

static int check_hello(const Wpmig__Peer__Hello *m, const char **why)
{
	if (m->nonce.len != PEER_NONCE_SIZE)
		return *why = "hello: nonce must be 32 bytes", -EBADMSG;
	if (m->role != WPMIG__PEER__ROLE__ROLE_SOURCE && m->role != WPMIG__PEER__ROLE__ROLE_RECEIVER)
		return *why = "hello: unknown role", -EBADMSG;
	if (!m->min_version || m->min_version > m->max_version)
		return *why = "hello: bad version range", -EBADMSG;
	if (!str_ok(m->software, 64) || m->cache_slots > PEER_MAX_CACHE_SLOTS)
		return *why = "hello: field out of range", -EBADMSG;
	return 0;
}

static int check_chunk(const Wpmig__Peer__Chunk *m, const char **why)
{
	if (m->n_ext_skip != m->n_ext_pages || m->n_ext_skip != m->n_ext_kind ||
	    m->n_ext_skip > PEER_MAX_CHUNK_PAGES)
		return *why = "chunk: extent arrays disagree", -EBADMSG;
	if (m->data_pages > PEER_MAX_CHUNK_PAGES || m->n_page_sum != m->data_pages)
		return *why = "chunk: page sums do not match the data pages", -EBADMSG;
	if ((m->n_base_slot && m->n_base_slot != m->data_pages) ||
	    (m->n_store_slot && m->n_store_slot != m->data_pages))
		return *why = "chunk: slot arrays do not match the data pages", -EBADMSG;
	return 0;
}

static int check_zero(const Wpmig__Peer__Zero *m, const char **why)
{
	uint64_t prev = 0;

	if (m->n_start != m->n_end || m->n_start > PEER_MAX_ZERO_RANGES)
		return *why = "zero: range arrays disagree", -EBADMSG;
	for (size_t i = 0; i < m->n_start; i++) {
		if ((m->start[i] | m->end[i]) & (PAGE_SIZE_4K - 1) || m->start[i] >= m->end[i] ||
		    m->start[i] < prev)
			return *why = "zero: ranges must be page aligned and increasing", -EBADMSG;
		prev = m->end[i];
	}
	return 0;
}

static int check_regions(const Wpmig__Peer__RegionChanges *m, const char **why)
{
	if (m->n_added > PEER_MAX_REGIONS || m->n_removed > PEER_MAX_REGIONS ||
	    m->n_moved > PEER_MAX_REGIONS || m->n_regions > PEER_MAX_REGIONS)
		return *why = "regions: too many", -EBADMSG;
	for (size_t i = 0; i < m->n_added; i++) {
		const Wpmig__Peer__Region *r = m->added[i];

		if (!str_ok(r->path, PEER_MAX_PATH) || (r->start | r->end) & (PAGE_SIZE_4K - 1) ||
		    r->start >= r->end)
			return *why = "regions: bad region", -EBADMSG;
	}
	for (size_t i = 0; i < m->n_moved; i++)
		if ((m->moved[i]->from | m->moved[i]->to) & (PAGE_SIZE_4K - 1))
			return *why = "regions: bad move", -EBADMSG;
	return 0;
}

/* An Open of a migration: a bounded table of page-aligned backends. */
static int check_open(const Wpmig__Peer__Open *m, const char **why)
{
	const Wpmig__Peer__MigrateTarget *t = m->migrate;

	if (!str_ok(m->set, PEER_MAX_STRING))
		return *why = "string too long", -EBADMSG;
	if (!t)
		return 0;
	if (!str_ok(t->qmp, PEER_MAX_STRING) || !str_ok(t->uri, PEER_MAX_STRING) ||
	    t->n_backends > PEER_MAX_MIG_BACKENDS)
		return *why = "open: bad migration target", -EBADMSG;
	for (size_t i = 0; i < t->n_backends; i++) {
		const Wpmig__Peer__MigrateBackend *b = t->backends[i];

		if (!b->id || !b->id[0] || !str_ok(b->id, PEER_MAX_MIG_ID) || !b->size ||
		    ((b->start | b->size) & (PAGE_SIZE_4K - 1)) || b->start + b->size < b->start)
			return *why = "open: bad migration backend", -EBADMSG;
	}
	return 0;
}

/* A piece of a section: a known name and type, an offset within its length. */
static int check_section(const Wpmig__Peer__Section *m, const char **why)
{
	if (!section_name_valid(m->name) || !m->type)
		return *why = "section: bad name or type", -EBADMSG;
	if (m->length > SECTION_MAX_BYTES || m->offset > m->length)
		return *why = "section: length or offset out of range", -EBADMSG;
	return 0;
}

/* Strings of the small messages: bounded, so logs and replies stay small. */
static int check_strings(uint16_t type, const ProtobufCMessage *m, const char **why)
{
	const char *s = NULL;

	switch (type) {
	case PEER_OPEN: s = ((const Wpmig__Peer__Open *)m)->set; break;
	case PEER_OPEN_RESULT: s = ((const Wpmig__Peer__OpenResult *)m)->message; break;
	case PEER_COMMIT_RESULT: s = ((const Wpmig__Peer__CommitResult *)m)->message; break;
	case PEER_ABORT: s = ((const Wpmig__Peer__Abort *)m)->reason; break;
	case PEER_ERROR: s = ((const Wpmig__Peer__Error *)m)->message; break;
	case PEER_CLOSE: s = ((const Wpmig__Peer__Close *)m)->reason; break;
	default: return 0;
	}
	return str_ok(s, PEER_MAX_STRING) ? 0 : (*why = "string too long", -EBADMSG);
}

static int check_msg(uint16_t type, const ProtobufCMessage *m, const char **why)
{
	switch (type) {
	case PEER_HELLO:
		return check_hello((const Wpmig__Peer__Hello *)m, why);
	case PEER_AUTH:
		return ((const Wpmig__Peer__Auth *)m)->proof.len == PEER_PROOF_SIZE
			       ? 0 : (*why = "auth: proof must be 32 bytes", -EBADMSG);
	case PEER_CHUNK:
		return check_chunk((const Wpmig__Peer__Chunk *)m, why);
	case PEER_ZERO:
		return check_zero((const Wpmig__Peer__Zero *)m, why);
	case PEER_REGIONS:
		return check_regions((const Wpmig__Peer__RegionChanges *)m, why);
	case PEER_OPEN:
		return check_open((const Wpmig__Peer__Open *)m, why);
	case PEER_SECTION:
		return check_section((const Wpmig__Peer__Section *)m, why);
	default:
		return check_strings(type, m, why);
	}
}

int peer_msg_unpack(uint16_t type, const uint8_t *data, size_t len, ProtobufCMessage **ret,
		    const char **why)
{
	const struct type_info *t = info(type);
	struct budget b = { .a = { budget_alloc, budget_free, NULL } };
	ProtobufCMessage *m;
	int r;

	*ret = NULL;
	if (!t)
		return *why = "unknown frame type", -EPROTOTYPE;
	if (len > t->max_len)
		return *why = "message longer than its type allows", -EMSGSIZE;
	if (pb_strings_clean(t->desc, data, len, NULL) < 0)
		return *why = "cannot decode the message (or a string holds a NUL byte)", -EBADMSG;
	b.a.allocator_data = &b;
	b.limit = t->alloc_limit;
	m = protobuf_c_message_unpack(t->desc, &b.a, len, data);
	if (!m)
		return *why = "cannot decode the message", -EBADMSG;
	r = check_msg(type, m, why);
	if (r < 0) {
		protobuf_c_message_free_unpacked(m, NULL);
		return r;
	}
	*ret = m;
	return 0;
}

void peer_msg_free(ProtobufCMessage *m)
{
	if (m)
		protobuf_c_message_free_unpacked(m, NULL);
}

static int check_slots(const uint32_t *s, size_t n, uint32_t n_slots)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] > n_slots)
			return -EBADMSG;
	return 0;
}

/* Extents from skips: page numbers must stay below 2^52 (64-bit addresses). */
static int ext_addrs(const Wpmig__Peer__Chunk *m, struct ext *out)
{
	const uint64_t limit = 1ULL << 52;
	uint64_t end = 0;

	for (size_t i = 0; i < m->n_ext_skip; i++) {
		if (m->ext_skip[i] >= limit - end || m->ext_pages[i] >= limit - end - m->ext_skip[i])
			return -EBADMSG;
		out[i] = (struct ext){ (end + m->ext_skip[i]) * PAGE_SIZE_4K, m->ext_pages[i],
				       m->ext_kind[i] };
		end += m->ext_skip[i] + m->ext_pages[i];
	}
	return 0;
}

int peer_chunk_view(const Wpmig__Peer__Chunk *m, const uint8_t *tail, uint32_t tail_len,
		    uint32_t n_slots, struct enc_chunk *out, const char **why)
{
	if (check_chunk(m, why) < 0)
		return -EBADMSG;
	if (m->payload_len != tail_len)
		return *why = "chunk: payload length differs from the frame's tail", -EBADMSG;
	if (check_slots(m->base_slot, m->n_base_slot, n_slots) < 0 ||
	    check_slots(m->store_slot, m->n_store_slot, n_slots) < 0)
		return *why = "chunk: cache slot out of range", -EBADMSG;
	if (m->n_ext_skip * sizeof(struct ext) > out->ext_cap) {
		struct ext *e = realloc(out->ext, m->n_ext_skip * sizeof(*e));
		if (!e)
			return *why = "out of memory", -ENOMEM;
		out->ext = e;
		out->ext_cap = m->n_ext_skip * sizeof(*e); /* bytes, as codec.c keeps it */
	}
	if (ext_addrs(m, out->ext) < 0)
		return *why = "chunk: extents beyond the address space", -EBADMSG;
	out->seq = m->seq;
	out->n_ext = (uint32_t)m->n_ext_skip;
	out->n_data_pages = m->data_pages;
	out->page_sums = m->page_sum;
	out->payload = (uint8_t *)tail;
	out->payload_len = tail_len;
	out->encoding = m->encoding;
	out->payload_sum = m->payload_sum;
	if (codec_check(out) < 0)
		return *why = "chunk: extents or payload length inconsistent", -EBADMSG;
	return 0;
}

void peer_chunk_view_free(struct enc_chunk *v)
{
	free(v->ext);
	*v = (struct enc_chunk){ 0 };
}

struct frame_header peer_frame_header(uint16_t type, size_t len, uint32_t tail_len, bool mac)
{
	return (struct frame_header){
		.magic = FRAME_MAGIC, .version = WPMIG_PROTO_VERSION, .type = type,
		.flags = mac ? FRAME_F_MAC : 0, .length = (uint32_t)len, .tail_length = tail_len,
	};
}

int peer_frame_pack(uint16_t type, const ProtobufCMessage *m, uint32_t tail_len, bool mac,
		    uint8_t **ret, size_t *ret_len)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	struct frame_header h = peer_frame_header(type, len, tail_len, mac);
	uint8_t *buf;

	if (len > PEER_MAX_REGIONS_MSG)
		return -EMSGSIZE;
	buf = malloc(FRAME_HEADER_SIZE + len);
	if (!buf)
		return -ENOMEM;
	frame_header_encode(&h, buf);
	protobuf_c_message_pack(m, buf + FRAME_HEADER_SIZE);
	*ret = buf;
	*ret_len = FRAME_HEADER_SIZE + len;
	return 0;
}
