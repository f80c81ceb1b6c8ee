// SPDX-License-Identifier: GPL-2.0-only
/* A byte-counting TCP proxy (countproxy.h): a thread per direction. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "countproxy.h"

struct dir {
	struct cproxy *p;
	int from, to;
};

static void *pump(void *arg)
{
	struct dir *d = arg;
	char *buf = malloc(1 << 18);

	while (buf) {
		ssize_t n = read(d->from, buf, 1 << 18), off = 0;

		if (n <= 0)
			break;
		atomic_fetch_add(&d->p->bytes, (uint64_t)n);
		while (off < n) {
			ssize_t w = write(d->to, buf + off, (size_t)(n - off));

			if (w <= 0)
				goto out;
			off += w;
		}
	}
out:
	free(buf);
	shutdown(d->to, SHUT_WR);
	shutdown(d->from, SHUT_RD);
	free(d);
	return NULL;
}

static int dial(const char *host, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	inet_pton(AF_INET, host, &sa.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void start_dir(struct cproxy *p, int from, int to)
{
	struct dir *d = malloc(sizeof(*d));
	pthread_t th;

	*d = (struct dir){ p, from, to };
	if (pthread_create(&th, NULL, pump, d) == 0)
		pthread_detach(th);
	else
		free(d);
}

static void *accept_loop(void *arg)
{
	struct cproxy *p = arg;

	while (!atomic_load(&p->stop)) {
		int c = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC), t, one = 1;

		if (c < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		t = dial(p->host, p->target_port);
		if (t < 0) {
			close(c);
			continue;
		}
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		atomic_fetch_add(&p->conns, 1);
		start_dir(p, c, t);
		start_dir(p, t, c);
	}
	return NULL;
}

int cproxy_start(struct cproxy *p, const char *host, int target_port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t len = sizeof(sa);

	memset(p, 0, sizeof(*p));
	strncpy(p->host, host, sizeof(p->host) - 1);
	p->target_port = target_port;
	p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(p->lfd, 16) < 0 || getsockname(p->lfd, (struct sockaddr *)&sa, &len) < 0)
		return -errno;
	p->port = ntohs(sa.sin_port);
	return -pthread_create(&p->accept_th, NULL, accept_loop, p);
}

void cproxy_stop(struct cproxy *p)
{
	atomic_store(&p->stop, true);
	shutdown(p->lfd, SHUT_RDWR);
	pthread_join(p->accept_th, NULL);
	close(p->lfd);
}
