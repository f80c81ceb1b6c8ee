// SPDX-License-Identifier: GPL-2.0-only
/*
 * The receiver's input: connections accepted (within max_connections),
 * read frame by frame (the handshake's frames go to server.c), and the
 * loop side of a generation: each authenticated frame is
 * checked against the connection's state (and a chunk's cache slots
 * against the cache rules, in arrival order), queued as a task, and its
 * result answered when the task is done: Open and Commit results, the
 * acknowledgements that open the source's window, or an Error that ends
 * the connection.
 */
#include "server-internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "basic/log.h"
#include "basic/util.h"
#include "peer/regions.h"

static bool is_barrier(enum rt_kind k)
{
	return k == RT_OPEN || k == RT_COMMIT || k == RT_ABORT;
}

static void dispatch(struct rconn *rc)
{
	struct rtask *t;

	while ((t = TAILQ_FIRST(&rc->q)) && !rc->barrier) {
		if (is_barrier(t->kind) && rc->in_flight)
			break;
		TAILQ_REMOVE(&rc->q, t, link);
		rc->in_flight++;
		rc->barrier = is_barrier(t->kind);
		wpool_submit(rc->srv->pool, &t->w);
	}
}

static void frame_done(struct rconn *rc, size_t size)
{
	rc->queued_bytes -= size;
	rc->done_bytes += size;
}

static void maybe_ack(struct rconn *rc)
{
	Wpmig__Peer__Ack a = WPMIG__PEER__ACK__INIT;
	bool idle = TAILQ_EMPTY(&rc->q) && !rc->in_flight;

	if (rc->done_bytes == rc->acked_bytes ||
	    (!idle && rc->done_bytes - rc->acked_bytes < rc->srv->o.window / 4))
		return;
	a.bytes = rc->done_bytes;
	a.frames = rc->rx.frames;
	if (rconn_send(rc, PEER_ACK, &a.base))
		rc->acked_bytes = rc->done_bytes;
}

static void maybe_resume(struct rconn *rc)
{
	if (!rc->paused || rc->queued_bytes > rc->srv->o.window / 2)
		return;
	rc->paused = false;
	rconn_arm(rc);
	rconn_read(rc); /* the kernel may hold whole frames already */
}

static void task_done(struct wtask *w);

static void queue(struct rconn *rc, enum rt_kind kind, struct peer_frame *f, struct rtask *t)
{
	if (!t) {
		t = calloc(1, sizeof(*t));
		if (!t) {
			rconn_close(rc, -ENOMEM, "out of memory");
			return;
		}
		t->f = *f;
		*f = (struct peer_frame){ 0 };
	}
	t->w.run = recv_task_run;
	t->w.done = task_done;
	t->rc = rc;
	t->kind = kind;
	TAILQ_INSERT_TAIL(&rc->q, t, link);
	dispatch(rc);
	if (rc->queued_bytes > rc->srv->o.window && !rc->paused) {
		rc->paused = true; /* the kernel's buffers hold the rest */
		event_del(rc->rd_ev);
	}
}

static void accept_chunk(struct rconn *rc, struct peer_frame *f)
{
	const Wpmig__Peer__Chunk *m = (const Wpmig__Peer__Chunk *)f->m;
	struct rtask *t = calloc(1, sizeof(*t));
	const char *why = NULL;
	int r;

	if (!t) {
		rconn_close(rc, -ENOMEM, "out of memory");
		return;
	}
	t->f = *f;
	*f = (struct peer_frame){ 0 };
	r = peer_chunk_view(m, t->f.tail, t->f.h.tail_length, rc->slots, &t->view, &why);
	if (r == 0 && (m->n_base_slot || m->n_store_slot))
		r = rcache_claim(rc->cache, m->n_base_slot ? m->base_slot : NULL,
				 m->n_store_slot ? m->store_slot : NULL, m->data_pages, &why);
	if (r < 0) {
		recv_task_free(t);
		rconn_close(rc, r, "bad chunk: %s", why);
		return;
	}
	/* Every page of a chunk is decoded and checked on arrival when the
	 * delta cache needs its pages, under peer_verify = pages, and for one
	 * chunk in PEER_SPOT_CHECK (the first of each generation among them):
	 * an encoder and decoder that disagree are found before a commit. */
	t->decode = rc->verify_pages || m->n_base_slot || m->n_store_slot ||
		    rc->gen_chunks % PEER_SPOT_CHECK == 0;
	rc->gen_decoded += t->decode;
	rc->gen_chunks++;
	queue(rc, RT_CHUNK, NULL, t);
}

/* The first piece of a section: a name not seen yet in this generation. */
static int section_begin(struct rconn *rc, const Wpmig__Peer__Section *m, const char **why)
{
	if (m->offset)
		return *why = "a section must begin at offset 0", -EPROTO;
	for (size_t i = 0; i < rc->n_sections; i++)
		if (!strcmp(rc->section_names[i], m->name))
			return *why = "a section name twice in one generation", -EPROTO;
	if (rc->n_sections == SECTION_MAX_COUNT)
		return *why = "too many sections", -EPROTO;
	if (!rc->section_names &&
	    !(rc->section_names = calloc(SECTION_MAX_COUNT, sizeof(*rc->section_names))))
		return *why = "out of memory", -ENOMEM;
	snprintf(rc->section_names[rc->n_sections++], SECTION_NAME_MAX + 1, "%s", m->name);
	rc->section = (struct rsection){ .type = m->type, .length = m->length, .sum = m->sum };
	snprintf(rc->section.name, sizeof(rc->section.name), "%s", m->name);
	return 0;
}

/* Append a piece; memory grows with what arrived, never with what was announced. */
static int section_piece(struct rconn *rc, const Wpmig__Peer__Section *m, const uint8_t *tail,
			 uint32_t len, const char **why)
{
	struct rsection *sec = &rc->section;

	if (strcmp(sec->name, m->name) || sec->type != m->type || sec->length != m->length ||
	    sec->sum != m->sum || m->offset != sec->got)
		return *why = "a section piece out of order", -EPROTO;
	if (len > sec->length - sec->got)
		return *why = "a section longer than announced", -EPROTO;
	if (sec->got + len > sec->cap) {
		size_t cap = (size_t)MIN(MAX(sec->got + len, 2 * (uint64_t)sec->cap), sec->length);
		uint8_t *n = realloc(sec->buf, cap ? cap : 1);

		if (!n)
			return *why = "out of memory", -ENOMEM;
		sec->buf = n;
		sec->cap = cap;
	}
	if (len)
		memcpy(sec->buf + sec->got, tail, len);
	sec->got += len;
	return 0;
}

/*
 * Sections are put together here, on the loop, in the order their pieces
 * arrive (a memcpy each); a complete one is checked and stored by a worker.
 */
static void accept_section(struct rconn *rc, struct peer_frame *f)
{
	const Wpmig__Peer__Section *m = (const Wpmig__Peer__Section *)f->m;
	const char *why = NULL;
	int r = 0;

	rc->gen_section_frames++;
	if (!rc->section.name[0])
		r = section_begin(rc, m, &why);
	if (r == 0)
		r = section_piece(rc, m, f->tail, f->h.tail_length, &why);
	if (r < 0) {
		rconn_close(rc, r, "bad section: %s", why);
		return;
	}
	if (rc->section.got < rc->section.length) {
		frame_done(rc, f->size);
		return;
	}
	struct rtask *t = calloc(1, sizeof(*t));
	if (!t) {
		rconn_close(rc, -ENOMEM, "out of memory");
		return;
	}
	t->f = *f;
	*f = (struct peer_frame){ 0 };
	t->section = rc->section;
	rc->section = (struct rsection){ 0 };
	queue(rc, RT_SECTION, NULL, t);
}

static void accept_commit(struct rconn *rc, struct peer_frame *f)
{
	const Wpmig__Peer__Commit *m = (const Wpmig__Peer__Commit *)f->m;

	if (!rc->changes) {
		rconn_close(rc, -EPROTO, "commit before the region table");
		return;
	}
	if (rc->section.name[0]) {
		rconn_close(rc, -EPROTO, "commit with section %s incomplete", rc->section.name);
		return;
	}
	if (m->chunks != rc->gen_chunks || m->zero_frames != rc->gen_zero_frames ||
	    m->section_frames != rc->gen_section_frames) {
		rconn_close(rc, -EPROTO, "commit after %llu chunks, %llu zero and %llu section frames; "
			    "%llu, %llu and %llu arrived", (unsigned long long)m->chunks,
			    (unsigned long long)m->zero_frames, (unsigned long long)m->section_frames,
			    (unsigned long long)rc->gen_chunks, (unsigned long long)rc->gen_zero_frames,
			    (unsigned long long)rc->gen_section_frames);
		return;
	}
	rconn_enter(rc, RC_COMMITTING);
	queue(rc, RT_COMMIT, f, NULL);
}

/* A source that reconnects after a drop we did not notice (a stalled or
 * half-open connection) supersedes its old connection, whose generation
 * holds the set. */
static void supersede(struct rconn *rc, const Wpmig__Peer__Open *m)
{
	struct rconn *o, *next;

	for (o = TAILQ_FIRST(&rc->srv->conns); o; o = next) {
		next = TAILQ_NEXT(o, link);
		if (o != rc && o->session == m->session && o->state > RC_IDLE &&
		    o->state != RC_CLOSING && !strcmp(o->set, m->set))
			rconn_close(o, -ECONNABORTED, "superseded by connection %llu of the same "
				    "source", (unsigned long long)rc->id);
	}
}

static void accept_open(struct rconn *rc, struct peer_frame *f)
{
	const Wpmig__Peer__Open *m = (const Wpmig__Peer__Open *)f->m;

	rc->session = m->session;
	snprintf(rc->set, sizeof(rc->set), "%s", m->set);
	if (m->session)
		supersede(rc, m);
	rconn_enter(rc, RC_OPENING);
	queue(rc, RT_OPEN, f, NULL);
}

/* Frames of an open generation. */
static void generation_frame(struct rconn *rc, struct peer_frame *f)
{
	switch (f->h.type) {
	case PEER_CHUNK:
		accept_chunk(rc, f);
		break;
	case PEER_ZERO:
		rc->gen_zero_frames++;
		queue(rc, RT_ZERO, f, NULL);
		break;
	case PEER_SECTION:
		accept_section(rc, f);
		break;
	case PEER_REGIONS:
		if (rc->changes) {
			rconn_close(rc, -EPROTO, "a second region table");
			break;
		}
		rc->changes = f->m;
		f->m = NULL;
		frame_done(rc, f->size);
		break;
	case PEER_COMMIT:
		accept_commit(rc, f);
		break;
	case PEER_ABORT:
		rconn_enter(rc, RC_ABORTING);
		queue(rc, RT_ABORT, f, NULL);
		break;
	default:
		rconn_close(rc, -EPROTO, "unexpected %s frame in a generation",
			    peer_type_name(f->h.type));
	}
}

void recv_frame(struct rconn *rc, struct peer_frame *f)
{
	rc->queued_bytes += f->size;
	if (f->h.type == PEER_CLOSE)
		rconn_close(rc, 0, "closed by the source: %s",
			    ((const Wpmig__Peer__Close *)f->m)->reason);
	else if (f->h.type == PEER_ERROR)
		rconn_close(rc, 0, "the source reported: %s",
			    ((const Wpmig__Peer__Error *)f->m)->message);
	else if (rc->state == RC_OPEN)
		generation_frame(rc, f);
	else if (rc->state == RC_IDLE && f->h.type == PEER_OPEN)
		accept_open(rc, f);
	else if (rc->state == RC_IDLE && f->h.type == PEER_ABORT)
		frame_done(rc, f->size); /* nothing open: nothing to drop */
	else
		rconn_close(rc, -EPROTO, "unexpected %s frame while %s", peer_type_name(f->h.type),
			    rc->state == RC_IDLE ? "no generation is open" : "busy");
	peer_frame_clear(f);
	if (rc->state != RC_CLOSING)
		maybe_ack(rc);
}

/* ---- results ---- */

static void open_done(struct rconn *rc, struct rtask *t)
{
	const Wpmig__Peer__Open *m = (const Wpmig__Peer__Open *)t->f.m;
	Wpmig__Peer__OpenResult res = WPMIG__PEER__OPEN_RESULT__INIT;

	res.error = t->r;
	res.message = t->why;
	res.newest = t->newest;
	res.newest_created_ns = t->newest_created_ns;
	res.generation = t->generation;
	res.resumed_us = t->resumed_us;
	res.incoming_us = t->incoming_us;
	if (m->migrate)
		rc->target = true;
	if (t->r == 0 && !t->sink) { /* a migration's finish: no generation */
		rconn_enter(rc, RC_IDLE);
		rconn_send(rc, PEER_OPEN_RESULT, &res.base);
		return;
	}
	if (t->r == 0) {
		rc->sink = t->sink;
		t->sink = NULL;
		rc->generation = t->generation;
		snprintf(rc->set, sizeof(rc->set), "%s", m->set);
		rc->parent_regions = t->parent_regions;
		rc->n_parent_regions = t->n_parent_regions;
		t->parent_regions = NULL;
		rc->gen_chunks = rc->gen_zero_frames = rc->gen_decoded = rc->gen_section_frames = 0;
		rc->verify_pages = rc->srv->o.verify_pages;
		rc->gen_bytes = rc->rx.bytes;
		rc->gen_t0 = now_ns();
		log_info("peer conn %llu (%s): receiving generation %llu of %s (%s)",
			 (unsigned long long)rc->id, rc->name, (unsigned long long)rc->generation,
			 rc->set, m->full ? "full" : "incremental");
	}
	rconn_enter(rc, t->r == 0 ? RC_OPEN : RC_IDLE);
	rconn_send(rc, PEER_OPEN_RESULT, &res.base);
}

static void commit_done(struct rconn *rc, struct rtask *t)
{
	Wpmig__Peer__CommitResult res = WPMIG__PEER__COMMIT_RESULT__INIT;

	res.error = t->r;
	res.message = t->why;
	if (t->r == 0) {
		res.generation = t->sum.generation;
		res.parent = t->sum.parent;
		res.created_ns = t->newest_created_ns;
		res.bytes_stored = t->sum.bytes_stored;
		res.data_pages = t->sum.data_pages;
		res.zero_pages = t->sum.zero_pages;
		res.held_data_pages = t->sum.held_data_pages;
		res.held_zero_pages = t->sum.held_zero_pages;
		rc->committed++;
		rc->rate = (double)(rc->rx.bytes - rc->gen_bytes) * 1e9 /
			   (double)MAX(now_ns() - rc->gen_t0, 1ULL);
		log_info("peer conn %llu (%s): generation %llu of %s committed: %llu bytes "
			 "received, %llu stored; %llu of %llu chunks decoded on arrival",
			 (unsigned long long)rc->id, rc->name, (unsigned long long)res.generation,
			 rc->set, (unsigned long long)(rc->rx.bytes - rc->gen_bytes),
			 (unsigned long long)res.bytes_stored, (unsigned long long)rc->gen_decoded,
			 (unsigned long long)rc->gen_chunks);
	} else {
		log_warning("peer conn %llu (%s): generation %llu of %s not committed: %s",
			    (unsigned long long)rc->id, rc->name, (unsigned long long)rc->generation,
			    rc->set, t->why);
	}
	if (rc->cache)
		(t->r == 0 ? rcache_commit : rcache_abort)(rc->cache);
	recv_drop_generation(rc);
	rconn_enter(rc, RC_IDLE);
	rconn_send(rc, PEER_COMMIT_RESULT, &res.base);
}

static void chunk_done(struct rconn *rc, struct rtask *t)
{
	uint64_t now = now_ns();

	if (t->r < 0) {
		rconn_close(rc, t->r, "generation %llu of %s: %s", (unsigned long long)rc->generation,
			    rc->set, t->why);
		return;
	}
	rc->raw_bytes += t->raw_bytes;
	if (now - rc->rate_ns > 1000000000ULL) { /* idle since: start afresh */
		rc->rate_ns = now - 1;
		rc->rate_bytes = rc->rx.bytes;
	}
	if (now - rc->rate_ns >= 250000000ULL) {
		rc->rate = (double)(rc->rx.bytes - rc->rate_bytes) * 1e9 / (double)(now - rc->rate_ns);
		rc->rate_ns = now;
		rc->rate_bytes = rc->rx.bytes;
	}
}

static void task_done(struct wtask *w)
{
	struct rtask *t = (struct rtask *)w;
	struct rconn *rc = t->rc;

	rc->in_flight--;
	if (is_barrier(t->kind))
		rc->barrier = false;
	if (rc->state == RC_CLOSING) {
		if (t->sink)
			t->sink->ops->abort(t->sink);
		recv_task_free(t);
		if (!rc->in_flight)
			rconn_closed(rc);
		return;
	}
	frame_done(rc, t->f.size);
	if (t->kind == RT_OPEN)
		open_done(rc, t);
	else if (t->kind == RT_COMMIT)
		commit_done(rc, t);
	else if (t->kind == RT_CHUNK)
		chunk_done(rc, t);
	else if (t->kind == RT_ABORT) {
		if (rc->cache)
			rcache_abort(rc->cache);
		recv_drop_generation(rc);
		rconn_enter(rc, RC_IDLE);
	} else if (t->r < 0)
		rconn_close(rc, t->r, "%s", t->why);
	recv_task_free(t);
	if (rc->state == RC_CLOSING)
		return;
	dispatch(rc);
	maybe_ack(rc);
	maybe_resume(rc);
	if (rc->state != RC_CLOSING)
		rconn_arm(rc);
}

/* ---- the connection's input ---- */

void rconn_read(struct rconn *rc)
{
	struct peer_frame f;
	const char *why = NULL;
	int r = 0;

	while (rc->state != RC_CLOSING && !rc->paused &&
	       (r = peer_reader_read(&rc->rd, (int)bufferevent_getfd(rc->bev), &rc->rx, &f,
				     &why)) > 0) {
		if (rc->state < RC_IDLE)
			rconn_handshake(rc, &f);
		else
			recv_frame(rc, &f);
	}
	if (r == -EPIPE)
		rconn_close(rc, 0, "%s by the source", why);
	else if (r < 0)
		rconn_close(rc, r, "rejected a frame: %s", why);
	else
		rconn_arm(rc);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct rconn *rc = arg;

	if (!(what & EV_TIMEOUT))
		rconn_read(rc);
	else if (rc->state < RC_IDLE)
		rconn_close(rc, -ETIMEDOUT, "handshake not finished within %llu ms of connecting "
			    "(waiting for the source's %s)",
			    (unsigned long long)rconn_handshake_ms(rc->srv),
			    rc->state == RC_HELLO ? "hello" : "proof");
	else
		rconn_close(rc, -ETIMEDOUT, "no progress from the source in time");
}

/* Output side: the source stopped taking what we send. */
static void on_event(struct bufferevent *bev, short what, void *arg)
{
	rconn_close(arg, 0, "connection error: %s", strerror(EVUTIL_SOCKET_ERROR()));
}

/* A closed connection's last frame left (or lingered too long). */
static void on_free(evutil_socket_t fd, short what, void *arg)
{
	rconn_free(arg);
}

static void addr_key(const struct sockaddr *sa, struct peer_addr_key *k)
{
	static const uint8_t v4mapped[12] = { [10] = 0xff, [11] = 0xff };

	*k = (struct peer_addr_key){ 0 };
	if (sa->sa_family == AF_INET) {
		memcpy(k->b, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		k->len = 4;
	} else if (sa->sa_family == AF_INET6) {
		const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		bool mapped = !memcmp(a, v4mapped, sizeof(v4mapped));

		k->len = mapped ? 4 : 8; /* an IPv6 source may use its whole /64 */
		memcpy(k->b, mapped ? a + 12 : a, k->len);
	}
}

/*
 * One Error frame, written without waiting (the socket is new: it fits),
 * and closed: a refused connection holds nothing of ours.  Logged within
 * the server's rate limit.
 */
static void refuse_at_once(struct peer_server *s, evutil_socket_t fd, const char *from,
			   int error, const char *why)
{
	Wpmig__Peer__Error e = WPMIG__PEER__ERROR__INIT;
	uint8_t *buf, sink[4096];
	unsigned quiet;
	bool last = false;
	size_t len;

	if (log_limit_pass(&s->refusals, &quiet, &last) || quiet)
		log_notice("Refused a peer connection from %s: %s%s%s", from, why,
			   last ? "; for a while more refusals are only counted" : "",
			   quiet ? " (and more not logged)" : "");
	e.error = error;
	e.message = (char *)why;
	if (peer_frame_build(PEER_ERROR, &e.base, NULL, 0, false, &buf, &len) == 0) {
		if (send((int)fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			log_debug_errno(errno, "refused peer %s: %m", from);
		free(buf);
	}
	/* what the client sent already: read, so that the close is no reset */
	while (recv((int)fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
		;
	evutil_closesocket(fd);
}

/* The handshake's limits (server-internal.h): 0 to go on with fd. */
static int admit(struct peer_server *s, evutil_socket_t fd, const struct peer_addr_key *from,
		 const char *name)
{
	struct rconn *rc, *oldest = NULL;
	char why[160];

	if (from->len && rconn_count(s, false, from) >= PEER_MAX_HANDSHAKES_PER_ADDR) {
		snprintf(why, sizeof(why), "too many connections from this address still in the "
			 "handshake (%d)", PEER_MAX_HANDSHAKES_PER_ADDR);
		refuse_at_once(s, fd, name, -EUSERS, why);
		return -EUSERS;
	}
	if (rconn_count(s, false, NULL) < PEER_MAX_HANDSHAKES)
		return 0;
	TAILQ_FOREACH(rc, &s->conns, link)
		if (rc->state < RC_IDLE && (!oldest || rc->accepted_ns < oldest->accepted_ns))
			oldest = rc;
	if (oldest)
		rconn_close(oldest, -EUSERS, "handshake not finished: its place went to a newer "
			    "connection (%d in the handshake)", PEER_MAX_HANDSHAKES);
	return 0;
}

void rconn_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		  int socklen, void *arg)
{
	struct peer_server *s = arg;
	struct peer_addr_key from;
	char name[80];
	struct rconn *rc;

	addr_key(sa, &from);
	peer_addr_name(sa, (socklen_t)socklen, name, sizeof(name));
	if (admit(s, fd, &from, name) < 0)
		return;
	rc = calloc(1, sizeof(*rc));
	if (!rc || !(rc->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE)) ||
	    !(rc->free_ev = event_new(s->base, -1, 0, on_free, rc)) ||
	    !(rc->rd_ev = event_new(s->base, fd, EV_READ | EV_PERSIST, on_readable, rc))) {
		if (rc && rc->free_ev)
			event_free(rc->free_ev);
		if (rc && rc->bev)
			bufferevent_free(rc->bev);
		else
			evutil_closesocket(fd);
		free(rc);
		return;
	}
	rc->srv = s;
	rc->rd.bufs = s->bufs;
	rc->id = ++s->next_id;
	rc->state_ns = rc->accepted_ns = now_ns();
	rc->from = from;
	TAILQ_INIT(&rc->q);
	snprintf(rc->name, sizeof(rc->name), "%s", name);
	TAILQ_INSERT_TAIL(&s->conns, rc, link);
	s->n_conns++;
	bufferevent_setcb(rc->bev, NULL, NULL, on_event, rc);
	bufferevent_enable(rc->bev, EV_WRITE);
	evutil_make_socket_nonblocking(fd);
	rconn_arm(rc); /* at most one frame is read ahead: the rest waits in the kernel */
	log_debug("peer conn %llu: from %s", (unsigned long long)rc->id, rc->name);
}
