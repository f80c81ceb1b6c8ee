// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target: the control socket's frame decoder, as the daemon
 * runs it.  One control socket (daemon/control/control.c, unchanged, on
 * its own libevent loop) serves the whole run; each input is the byte
 * stream of one client: we connect, send it, shut our side and pump the
 * loop until the daemon has closed the connection, reading whatever it
 * answers.  So every path a client's bytes reach is taken as in wpmigd:
 * header checks, the partial frame, protobuf decoding, requests in flight
 * and their limit, refusals and their linger, replies to a client that
 * is gone.  The verbs are a stub that answers from the request's own
 * strings (now, after progress, or later, once the client left), so
 * replies carry hostile bytes too.  A connection the daemon never closes
 * is a finding (abort after 10 s).  Seeds: corpus-control/.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control/control.h"

#define DEFERRED_MAX 64

struct fuzz {
	struct event_base *base;
	struct control *c;
	char dir[64], path[128];
	struct request *deferred[DEFERRED_MAX];
	size_t n_deferred;
};

static const char *some_text(const Wpmig__Request *m)
{
	if (m->verb_case == WPMIG__REQUEST__VERB_CHECKPOINT && m->checkpoint)
		return m->checkpoint->set ? m->checkpoint->set : "";
	if (m->verb_case == WPMIG__REQUEST__VERB_IMAGES && m->images)
		return m->images->dir && m->images->dir[0] ? m->images->dir
							   : m->images->set ? m->images->set : "";
	return "no text";
}

static void dispatch(void *userdata, struct request *req, const Wpmig__Request *m)
{
	struct fuzz *f = userdata;
	Wpmig__Response resp = WPMIG__RESPONSE__INIT;
	Wpmig__Progress p = WPMIG__PROGRESS__INIT;

	switch (m->id % 4) {
	case 0: /* answered at once, with the request's text */
		request_fail(req, -EINVAL, "verb %d: '%s'", (int)m->verb_case, some_text(m));
		break;
	case 1: /* progress first */
		p.phase = (char *)some_text(m);
		p.done = m->id;
		request_progress(req, &p);
		request_reply(req, &resp);
		break;
	default: /* later: next loop round, or after the client left */
		if (f->n_deferred < DEFERRED_MAX)
			f->deferred[f->n_deferred++] = req;
		else
			request_fail(req, -EBUSY, "busy");
	}
}

static const struct control_ops ops = { .dispatch = dispatch };

static bool answer_one(struct fuzz *f)
{
	Wpmig__Response resp = WPMIG__RESPONSE__INIT;

	if (!f->n_deferred)
		return false;
	resp.message = (char *)"later";
	request_reply(f->deferred[--f->n_deferred], &resp);
	return true;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void setup(struct fuzz *f)
{
	struct control_limits lim = { .max_connections = 4, .max_requests = 8,
				      .max_output = 64 * 1024 };

	signal(SIGPIPE, SIG_IGN);
	unsetenv("LISTEN_FDS"); /* our own socket, not an inherited one */
	snprintf(f->dir, sizeof(f->dir), "/tmp/wpmig-fuzz-control.XXXXXX");
	if (!mkdtemp(f->dir))
		abort();
	snprintf(f->path, sizeof(f->path), "%s/control.sock", f->dir);
	f->base = event_base_new();
	if (!f->base || control_open(f->base, f->path, &ops, f, &f->c) < 0)
		abort();
	control_set_limits(f->c, &lim);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz f;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t sent = 0;
	bool shut = false;
	uint8_t sink[65536];
	uint64_t t0 = now_ms();
	int fd;

	if (!f.base)
		setup(&f);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f.path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		abort();
	for (;;) {
		bool progress = false;
		ssize_t n;

		if (!shut && sent < size) {
			n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
			if (n > 0) {
				sent += (size_t)n;
				progress = true;
			} else if (n < 0 && errno != EAGAIN) {
				sent = size; /* the daemon closed on us: stop sending */
			}
		}
		if (!shut && sent == size) {
			shutdown(fd, SHUT_WR);
			shut = true;
		}
		event_base_loop(f.base, EVLOOP_NONBLOCK);
		n = recv(fd, sink, sizeof(sink), 0);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			break; /* the daemon closed the connection */
		if (n > 0)
			progress = true;
		if (!progress && !answer_one(&f))
			poll(&(struct pollfd){ .fd = fd, .events = POLLIN }, 1, 1);
		if (now_ms() - t0 > 10000) {
			fprintf(stderr, "the daemon never closed the connection\n");
			abort();
		}
	}
	close(fd);
	/* Requests outliving their client get their answers into the void. */
	while (f.n_deferred)
		answer_one(&f);
	event_base_loop(f.base, EVLOOP_NONBLOCK);
	return 0;
}
