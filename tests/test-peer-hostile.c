// SPDX-License-Identifier: GPL-2.0-only
/*
 * Hostile input to the peer port of a real receiving daemon: oversized
 * lengths, garbage, a wrong magic, version or type, frames before the
 * handshake, a wrong key, a replayed handshake, and (with the key) frames
 * that break the protocol, a forged MAC and a message that would unpack
 * into far more memory than it takes on the wire.  Each is answered with
 * an Error frame naming the problem and the connection is closed; the
 * daemon's memory stays put, and afterwards it still takes a checkpoint
 * from a real source.
 *
 *   test-peer-hostile
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <xxhash.h>

#include "peer-harness.h"
#include "basic/util.h"
#include "peer/auth.h"
#include "peer/io.h"

struct raw {
	int fd;
	struct evbuffer *in; /* what came and was not taken yet */
	struct peer_rx rx;
	struct peer_mac tx;
	bool authed;
	char error[256]; /* the daemon's Error, when handshake() got one */
};

/* Connect from a loopback address of our choice (0: any). */
static int raw_open_from(int port, uint32_t from, struct raw *c)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(0x7f000001) };
	struct sockaddr_in me = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(from) };

	*c = (struct raw){ .fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0),
			   .in = evbuffer_new() };
	if (c->fd < 0 || (from && bind(c->fd, (struct sockaddr *)&me, sizeof(me)) < 0) ||
	    connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	return 0;
}

static int raw_open(int port, struct raw *c)
{
	return raw_open_from(port, 0, c);
}

static void raw_close(struct raw *c)
{
	close(c->fd);
	evbuffer_free(c->in);
	peer_mac_free(&c->rx.mac);
	peer_mac_free(&c->tx);
}

static void send_bytes(struct raw *c, const void *p, size_t n)
{
	if (write(c->fd, p, n) != (ssize_t)n)
		fprintf(stderr, "short write (the daemon may have closed already)\n");
}

static void send_header(struct raw *c, uint32_t magic, uint16_t version, uint16_t type,
			uint32_t length, uint32_t tail)
{
	struct frame_header h = { .magic = magic, .version = version, .type = type,
				  .length = length, .tail_length = tail };
	uint8_t b[FRAME_HEADER_SIZE];

	frame_header_encode(&h, b);
	send_bytes(c, b, sizeof(b));
}

static void send_msg(struct raw *c, uint16_t type, const ProtobufCMessage *m, const void *tail,
		     uint32_t tail_len)
{
	uint8_t *buf;
	size_t len;

	if (peer_frame_build(type, m, tail, tail_len, c->authed, &buf, &len) < 0)
		return;
	if (c->authed)
		peer_frame_seal(&c->tx, buf, len);
	send_bytes(c, buf, len);
	free(buf);
}

/* Read one frame within ms: 1, or 0 when the daemon closed, <0 on error. */
static int read_frame(struct raw *c, struct peer_frame *f, int ms)
{
	struct evbuffer *in = c->in;
	const char *why = NULL;
	int r = 0;

	for (;;) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		uint8_t b[65536];
		ssize_t n;

		r = peer_rx_take(&c->rx, in, f, &why);
		if (r != 0)
			break;
		if (poll(&p, 1, ms) <= 0) {
			r = -ETIMEDOUT;
			break;
		}
		n = read(c->fd, b, sizeof(b));
		if (n <= 0) {
			r = 0;
			break;
		}
		evbuffer_add(in, b, (size_t)n);
	}
	if (r < 0 && why)
		fprintf(stderr, "bad frame from the daemon: %s\n", why);
	return r;
}

/* The daemon answers with an Error (containing want) and closes. */
static void expect_error(struct raw *c, int error, const char *want, const char *what)
{
	struct peer_frame f;
	int r;

	while ((r = read_frame(c, &f, 5000)) > 0 && f.h.type != PEER_ERROR)
		peer_frame_clear(&f);
	CHECK(r > 0, "%s: no error frame (%d)", what, r);
	if (r > 0) {
		const Wpmig__Peer__Error *e = (const Wpmig__Peer__Error *)f.m;
		CHECK(e->error == error && strstr(e->message, want), "%s: error %d \"%s\"", what,
		      e->error, e->message);
		fprintf(stderr, "%s: %d %s\n", what, e->error, e->message);
		peer_frame_clear(&f);
		CHECK(read_frame(c, &f, 5000) == 0, "%s: not closed after the error", what);
	}
	raw_close(c);
}

static void send_hello(struct raw *c, uint8_t **hello, size_t *len)
{
	Wpmig__Peer__Hello h = WPMIG__PEER__HELLO__INIT;
	uint8_t nonce[PEER_NONCE_SIZE];

	getrandom(nonce, sizeof(nonce), 0);
	h.role = WPMIG__PEER__ROLE__ROLE_SOURCE;
	h.min_version = h.max_version = PEER_PROTO_VERSION;
	h.nonce = (ProtobufCBinaryData){ sizeof(nonce), nonce };
	h.cache_slots = 16;
	*len = protobuf_c_message_get_packed_size(&h.base);
	*hello = malloc(*len);
	protobuf_c_message_pack(&h.base, *hello);
	send_msg(c, PEER_HELLO, &h.base, NULL, 0);
}

/* Handshake as a source: with key, or with a wrong proof when key is NULL. */
static int handshake(struct raw *c, const struct peer_key *key)
{
	Wpmig__Peer__Auth a = WPMIG__PEER__AUTH__INIT;
	uint8_t t[PEER_HASH_SIZE], proof[PEER_HASH_SIZE], *hello;
	struct peer_frame f, g;
	size_t hl;

	send_hello(c, &hello, &hl);
	if (read_frame(c, &f, 5000) <= 0 || f.h.type != PEER_HELLO)
		return -EPROTO;
	peer_transcript(hello, hl, f.msg, f.h.length, t);
	free(hello);
	peer_frame_clear(&f);
	if (read_frame(c, &g, 5000) <= 0 || g.h.type != PEER_AUTH)
		return -EPROTO;
	peer_frame_clear(&g);
	if (key)
		peer_proof(key, PEER_LABEL_SOURCE, t, proof);
	else
		getrandom(proof, sizeof(proof), 0);
	a.proof = (ProtobufCBinaryData){ sizeof(proof), proof };
	send_msg(c, PEER_AUTH, &a.base, NULL, 0);
	if (!key)
		return 0;
	peer_mac_init(&c->rx.mac, key, PEER_LABEL_RECEIVER, t);
	peer_mac_init(&c->tx, key, PEER_LABEL_SOURCE, t);
	c->rx.authed = c->authed = true;
	if (read_frame(c, &f, 5000) <= 0)
		return -EACCES;
	int r = f.h.type == PEER_READY ? 0 : -EACCES;
	if (f.h.type == PEER_ERROR) {
		r = ((const Wpmig__Peer__Error *)f.m)->error;
		snprintf(c->error, sizeof(c->error), "%s", ((const Wpmig__Peer__Error *)f.m)->message);
	}
	peer_frame_clear(&f);
	return r;
}

struct target {
	struct pd rx;
	int port;
	struct peer_key key;
	char key_path[192];
	char qmp_dir[64];    /* the receiver's incoming_qmp_dir */
	char qmp_path[96];   /* a socket there, ours: does the daemon connect? */
	int qmp_fd;
};

/* incoming_qmp_dir with a listening socket in it, standing in for QEMU. */
static int qmp_trap_make(struct target *t)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(t->qmp_dir, sizeof(t->qmp_dir), "/tmp/wpmig-hostile-qmp.XXXXXX");
	if (!mkdtemp(t->qmp_dir))
		return -errno;
	snprintf(t->qmp_path, sizeof(t->qmp_path), "%s/qmp.sock", t->qmp_dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", t->qmp_path);
	t->qmp_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (t->qmp_fd < 0 || bind(t->qmp_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(t->qmp_fd, 8) < 0)
		return -errno;
	return 0;
}

static void qmp_trap_remove(struct target *t)
{
	close(t->qmp_fd);
	unlink(t->qmp_path);
	rmdir(t->qmp_dir);
}

/* A connection to the trap within ms (accepted and closed at once). */
static bool qmp_trap_hit(struct target *t, int ms)
{
	struct pollfd p = { .fd = t->qmp_fd, .events = POLLIN };
	int fd;

	if (poll(&p, 1, ms) <= 0)
		return false;
	fd = accept4(t->qmp_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static void send_migrate_open(struct raw *c, struct target *t, const char *set)
{
	Wpmig__Peer__Open o = WPMIG__PEER__OPEN__INIT;
	Wpmig__Peer__MigrateTarget mt = WPMIG__PEER__MIGRATE_TARGET__INIT;
	Wpmig__Peer__MigrateBackend b = WPMIG__PEER__MIGRATE_BACKEND__INIT, *bp = &b;

	b.id = (char *)"ram0";
	b.start = 0x7f0000000000;
	b.size = 1 << 20;
	mt.qmp = t->qmp_path;
	mt.uri = (char *)"tcp:127.0.0.1:1";
	mt.n_backends = 1;
	mt.backends = &bp;
	o.set = (char *)set;
	o.full = true;
	o.session = 42;
	o.migrate = &mt;
	send_msg(c, PEER_OPEN, &o.base, NULL, 0);
}

/* A migration's Open names a QMP socket the receiver connects to: only
 * after the handshake.  Before it: refused, the socket never reached;
 * after it (the control): the receiver connects, and says why it failed. */
static void migrate_open(struct target *t)
{
	struct peer_frame f;
	struct raw c;

	raw_open(t->port, &c);
	send_migrate_open(&c, t, "mig");
	expect_error(&c, -EACCES, "before authentication", "migration open before the handshake");
	CHECK(!qmp_trap_hit(t, 500), "the receiver connected to the QMP socket of an "
	      "unauthenticated open");

	raw_open(t->port, &c);
	CHECK(handshake(&c, &t->key) == 0, "handshake with the key");
	send_migrate_open(&c, t, "-bad\nname");
	while (read_frame(&c, &f, 5000) > 0 && f.h.type == PEER_ACK)
		peer_frame_clear(&f);
	CHECK(f.m && f.h.type == PEER_OPEN_RESULT &&
	      ((const Wpmig__Peer__OpenResult *)f.m)->error == -EINVAL,
	      "a migration open with a bad set name was not refused");
	if (f.m)
		peer_frame_clear(&f);
	CHECK(!qmp_trap_hit(t, 500), "the receiver connected for a bad set name");
	send_migrate_open(&c, t, "mig");
	CHECK(qmp_trap_hit(t, 10000), "authenticated: the receiver did not connect to the QMP "
	      "socket (the control of the case above)");
	while (read_frame(&c, &f, 15000) > 0 && f.h.type == PEER_ACK)
		peer_frame_clear(&f);
	CHECK(f.m && f.h.type == PEER_OPEN_RESULT, "authenticated migration open: no result");
	if (f.m && f.h.type == PEER_OPEN_RESULT) {
		const Wpmig__Peer__OpenResult *res = (const Wpmig__Peer__OpenResult *)f.m;

		fprintf(stderr, "authenticated migration open, QMP closed at once: %d %s\n",
			res->error, res->message);
		CHECK(res->error < 0 && strstr(res->message, t->qmp_path), "open result %d %s",
		      res->error, res->message);
		peer_frame_clear(&f);
	}
	raw_close(&c);
}

/* Before the handshake: framing and type errors. */
static void unauthenticated(struct target *t)
{
	struct raw c;
	uint8_t junk[4096];
	Wpmig__Peer__Open open = WPMIG__PEER__OPEN__INIT;

	raw_open(t->port, &c);
	send_header(&c, FRAME_MAGIC, WPMIG_PROTO_VERSION, PEER_HELLO, 0x7fffffff, 0);
	expect_error(&c, -EMSGSIZE, "longer than", "oversized length");
	raw_open(t->port, &c);
	send_header(&c, FRAME_MAGIC, WPMIG_PROTO_VERSION, PEER_CHUNK, 100, 0xfffffff0);
	expect_error(&c, -EACCES, "before authentication", "oversized tail before auth");
	raw_open(t->port, &c);
	getrandom(junk, sizeof(junk), 0);
	send_bytes(&c, junk, sizeof(junk));
	expect_error(&c, -EBADMSG, "bad magic", "garbage");
	raw_open(t->port, &c);
	send_header(&c, 0x12345678, WPMIG_PROTO_VERSION, PEER_HELLO, 10, 0);
	expect_error(&c, -EBADMSG, "bad magic", "wrong magic");
	raw_open(t->port, &c);
	send_header(&c, FRAME_MAGIC, 9, PEER_HELLO, 10, 0);
	expect_error(&c, -EPROTONOSUPPORT, "version", "wrong version");
	raw_open(t->port, &c);
	send_header(&c, FRAME_MAGIC, WPMIG_PROTO_VERSION, 0x1ff, 0, 0);
	expect_error(&c, -EPROTOTYPE, "type", "unknown type");
	raw_open(t->port, &c);
	send_header(&c, FRAME_MAGIC, WPMIG_PROTO_VERSION, FRAME_CTL_REQUEST, 0, 0);
	expect_error(&c, -EPROTOTYPE, "type", "a control frame");
	raw_open(t->port, &c);
	open.set = (char *)"s";
	send_msg(&c, PEER_OPEN, &open.base, NULL, 0);
	expect_error(&c, -EACCES, "before authentication", "open before the handshake");
	raw_open(t->port, &c);
	CHECK(handshake(&c, NULL) == 0, "handshake with a wrong proof");
	expect_error(&c, -EACCES, "authentication failed", "wrong key");
}

/* Frames a real source sent, played again on a new connection. */
static void replay(struct target *t, const char *recording)
{
	char *text = NULL;
	size_t len = 0;
	struct raw c;

	CHECK(read_full_file(recording, &text, &len) == 0 && len > 100, "no recording");
	if (!text)
		return;
	raw_open(t->port, &c);
	send_bytes(&c, text, len);
	expect_error(&c, -EACCES, "authentication failed", "replayed handshake");
	free(text);
}

static void open_generation(struct raw *c, const char *set)
{
	Wpmig__Peer__Open o = WPMIG__PEER__OPEN__INIT;
	struct peer_frame f;

	o.set = (char *)set;
	o.full = true;
	send_msg(c, PEER_OPEN, &o.base, NULL, 0);
	while (read_frame(c, &f, 5000) > 0 && f.h.type == PEER_ACK)
		peer_frame_clear(&f); /* acknowledgements of what came before */
	CHECK(f.m && f.h.type == PEER_OPEN_RESULT, "no open result");
	if (!f.m || f.h.type != PEER_OPEN_RESULT)
		return;
	if (f.m && set[0] != '.')
		CHECK(((Wpmig__Peer__OpenResult *)f.m)->error == 0, "open refused: %s",
		      ((Wpmig__Peer__OpenResult *)f.m)->message);
	if (f.m && set[0] == '.')
		CHECK(((Wpmig__Peer__OpenResult *)f.m)->error == -EINVAL, "a bad set name opened");
	peer_frame_clear(&f);
}

/* peer_verify = pages from now on (a reload). */
static void set_verify_pages(struct pd *rx)
{
	FILE *f = fopen(rx->d.conf, "ae");

	CHECK(f && fputs("peer_verify = pages\n", f) >= 0 && fclose(f) == 0, "config");
	kill(rx->d.pid, SIGHUP);
	CHECK(wpmigd_wait_log(&rx->d, "Reloaded", 3000), "no reload");
}

/* With the key: what an authenticated but broken (or forging) peer sends. */
static void authenticated(struct target *t)
{
	Wpmig__Peer__Chunk ch = WPMIG__PEER__CHUNK__INIT;
	uint64_t skip = 0x10, sum = 0; /* the page at 0x10000 */
	uint32_t pages = 1, kind = 0, slot = 99999;
	static uint8_t page[4096];
	struct raw c;

	ch.n_ext_skip = ch.n_ext_pages = ch.n_ext_kind = 1;
	ch.ext_skip = &skip;
	ch.ext_pages = &pages;
	ch.ext_kind = &kind;
	ch.data_pages = 1;
	ch.n_page_sum = 1;
	ch.page_sum = &sum;
	ch.payload_len = sizeof(page);
	raw_open(t->port, &c);
	CHECK(handshake(&c, &t->key) == 0, "handshake with the key");
	send_msg(&c, PEER_CHUNK, &ch.base, page, sizeof(page));
	expect_error(&c, -EPROTO, "no generation is open", "chunk without open");

	raw_open(t->port, &c);
	CHECK(handshake(&c, &t->key) == 0, "handshake with the key");
	open_generation(&c, ".bad");
	open_generation(&c, "hostile");
	ch.n_base_slot = 1;
	ch.base_slot = &slot;
	send_msg(&c, PEER_CHUNK, &ch.base, page, sizeof(page));
	expect_error(&c, -EBADMSG, "cache slot", "slot out of range");

	/* Under the default peer_verify = payload the first chunk of a
	 * generation is still decoded on arrival. */
	raw_open(t->port, &c);
	CHECK(handshake(&c, &t->key) == 0, "handshake with the key");
	open_generation(&c, "hostile");
	ch.n_base_slot = 0;
	ch.payload_sum = XXH3_64bits(page, sizeof(page)); /* the payload is intact, */
	send_msg(&c, PEER_CHUNK, &ch.base, page, sizeof(page)); /* its page sum is not */
	expect_error(&c, -EBADMSG, "page 0x10000 (pass 0) failed its checksum", "corrupt page");

	/* Under peer_verify = pages every chunk is: a good one, then a bad one. */
	set_verify_pages(&t->rx);
	raw_open(t->port, &c);
	CHECK(handshake(&c, &t->key) == 0, "handshake with the key");
	open_generation(&c, "hostile");
	sum = XXH3_64bits(page, sizeof(page));
	send_msg(&c, PEER_CHUNK, &ch.base, page, sizeof(page));
	sum = 0;
	skip = 0x11;
	send_msg(&c, PEER_CHUNK, &ch.base, page, sizeof(page));
	expect_error(&c, -EBADMSG, "page 0x11000 (pass 0) failed its checksum",
		     "corrupt page in a later chunk");

	raw_open(t->port, &c);
	CHECK(handshake(&c, &t->key) == 0, "handshake with the key");
	c.tx.counter += 5; /* as if frames were dropped: every tag is wrong */
	Wpmig__Peer__Open o = WPMIG__PEER__OPEN__INIT;
	o.set = (char *)"hostile";
	send_msg(&c, PEER_OPEN, &o.base, NULL, 0);
	expect_error(&c, -EBADMSG, "MAC mismatch", "forged MAC");
}

/* A section frame of the open generation: name, offset, length, sum, piece. */
static void send_section(struct raw *c, const char *name, uint64_t off, uint64_t len,
			 uint64_t sum, const void *piece, uint32_t piece_len)
{
	Wpmig__Peer__Section m = WPMIG__PEER__SECTION__INIT;

	m.name = (char *)name;
	m.type = 1;
	m.length = len;
	m.offset = off;
	m.sum = sum;
	send_msg(c, PEER_SECTION, &m.base, piece, piece_len);
}

static void open_hostile(struct target *t, struct raw *c)
{
	raw_open(t->port, c);
	CHECK(handshake(c, &t->key) == 0, "handshake with the key");
	open_generation(c, "hostile");
}

/* Sections that break the rules: each ends the connection, nothing stored. */
static void sections(struct target *t)
{
	static uint8_t bytes[1000];
	uint64_t sum = XXH3_64bits(bytes, sizeof(bytes));
	struct raw c;

	open_hostile(t, &c);
	send_section(&c, "Bad/name", 0, 10, 0, bytes, 10);
	expect_error(&c, -EBADMSG, "section: bad name", "section name");
	open_hostile(t, &c);
	send_section(&c, "s", 500, 1000, sum, bytes, 500);
	expect_error(&c, -EPROTO, "begin at offset 0", "section from its middle");
	open_hostile(t, &c);
	send_section(&c, "s", 0, 1000, sum, bytes, 600);
	send_section(&c, "s", 400, 1000, sum, bytes + 400, 600);
	expect_error(&c, -EPROTO, "out of order", "section pieces overlapping");
	open_hostile(t, &c);
	send_section(&c, "s", 0, 1000, sum, bytes, 600);
	send_section(&c, "s", 600, 1000, sum, bytes, 600);
	expect_error(&c, -EPROTO, "longer than announced", "section too long");
	open_hostile(t, &c);
	send_section(&c, "s", 0, 10, sum, bytes, 10);
	send_section(&c, "s", 0, 10, XXH3_64bits(bytes, 10), bytes, 10);
	expect_error(&c, -EBADMSG, "section s failed its checksum", "section checksum");
	open_hostile(t, &c);
	send_section(&c, "s", 0, 10, XXH3_64bits(bytes, 10), bytes, 10);
	send_section(&c, "s", 0, 10, XXH3_64bits(bytes, 10), bytes, 10);
	expect_error(&c, -EPROTO, "name twice", "section twice");
	open_hostile(t, &c);
	send_section(&c, "s", 0, 1000, sum, bytes, 10);
	Wpmig__Peer__RegionChanges rch = WPMIG__PEER__REGION_CHANGES__INIT;
	Wpmig__Peer__Commit cm = WPMIG__PEER__COMMIT__INIT;
	send_msg(&c, PEER_REGIONS, &rch.base, NULL, 0);
	cm.section_frames = 1;
	send_msg(&c, PEER_COMMIT, &cm.base, NULL, 0);
	expect_error(&c, -EPROTO, "section s incomplete", "commit mid-section");
	uint64_t gens[4];
	CHECK(pd_generations(&t->rx, "hostile", gens, 4) <= 0, "a hostile generation was stored");
}

/* A region table of empty entries: 2 bytes each on the wire, a struct and
 * a pointer each once unpacked.  The decoder's budget refuses it. */
static void amplification(struct target *t)
{
	size_t n = (8u << 20) / 2 - 64;
	uint8_t *msg = malloc(n * 2);
	struct frame_header h = { .magic = FRAME_MAGIC, .version = WPMIG_PROTO_VERSION,
				  .type = PEER_REGIONS, .flags = FRAME_F_MAC,
				  .length = (uint32_t)(n * 2) };
	uint8_t hdr[FRAME_HEADER_SIZE], tag[16];
	long before = pd_hwm(&t->rx), peak;
	struct raw c;

	for (size_t i = 0; i < n; i++) {
		msg[2 * i] = 0x1a; /* field 3 (added), length-delimited */
		msg[2 * i + 1] = 0;
	}
	frame_header_encode(&h, hdr);
	raw_open(t->port, &c);
	CHECK(handshake(&c, &t->key) == 0, "handshake with the key");
	open_generation(&c, "amplify");
	struct iovec iov[] = { { hdr, sizeof(hdr) }, { msg, n * 2 } };
	peer_mac_seal(&c.tx, iov, 2, tag);
	send_bytes(&c, hdr, sizeof(hdr));
	send_bytes(&c, msg, n * 2);
	send_bytes(&c, tag, sizeof(tag));
	expect_error(&c, -EBADMSG, "cannot decode", "amplifying message");
	peak = pd_hwm(&t->rx);
	fprintf(stderr, "receiver peak RSS %ld KiB before, %ld KiB after\n", before, peak);
	CHECK(peak - before < 48 * 1024, "the receiver's peak grew by %ld KiB", peak - before);
	free(msg);
}

/* Did the daemon answer c with an Error within ms?  Its error, or 0. */
static int error_within(struct raw *c, int ms, char *msg, size_t len)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	struct peer_frame f;
	int error = 0;

	if (poll(&p, 1, ms) == 1 && read_frame(c, &f, 100) > 0) {
		if (f.h.type == PEER_ERROR) {
			error = ((const Wpmig__Peer__Error *)f.m)->error;
			snprintf(msg, len, "%s", ((const Wpmig__Peer__Error *)f.m)->message);
		}
		peer_frame_clear(&f);
	}
	return error;
}

/*
 * Connections without the key cannot crowd out a source that has it: 12
 * idle ones from one address (4 may wait in the handshake, the rest are
 * refused at once), then 70 from as many addresses (the oldest make room):
 * a real source streams meanwhile at the first attempt, and the idle ones
 * end at the handshake deadline (peer_timeout = 3 s here).
 */
static void idle_flood(struct target *t, struct pd *tx, pid_t pid, const char *listen)
{
	enum { ONE = 12, MANY = 70 };
	struct raw c[ONE], m[MANY];
	int refused = 0, evicted = 0, timed_out = 0;
	struct ckres r;
	char msg[256];

	for (int i = 0; i < ONE; i++)
		CHECK(raw_open_from(t->port, 0x7f000002, &c[i]) == 0, "connect %d", i);
	for (int i = 0; i < ONE; i++)
		if (error_within(&c[i], i < 4 ? 50 : 1000, msg, sizeof(msg)) == -EUSERS &&
		    strstr(msg, "too many connections from this address"))
			refused++;
	CHECK(refused == ONE - 4, "%d of %d idle connections from one address refused", refused,
	      ONE);
	uint64_t t0 = now_ns();
	CHECK(pd_checkpoint(tx, pid, listen, "crowded", false, NULL, &r) == 0,
	      "checkpoint beside idle connections: %s", r.err);
	double ms = ns_to_ms(now_ns() - t0);
	fprintf(stderr, "checkpoint beside %d idle connections: %.0f ms\n", 4, ms);
	CHECK(ms < 2000, "checkpoint took %.0f ms: it was retried", ms);
	for (int i = 0; i < 4; i++)
		timed_out += error_within(&c[i], 5000, msg, sizeof(msg)) == -ETIMEDOUT &&
			     strstr(msg, "handshake not finished within 3000 ms of connecting "
				    "(waiting for the source's hello)");
	CHECK(timed_out == 4, "%d of 4 idle connections timed out in the handshake: %s",
	      timed_out, msg);
	for (int i = 0; i < MANY; i++)
		CHECK(raw_open_from(t->port, 0x7f000100 + (uint32_t)i + 1, &m[i]) == 0, "connect");
	CHECK(pd_checkpoint(tx, pid, listen, "crowded", false, NULL, &r) == 0,
	      "checkpoint beside 74 idle connections: %s", r.err);
	/* the oldest made room: told so before their handshake deadline */
	bool told[MANY] = { false };
	for (uint64_t t1 = now_ns(); ns_to_ms(now_ns() - t1) < 1500 && evicted < MANY - 64;)
		for (int i = 0; i < MANY; i++)
			if (!told[i] && error_within(&m[i], 1, msg, sizeof(msg)) == -EUSERS &&
			    strstr(msg, "went to a newer connection"))
				told[i] = ++evicted;
	CHECK(evicted >= MANY - 64, "%d connections made room", evicted);
	for (int i = 0; i < ONE; i++)
		raw_close(&c[i]);
	for (int i = 0; i < MANY; i++)
		raw_close(&m[i]);
}

/* Authenticated connections beyond peer_max_connections are told the
 * receiver is full, and a source says so. */
static void full(struct target *t, struct pd *tx, const char *listen)
{
	const char *const wl_args[] = { "--anon", "1M", NULL };
	struct raw c[5];
	struct wl w = { 0 };
	struct ckres r;
	int n = 0;

	/* the source's link to us stays open: it is one of the 4 */
	for (; n < 5; n++) {
		raw_open(t->port, &c[n]);
		if (handshake(&c[n], &t->key) < 0)
			break;
	}
	CHECK(n == 3, "%d authenticated besides the source's link, want 3", n);
	CHECK(n < 5 && strstr(c[n].error, "the receiver is full: 4 authenticated connections"),
	      "the fifth: %s", n < 5 ? c[n].error : "");
	/* a second process of the source: a link of its own, refused */
	CHECK(wl_start(&w, wl_args) == 0, "workload");
	CHECK(pd_checkpoint(tx, w.pid, listen, "full", false, NULL, &r) != 0, "checkpoint to a "
	      "full receiver");
	fprintf(stderr, "checkpoint to a full receiver: %s\n", r.err);
	CHECK(strstr(r.err, "the receiver is full: 4 authenticated connections "
		     "(peer_max_connections = 4)"), "source's error: %s", r.err);
	wl_stop(&w);
	for (int i = 0; i <= n && i < 5; i++)
		raw_close(&c[i]);
}

static void test_hostile(void)
{
	struct target t = { 0 };
	struct pd tx = { 0 };
	struct proxy px = { 0 };
	struct wl w = { 0 };
	struct ckres r;
	char listen[64], via[64], rec[256], why[256];
	const char *const wl_args[] = { "--populate", "100", "--anon", "8M", NULL };

	require_tracking();
	t.port = free_port();
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", t.port);
	snprintf(via, sizeof(via), "127.0.0.1:%d", free_port());
	CHECK(pk_make(t.key_path, sizeof(t.key_path)) == 0, "key");
	CHECK(peer_key_load(t.key_path, &t.key, why, sizeof(why)) == 0, "key: %s", why);
	CHECK(qmp_trap_make(&t) == 0, "QMP socket: %m");
	char *rx_conf = xstrdup_printf("peer_max_connections = 4\npeer_timeout = 3\n"
				       "incoming_qmp_dir = %s\n", t.qmp_dir);
	CHECK(pd_start(&t.rx, t.key_path, listen, rx_conf, NULL) == 0, "receiver start");
	free(rx_conf);
	CHECK(pd_start(&tx, t.key_path, NULL, "", NULL) == 0, "source start");
	snprintf(rec, sizeof(rec), "%s/recording", tx.d.dir);
	char *mode = xstrdup_printf("pass,record=%s", rec);
	CHECK(proxy_start(&px, via, listen, mode) == 0, "proxy");
	free(mode);
	CHECK(wl_start(&w, wl_args) == 0, "workload");
	/* a real source's handshake, recorded on its way */
	CHECK(pd_checkpoint(&tx, w.pid, via, "real", false, NULL, &r) == 0, "checkpoint: %s", r.err);
	proxy_stop(&px);
	long rss0 = pd_rss(&t.rx);
	unauthenticated(&t);
	replay(&t, rec);
	authenticated(&t);
	migrate_open(&t);
	sections(&t);
	amplification(&t);
	idle_flood(&t, &tx, w.pid, listen);
	full(&t, &tx, listen);
	fprintf(stderr, "receiver RSS %ld KiB at the start, %ld KiB at the end, peak %ld KiB\n",
		rss0, pd_rss(&t.rx), pd_hwm(&t.rx));
	CHECK(pd_hwm(&t.rx) < 128 * 1024, "receiver peak RSS %ld KiB", pd_hwm(&t.rx));
	/* still serving: a real checkpoint, compared with the process */
	usleep(200000);
	CHECK(pd_checkpoint(&tx, w.pid, listen, "after", true, NULL, &r) == 0, "%s", r.err);
	CHECK(r.rc || pd_compare(&t.rx, "after", r.generation, w.pid) == 0, "pages differ");
	kill(w.pid, SIGCONT);
	CHECK(pd_generations(&t.rx, "hostile", (uint64_t[4]){ 0 }, 4) == 0 &&
	      pd_generations(&t.rx, "amplify", (uint64_t[4]){ 0 }, 4) == 0,
	      "a hostile generation was committed");
	wl_stop(&w);
	qmp_trap_remove(&t);
	peer_key_free(&t.key);
	pd_cleanup(&tx);
	pd_cleanup(&t.rx);
}

int main(int argc, char **argv)
{
	static const struct subtest tests[] = { { "hostile", test_hostile } };

	return run_subtests(argc, argv, tests, ARRAY_SIZE(tests));
}
