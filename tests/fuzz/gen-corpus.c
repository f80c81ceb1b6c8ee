// SPDX-License-Identifier: GPL-2.0-only
/*
 * Writes the seed corpus of the peer decoder's fuzz target: one file per
 * kind of frame a receiver meets, well formed, so the fuzzer starts past
 * the header checksum.  Regenerate with
 *   build/tests/fuzz-gen-corpus tests/fuzz/corpus-peer
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer/delta.h"
#include "peer/regions.h"
#include "peer/wire.h"

static void put(const char *dir, const char *name, uint16_t type, const ProtobufCMessage *m,
		const uint8_t *tail, uint32_t tail_len, bool mac)
{
	uint8_t *buf, hdr[FRAME_HEADER_SIZE];
	size_t len = protobuf_c_message_get_packed_size(m);
	struct frame_header h = { .magic = FRAME_MAGIC, .version = WPMIG_PROTO_VERSION,
				  .type = type, .flags = mac ? FRAME_F_MAC : 0,
				  .length = (uint32_t)len, .tail_length = tail_len };
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	buf = malloc(len + 1);
	protobuf_c_message_pack(m, buf);
	frame_header_encode(&h, hdr);
	fwrite(hdr, 1, sizeof(hdr), f);
	fwrite(buf, 1, len, f);
	if (tail_len)
		fwrite(tail, 1, tail_len, f);
	if (mac)
		fwrite("0123456789abcdef", 1, FRAME_MAC_SIZE, f);
	fclose(f);
	free(buf);
}

/* A chunk of 6 pages: zero, text, random, and two deltas against slots. */
static void chunk(const char *dir)
{
	struct pcache *pc = pcache_new(8, NULL);
	struct codec *c = codec_new(1);
	struct enc_chunk e = { 0 };
	struct delta_buf db = { 0 };
	struct delta_stats st;
	uint64_t addrs[6] = { 0x10000, 0x11000, 0x12000, 0x20000, 0x21000, 0x22000 };
	uint8_t *pages = calloc(6, 4096);
	Wpmig__Peer__Chunk m = WPMIG__PEER__CHUNK__INIT;
	uint64_t a[6];
	uint32_t p[6], k[6];

	for (int i = 0; i < 4096; i++) {
		pages[4096 + i] = (uint8_t)"seed text "[i % 10];
		pages[2 * 4096 + i] = (uint8_t)(i * 7919 >> 3);
		pages[3 * 4096 + i] = pages[4 * 4096 + i] = (uint8_t)(i & 0x0f);
	}
	delta_encode(c, pc, false, 1, addrs, 6, pages, &e, &db, &st);
	pcache_commit(pc);
	pages[3 * 4096 + 9] ^= 0x40; /* changed a little: deltas next time */
	delta_encode(c, pc, true, 2, addrs, 6, pages, &e, &db, &st);
	uint64_t end = 0;

	for (uint32_t i = 0; i < e.n_ext; i++) {
		a[i] = e.ext[i].addr / 4096 - end; /* pages skipped */
		end = e.ext[i].addr / 4096 + e.ext[i].pages;
		p[i] = e.ext[i].pages;
		k[i] = e.ext[i].kind;
	}
	m.seq = 2;
	m.n_ext_skip = m.n_ext_pages = m.n_ext_kind = e.n_ext;
	m.ext_skip = a, m.ext_pages = p, m.ext_kind = k;
	m.data_pages = e.n_data_pages, m.n_page_sum = e.n_data_pages, m.page_sum = e.page_sums;
	m.encoding = e.encoding, m.payload_len = e.payload_len, m.payload_sum = e.payload_sum;
	m.n_base_slot = m.n_store_slot = e.n_data_pages;
	m.base_slot = db.base, m.store_slot = db.store;
	put(dir, "chunk-delta", PEER_CHUNK, &m.base, e.payload, e.payload_len, true);
	m.n_base_slot = m.n_store_slot = 0;
	put(dir, "chunk-plain-noauth", PEER_CHUNK, &m.base, e.payload, e.payload_len, false);
	free(pages);
	enc_chunk_free(&e);
	delta_buf_free(&db);
	codec_free(c);
	pcache_free(pc);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	uint8_t nonce[32] = { 1, 2, 3 }, proof[32] = { 4, 5, 6 };
	uint64_t zs[2] = { 0x1000, 0x9000 }, ze[2] = { 0x3000, 0xa000 };
	struct pass_region old[1] = { { .start = 0x10000, .end = 0x20000, .path = (char *)"" } };
	struct pass_region nw[2] = {
		{ .start = 0x30000, .end = 0x40000, .path = (char *)"" },
		{ .start = 0x40000, .end = 0x48000, .path = (char *)"/lib/x.so", .prot = 3 },
	};
	Wpmig__Peer__Hello h = WPMIG__PEER__HELLO__INIT;
	Wpmig__Peer__Auth a = WPMIG__PEER__AUTH__INIT;
	Wpmig__Peer__Open o = WPMIG__PEER__OPEN__INIT;
	Wpmig__Peer__Zero z = WPMIG__PEER__ZERO__INIT;
	Wpmig__Peer__Commit cm = WPMIG__PEER__COMMIT__INIT;
	Wpmig__Peer__Error er = WPMIG__PEER__ERROR__INIT;
	Wpmig__Peer__Section sec = WPMIG__PEER__SECTION__INIT;
	static const uint8_t piece[] = "WPTHREAD seed section bytes";
	Wpmig__Peer__RegionChanges rc;

	h.role = WPMIG__PEER__ROLE__ROLE_SOURCE, h.min_version = h.max_version = PEER_PROTO_VERSION;
	h.nonce = (ProtobufCBinaryData){ 32, nonce }, h.software = (char *)"wpmigd", h.cache_slots = 8;
	put(dir, "hello", PEER_HELLO, &h.base, NULL, 0, false);
	a.proof = (ProtobufCBinaryData){ 32, proof };
	put(dir, "auth", PEER_AUTH, &a.base, NULL, 0, false);
	o.set = (char *)"seed", o.pid = 1, o.parent = 3, o.session = 77;
	put(dir, "open", PEER_OPEN, &o.base, NULL, 0, true);
	z.seq = 1, z.n_start = z.n_end = 2, z.start = zs, z.end = ze;
	put(dir, "zero", PEER_ZERO, &z.base, NULL, 0, true);
	regions_diff(old, 1, nw, 2, &rc);
	put(dir, "regions", PEER_REGIONS, &rc.base, NULL, 0, true);
	regions_changes_free(&rc);
	sec.name = (char *)"threads", sec.type = 1, sec.length = 2 * sizeof(piece);
	sec.offset = sizeof(piece), sec.sum = 0x1234;
	put(dir, "section", PEER_SECTION, &sec.base, piece, sizeof(piece), true);
	cm.chunks = 1, cm.section_frames = 2;
	put(dir, "commit", PEER_COMMIT, &cm.base, NULL, 0, true);
	er.error = -5, er.message = (char *)"seed error";
	put(dir, "error", PEER_ERROR, &er.base, NULL, 0, false);
	chunk(dir);
	return 0;
}
