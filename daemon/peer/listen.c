// SPDX-License-Identifier: GPL-2.0-only
/*
 * The receiver's listening socket (TCP or unix, a stale unix socket
 * replaced), the server's life, and its connections for status.
 */
#include "server-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/util.h"

/* A unix socket file nobody answers on is debris of a killed daemon. */
static int replace_stale(const struct sockaddr_un *un, socklen_t len)
{
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct stat st;

	if (lstat(un->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	if (fd >= 0 && connect(fd, (const struct sockaddr *)un, len) == 0)
		return -EADDRINUSE;
	return unlink(un->sun_path) < 0 ? -errno : 0;
}

static int listen_socket(struct peer_server *s, char *why, size_t why_len)
{
	struct sockaddr_storage sa;
	socklen_t len;
	int one = 1, r = peer_addr_resolve(s->listen, true, &sa, &len, why, why_len);
	_cleanup_close_ int fd = -1;

	if (r < 0)
		return r;
	fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (sa.ss_family == AF_UNIX) {
		r = replace_stale((struct sockaddr_un *)&sa, len);
		if (r < 0) {
			snprintf(why, why_len, "%s: %s", s->listen, r == -EADDRINUSE ?
				 "another daemon listens there" : strerror(-r));
			return r;
		}
	} else {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	}
	/* a deep backlog: a burst of connections waits to be accepted (and
	 * sorted by the handshake's limits) rather than be dropped */
	if (bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, 256) < 0) {
		r = -errno;
		snprintf(why, why_len, "cannot listen on %s: %s", s->listen, strerror(errno));
		return r;
	}
	if (sa.ss_family == AF_UNIX) {
		s->unix_path = strdup(((struct sockaddr_un *)&sa)->sun_path);
		chmod(s->unix_path, 0600);
	}
	return TAKE_FD(fd);
}

int peer_server_set_key(struct peer_server *s, const struct peer_key *key)
{
	uint8_t *b = malloc(key->len);

	if (!b)
		return -ENOMEM;
	memcpy(b, key->bytes, key->len);
	peer_key_free(&s->key);
	s->key = (struct peer_key){ b, key->len };
	return 0;
}

void peer_server_set_verify(struct peer_server *s, bool pages)
{
	s->o.verify_pages = pages;
}

int peer_server_open(struct event_base *base, const struct peer_server_opts *o,
		     struct peer_server **ret)
{
	struct peer_server *s = calloc(1, sizeof(*s));
	char why[256] = "out of memory";
	int fd, r = -ENOMEM;

	if (!s)
		return log_error_errno(ENOMEM, "Out of memory");
	*s = (struct peer_server){ .base = base, .o = *o, .refusals = { 10, 10 } };
	TAILQ_INIT(&s->conns);
	s->listen = strdup(o->listen);
	if (!s->listen || peer_server_set_key(s, o->key) < 0)
		goto fail;
	s->pool = wpool_new(base, o->workers, recv_ctx_new, recv_ctx_free, s);
	/* enough free buffers for a whole window of frames, and two more */
	s->bufs = peer_bufs_new(o->window + (8u << 20));
	if (!s->pool || !s->bufs)
		goto fail;
	fd = r = listen_socket(s, why, sizeof(why));
	if (r < 0)
		goto fail;
	s->listener = evconnlistener_new(base, rconn_accept, s, LEV_OPT_CLOSE_ON_FREE, 0, fd);
	if (!s->listener) {
		close(fd);
		r = -ENOMEM;
		goto fail;
	}
	log_info("Listening for peers on %s (%u cache slots, window %llu KiB, %u workers)",
		 o->listen, o->cache_slots, (unsigned long long)o->window >> 10, o->workers);
	*ret = s;
	return 0;
fail:
	peer_server_free(s);
	return log_error_errno(r, "Peer port: %s", why);
}

void peer_server_stop(struct peer_server *s)
{
	struct rconn *rc, *next;

	if (!s)
		return;
	if (s->listener) {
		evconnlistener_free(s->listener);
		s->listener = NULL;
	}
	if (s->unix_path) {
		unlink(s->unix_path);
		free(s->unix_path);
		s->unix_path = NULL;
	}
	for (rc = TAILQ_FIRST(&s->conns); rc; rc = next) {
		next = TAILQ_NEXT(rc, link);
		rconn_close(rc, -ESHUTDOWN, "wpmigd is shutting down");
	}
}

void peer_server_free(struct peer_server *s)
{
	if (!s)
		return;
	peer_server_stop(s);
	/* Tasks still running finish here; their done() closes their connections. */
	wpool_free(s->pool);
	s->pool = NULL; /* rconn_free below must not trim it */
	while (!TAILQ_EMPTY(&s->conns))
		rconn_free(TAILQ_FIRST(&s->conns));
	peer_bufs_free(s->bufs);
	peer_key_free(&s->key);
	free(s->listen);
	free(s->info);
	free(s->info_ptrs);
	free(s->info_state);
	free(s);
}

size_t peer_server_links(struct peer_server *s, Wpmig__LinkInfo ***ret)
{
	size_t n = 0;
	struct rconn *rc;

	free(s->info);
	free(s->info_ptrs);
	free(s->info_state);
	s->info = calloc(s->n_conns + 1, sizeof(*s->info));
	s->info_ptrs = calloc(s->n_conns + 1, sizeof(*s->info_ptrs));
	s->info_state = calloc(s->n_conns + 1, sizeof(*s->info_state));
	if (!s->info || !s->info_ptrs || !s->info_state)
		return 0;
	TAILQ_FOREACH(rc, &s->conns, link) {
		Wpmig__LinkInfo *li = &s->info[n];

		wpmig__link_info__init(li);
		snprintf(s->info_state[n], sizeof(s->info_state[n]), "%s", rconn_state_name(rc->state));
		li->peer = rc->name;
		li->role = (char *)"receiver";
		li->state = s->info_state[n];
		li->set = rc->set;
		li->generation = rc->generation;
		li->bytes_received = rc->rx.bytes;
		li->bytes_acked = rc->acked_bytes;
		li->rate = rc->rate; /* of the last transfer */
		li->ratio = rc->rx.bytes ? (double)rc->raw_bytes / (double)rc->rx.bytes : 0;
		s->info_ptrs[n++] = li;
	}
	*ret = s->info_ptrs;
	return n;
}
