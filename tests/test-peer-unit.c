// SPDX-License-Identifier: GPL-2.0-only
/*
 * The peer protocol's pieces without daemons: the delta cache mirrored by
 * both ends over many generations (commits and aborts, several passes,
 * chunks decoded in any order), corrupted payloads and bases, region
 * tables as changes, the wire decoder's rules, keys and MACs.
 *
 *   test-peer-unit [cache|corrupt|regions|wire|auth]
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "basic/util.h"
#include "peer/auth.h"
#include "peer/bufs.h"
#include "peer/delta.h"
#include "peer/regions.h"
#include "peer/wire.h"

#define PG PAGE_SIZE_4K
#define MEM_PAGES 256
#define SLOTS 64

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

struct mirror {
	struct pcache *pc;
	struct rcache *rc;
	struct codec *enc, *dec;
	struct delta_buf db;
	uint8_t *mem;    /* the source's memory */
	uint8_t *out;    /* decoded pages */
	uint64_t deltas, pages;
};

static void mirror_free(struct mirror *m)
{
	delta_buf_free(&m->db);
	pcache_free(m->pc);
	rcache_free(m->rc);
	codec_free(m->enc);
	codec_free(m->dec);
	free(m->mem);
	free(m->out);
}

/* One chunk of pages [first, first + n) of pass seq, through both ends. */
static void one_chunk(struct mirror *m, uint64_t seq, size_t first, size_t n, bool evict,
		      struct enc_chunk *e)
{
	uint64_t addrs[32];
	struct delta_stats st;
	int64_t bad;

	for (size_t i = 0; i < n; i++)
		addrs[i] = 0x100000 + (first + i) * PG;
	CHECK(delta_encode(m->enc, m->pc, evict, seq, addrs, n, m->mem + first * PG, e, &m->db,
			   &st) == 0, "encode");
	uint32_t *base = st.delta_pages ? m->db.base : NULL;
	uint32_t *store = st.stored_pages ? m->db.store : NULL;
	const char *why = NULL;
	CHECK(rcache_claim(m->rc, base, store, e->n_data_pages, &why) == 0, "claim: %s", why);
	CHECK(codec_check(e) == 0, "check");
	CHECK(delta_decode(m->dec, m->rc, e, base, store, m->out, &bad) == 0,
	      "decode failed at data page %lld", (long long)bad);
	/* every data page equals the source's */
	for (uint32_t x = 0, k = 0; x < e->n_ext; x++)
		for (uint32_t p = 0; p < e->ext[x].pages && e->ext[x].kind == EXT_DATA; p++, k++) {
			size_t idx = (e->ext[x].addr - 0x100000) / PG + p;
			CHECK(!memcmp(m->out + (size_t)k * PG, m->mem + idx * PG, PG), "page %zu", idx);
		}
	m->deltas += st.delta_pages;
	m->pages += st.data_pages;
}

static void change_pages(struct mirror *m, uint64_t *s, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		size_t pg = rnd(s) % MEM_PAGES;
		uint64_t v = rnd(s);

		if (v % 7 == 0)
			memset(m->mem + pg * PG, 0, PG); /* becomes zero */
		else
			memcpy(m->mem + pg * PG + (v % (PG / 8)) * 8, &v, 8); /* a word changes */
	}
}

static void test_cache(void)
{
	struct mirror m = { .pc = pcache_new(SLOTS, NULL), .rc = rcache_new(SLOTS),
			    .enc = codec_new(1), .dec = codec_new(1),
			    .mem = calloc(MEM_PAGES, PG), .out = malloc(32 * PG) };
	struct enc_chunk e = { 0 };
	uint64_t s = 0x1234567;

	for (size_t i = 0; i < MEM_PAGES * PG; i += 8)
		if ((i / PG) % 3)
			memcpy(m.mem + i, &(uint64_t){ rnd(&s) }, 8);
	for (int gen = 0; gen < 200; gen++) {
		bool evict = gen > 0 && rnd(&s) % 4;
		for (uint64_t seq = 1; seq <= 1 + rnd(&s) % 3; seq++) {
			size_t first = rnd(&s) % (MEM_PAGES - 40);
			size_t n = 1 + rnd(&s) % 32;
			one_chunk(&m, seq, first, n, evict, &e);
			one_chunk(&m, seq, first + n, 1 + rnd(&s) % 8, evict, &e);
			change_pages(&m, &s, 20);
		}
		if (rnd(&s) % 5 == 0) {
			pcache_abort(m.pc);
			rcache_abort(m.rc);
		} else {
			pcache_commit(m.pc);
			rcache_commit(m.rc);
		}
	}
	fprintf(stderr, "%llu data pages, %llu as deltas\n", (unsigned long long)m.pages,
		(unsigned long long)m.deltas);
	CHECK(m.deltas > m.pages / 10, "the cache hardly served: %llu of %llu",
	      (unsigned long long)m.deltas, (unsigned long long)m.pages);
	enc_chunk_free(&e);
	mirror_free(&m);
}

/* Pages planned into c for addresses first.. (n of them): how many got a slot
 * to be kept in, each below max_slot. */
static uint32_t plan_kept(struct pcache *c, uint64_t first, uint32_t n, bool evict,
			  uint32_t max_slot)
{
	uint64_t addrs[32];
	uint32_t base[32], store[32], kept = 0;

	for (uint32_t i = 0; i < n; i++)
		addrs[i] = (first + i) * PG;
	pcache_plan(c, 1, addrs, n, evict, base, store);
	for (uint32_t i = 0; i < n; i++) {
		CHECK(store[i] <= max_slot, "page %u kept in slot %u, beyond the %u touched",
		      i, store[i], max_slot);
		kept += store[i] != 0;
	}
	return kept;
}

/* Two links' caches share a budget of 10 slots: what one touched the other
 * cannot have until it is freed; a full cache recycles its own copies. */
static void test_budget(void)
{
	struct pcache_budget b = { 0 };
	uint32_t k;

	pcache_budget_set(&b, 10);
	struct pcache *x = pcache_new(16, &b), *y = pcache_new(16, &b);
	CHECK(x && y, "pcache_new");
	CHECK((k = pcache_room(x)) == 10, "room %u before anything, want 10", k);
	CHECK((k = plan_kept(x, 1, 16, false, 10)) == 10, "x kept %u of 16 pages, want 10", k);
	pcache_commit(x);
	CHECK((k = pcache_room(y)) == 0 && atomic_load(&b.free) == 0, "y has room for %u", k);
	CHECK((k = plan_kept(y, 100, 4, true, 0)) == 0, "y kept %u pages without budget", k);
	pcache_commit(y);
	CHECK((k = plan_kept(x, 200, 4, true, 10)) == 4, "x recycled %u of its copies, want 4", k);
	pcache_commit(x);
	CHECK(atomic_load(&b.free) == 0, "the budget moved: %lld", (long long)atomic_load(&b.free));
	pcache_free(x);
	CHECK(atomic_load(&b.free) == 10, "x freed: budget %lld, want 10",
	      (long long)atomic_load(&b.free));
	CHECK((k = plan_kept(y, 100, 4, false, 4)) == 4, "y kept %u of 4 once x is gone", k);
	pcache_commit(y);
	pcache_budget_set(&b, 2); /* a reload lowers it below what y holds */
	CHECK(atomic_load(&b.free) == -2 && pcache_room(y) == 4, "lowered: free %lld, room %u",
	      (long long)atomic_load(&b.free), pcache_room(y));
	CHECK((k = plan_kept(y, 300, 4, false, 4)) == 0, "y took %u new slots over budget", k);
	pcache_abort(y);
	CHECK(pcache_reset(y, 16) == 0 && atomic_load(&b.free) == 2, "reset: budget %lld, want 2",
	      (long long)atomic_load(&b.free));
	pcache_free(y);
}

/* Frame buffers: one put back is handed out again (its pages stay
 * mapped, written, readable); a pool freed with buffers still out lives
 * until the last of them comes back (libevent may release a sender's
 * frames after its link is gone). */
static void test_bufs(void)
{
	struct peer_bufs *b = peer_bufs_new(4u << 20);
	uint8_t *x, *y, *z;

	CHECK(b, "peer_bufs_new");
	x = peer_bufs_get(b, 1u << 20);
	y = peer_bufs_get(b, 1u << 20);
	CHECK(x && y && x != y, "two buffers: %p %p", (void *)x, (void *)y);
	if (!x || !y || x == y)
		return;
	memset(x, 0xa5, 1u << 20);
	peer_bufs_release(x);
	z = peer_bufs_get(b, (1u << 20) - 4096);
	CHECK(z == x, "a smaller frame got %p, not the free buffer %p", (void *)z, (void *)x);
	if (z != x)
		return;
	CHECK(z[0] == 0xa5 && z[(1u << 20) - 1] == 0xa5, "the reused buffer lost its pages");
	peer_bufs_put(b, z);
	peer_bufs_free(b); /* y still out */
	memset(y, 0x5a, 1u << 20);
	peer_bufs_release(y); /* unmaps y and frees the pool (ASan/valgrind: no leak) */
}

/* A flipped payload byte, and a base that differs on the receiver. */
static void test_corrupt(void)
{
	struct mirror m = { .pc = pcache_new(8, NULL), .rc = rcache_new(8), .enc = codec_new(1),
			    .dec = codec_new(1), .mem = calloc(4, PG), .out = malloc(4 * PG) };
	uint64_t addrs[4] = { 0x1000, 0x2000, 0x3000, 0x4000 };
	struct enc_chunk e = { 0 };
	struct delta_stats st;
	const char *why;
	int64_t bad;

	memset(m.mem, 'a', 4 * PG);
	delta_encode(m.enc, m.pc, false, 1, addrs, 4, m.mem, &e, &m.db, &st);
	rcache_claim(m.rc, NULL, m.db.store, 4, &why);
	e.payload[e.payload_len / 2] ^= 4;
	CHECK(delta_decode(m.dec, m.rc, &e, NULL, m.db.store, m.out, &bad) == -EBADMSG && bad < 0,
	      "a flipped payload byte was accepted");
	e.payload[e.payload_len / 2] ^= 4;
	CHECK(delta_decode(m.dec, m.rc, &e, NULL, m.db.store, m.out, &bad) == 0, "intact chunk");
	pcache_commit(m.pc);
	rcache_commit(m.rc);
	m.mem[2 * PG + 5] = 'b';
	delta_encode(m.enc, m.pc, true, 1, addrs, 4, m.mem, &e, &m.db, &st);
	CHECK(st.delta_pages == 4, "%u deltas", st.delta_pages);
	CHECK(rcache_claim(m.rc, m.db.base, m.db.store, 4, &why) == 0, "claim");
	rcache_page(m.rc, m.db.base[1] - 1)[7] ^= 1; /* the receiver's copy differs */
	CHECK(delta_decode(m.dec, m.rc, &e, m.db.base, m.db.store, m.out, &bad) == -EBADMSG &&
	      bad == 1, "a wrong base gave %lld", (long long)bad);
	/* a slot claimed twice, or used as base while written: refused */
	CHECK(rcache_claim(m.rc, NULL, m.db.store, 4, &why) == -EBADMSG, "slot written twice");
	enc_chunk_free(&e);
	mirror_free(&m);
}

static struct pass_region region(uint64_t start, uint64_t pages, const char *path, uint32_t flags)
{
	return (struct pass_region){ .start = start, .end = start + pages * PG, .prot = 3,
				     .kind = VMA_ANON, .flags = flags, .backing = -1,
				     .path = (char *)path };
}

static bool same_tables(const struct pass_region *a, size_t na, const struct pass_region *b,
			size_t nb)
{
	return na == nb && regions_table_sum(a, na) == regions_table_sum(b, nb);
}

/* old -> new as changes, through the wire, applied to old. */
static void round_trip(const struct pass_region *old, size_t n_old, const struct pass_region *nw,
		       size_t n_new, size_t want_moves)
{
	Wpmig__Peer__RegionChanges m;
	ProtobufCMessage *back = NULL;
	struct pass_region *got = NULL;
	size_t n_got = 0;
	const char *why = NULL;
	uint8_t *buf;

	CHECK(regions_diff(old, n_old, nw, n_new, &m) == 0, "diff");
	CHECK(m.n_moved == want_moves, "%zu moves, want %zu", m.n_moved, want_moves);
	buf = malloc(protobuf_c_message_get_packed_size(&m.base) + 1);
	size_t len = protobuf_c_message_pack(&m.base, buf);
	CHECK(peer_msg_unpack(PEER_REGIONS, buf, len, &back, &why) == 0, "unpack: %s", why);
	CHECK(back && regions_apply(old, n_old, (Wpmig__Peer__RegionChanges *)back, &got, &n_got,
				    &why) == 0, "apply: %s", why);
	CHECK(same_tables(got, n_got, nw, n_new), "the rebuilt table differs");
	/* applied to another parent, the same changes must not pass */
	regions_free(got, n_got);
	got = NULL;
	if (back && n_old > 1)
		CHECK(regions_apply(old + 1, n_old - 1, (Wpmig__Peer__RegionChanges *)back, &got,
				    &n_got, &why) == -EBADMSG, "applied to the wrong parent");
	regions_free(got, got ? n_got : 0);
	peer_msg_free(back);
	regions_changes_free(&m);
	free(buf);
}

static void test_regions(void)
{
	struct pass_region a[] = {
		region(0x10000, 4, "", 0), region(0x20000, 8, "/lib/x", 0),
		region(0x40000, 2, "[heap]", 1), region(0x80000, 16, "", 0),
	};
	struct pass_region b[] = { /* heap flags changed, 0x20000 moved, 0x80000 gone, new one */
		region(0x10000, 4, "", 0), region(0x40000, 2, "[heap]", 0),
		region(0x90000, 8, "/lib/x", 0), region(0xa0000, 1, "[stack]", 0),
	};

	round_trip(NULL, 0, a, 4, 0);
	round_trip(a, 4, a, 4, 0);
	round_trip(a, 4, b, 4, 1);
	round_trip(b, 4, a, 4, 1);
	round_trip(a, 4, NULL, 0, 0);
}

static void expect_bad(uint16_t type, const ProtobufCMessage *m, const char *what)
{
	uint8_t buf[8192];
	size_t len = protobuf_c_message_pack(m, buf);
	ProtobufCMessage *out = NULL;
	const char *why = NULL;

	CHECK(peer_msg_unpack(type, buf, len, &out, &why) < 0, "%s accepted", what);
	peer_msg_free(out);
}

static void test_wire(void)
{
	Wpmig__Peer__Hello h = WPMIG__PEER__HELLO__INIT;
	Wpmig__Peer__Chunk c = WPMIG__PEER__CHUNK__INIT;
	Wpmig__Peer__Zero z = WPMIG__PEER__ZERO__INIT;
	uint8_t nonce[31] = { 0 }, tail[16] = { 0 };
	uint64_t a[2] = { 0x1000, 0x3000 }, e[2] = { 0x2001, 0x4000 }, sk[2] = { 1, 1 }, sum = 0;
	uint32_t p[2] = { 1, 1 }, k[2] = { 0, 0 }, slot[2] = { 5, 0 };
	struct frame_header fh = { .type = PEER_HELLO };
	struct enc_chunk v = { 0 };
	const char *why = NULL;

	h.role = WPMIG__PEER__ROLE__ROLE_SOURCE;
	h.min_version = h.max_version = 1;
	h.nonce = (ProtobufCBinaryData){ sizeof(nonce), nonce };
	expect_bad(PEER_HELLO, &h.base, "a 31-byte nonce");
	c.n_ext_skip = 2, c.ext_skip = sk, c.n_ext_pages = 1, c.ext_pages = p;
	c.n_ext_kind = 2, c.ext_kind = k;
	expect_bad(PEER_CHUNK, &c.base, "extent arrays of different lengths");
	c.n_ext_pages = 2, c.data_pages = 2, c.n_page_sum = 1, c.page_sum = &sum;
	expect_bad(PEER_CHUNK, &c.base, "one sum for two pages");
	z.n_start = z.n_end = 2, z.start = a, z.end = e;
	expect_bad(PEER_ZERO, &z.base, "an unaligned zero range");
	/* a chunk whose tail is not what it says, and a slot past the cache */
	c.data_pages = 1, c.n_ext_skip = c.n_ext_pages = c.n_ext_kind = 1, c.payload_len = 16;
	c.encoding = ENC_ZSTD, c.n_base_slot = 1, c.base_slot = slot;
	CHECK(peer_chunk_view(&c, tail, 8, 8, &v, &why) == -EBADMSG, "short tail accepted");
	CHECK(peer_chunk_view(&c, tail, 16, 4, &v, &why) == -EBADMSG && strstr(why, "slot"),
	      "slot 5 of 4 accepted (%s)", why);
	CHECK(peer_chunk_view(&c, tail, 16, 8, &v, &why) == 0, "a good chunk: %s", why);
	peer_chunk_view_free(&v);
	/* frame headers: the MAC flag, tails, lengths, types */
	fh.flags = FRAME_F_MAC;
	CHECK(peer_frame_check(&fh, false, &why) == -EBADMSG, "a MAC before the handshake");
	fh.flags = 0, fh.type = PEER_OPEN;
	CHECK(peer_frame_check(&fh, false, &why) == -EACCES, "open before the handshake");
	CHECK(peer_frame_check(&fh, true, &why) == -EBADMSG, "a frame without MAC after it");
	fh.flags = FRAME_F_MAC, fh.tail_length = 1;
	CHECK(peer_frame_check(&fh, true, &why) == -EBADMSG, "a tail on an open frame");
	fh.type = PEER_CHUNK, fh.length = PEER_MAX_CHUNK_MSG + 1, fh.tail_length = 0;
	CHECK(peer_frame_check(&fh, true, &why) == -EMSGSIZE, "a long chunk message");
	fh.type = 0x1ff, fh.length = 0;
	CHECK(peer_frame_check(&fh, true, &why) == -EPROTOTYPE, "an unknown type");
	fh.type = PEER_ERROR, fh.flags = 0;
	CHECK(peer_frame_check(&fh, true, &why) == 0, "an error without MAC after the handshake");
}

static void test_auth(void)
{
	char dir[] = "/tmp/wpmig-unit.XXXXXX", path[64], why[256];
	uint8_t t[32] = { 1 }, t2[32] = { 2 }, proof[32], tag[16], data[100] = { 7 };
	struct peer_key k;
	struct peer_mac tx, rx;
	struct iovec iov = { data, sizeof(data) };
	FILE *f;

	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	snprintf(path, sizeof(path), "%s/key", dir);
	f = fopen(path, "w");
	fputs("0123456789abcdef0123\n", f);
	fclose(f);
	chmod(path, 0644);
	CHECK(peer_key_load(path, &k, why, sizeof(why)) == -EPERM, "a readable key taken");
	chmod(path, 0600);
	CHECK(peer_key_load(path, &k, why, sizeof(why)) == 0 && k.len == 20, "key: %s", why);
	peer_proof(&k, PEER_LABEL_SOURCE, t, proof);
	CHECK(peer_proof_ok(&k, PEER_LABEL_SOURCE, t, proof, 32), "proof");
	CHECK(!peer_proof_ok(&k, PEER_LABEL_RECEIVER, t, proof, 32), "proof valid for both roles");
	CHECK(!peer_proof_ok(&k, PEER_LABEL_SOURCE, t2, proof, 32), "proof valid for two transcripts");
	peer_mac_init(&tx, &k, PEER_LABEL_SOURCE, t);
	peer_mac_init(&rx, &k, PEER_LABEL_SOURCE, t);
	peer_mac_seal(&tx, &iov, 1, tag);
	CHECK(peer_mac_verify(&rx, &iov, 1, tag) == 0, "MAC");
	CHECK(peer_mac_verify(&rx, &iov, 1, tag) == -EBADMSG, "a replayed frame passed");
	peer_mac_seal(&tx, &iov, 1, tag);
	data[50] ^= 1;
	CHECK(peer_mac_verify(&rx, &iov, 1, tag) == -EBADMSG, "a changed frame passed");
	peer_mac_free(&tx);
	peer_mac_free(&rx);
	peer_key_free(&k);
	unlink(path);
	rmdir(dir);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} tests[] = {
		{ "cache", test_cache }, { "corrupt", test_corrupt }, { "regions", test_regions },
		{ "wire", test_wire }, { "auth", test_auth }, { "budget", test_budget },
		{ "bufs", test_bufs },
	};
	const char *only = argc > 1 ? argv[1] : NULL;

	for (size_t i = 0; i < ARRAY_SIZE(tests); i++) {
		if (only && strcmp(only, tests[i].name))
			continue;
		fprintf(stderr, "== %s\n", tests[i].name);
		tests[i].fn();
	}
	return test_failures ? 1 : 0;
}
