// SPDX-License-Identifier: GPL-2.0-only
/*
 * A fault-injecting proxy for the peer tests (no netem here): it accepts
 * connections on LISTEN, connects each to TARGET and forwards both ways,
 * doing to the first `conns` connections what MODE says.  The source ->
 * receiver direction is cut into frames (proto/frame.h) so frames can be
 * truncated or duplicated.
 *
 *   peer-proxy LISTEN TARGET MODE        (LISTEN, TARGET: HOST:PORT or unix:PATH)
 *
 * MODE is comma-separated key=value:
 *   pass              forward faithfully
 *   conns=N           faults apply to the first N connections (default 1)
 *   seed=S            random choices
 *   drop=A-B          reset both sockets after a random count in [A,B] of bytes
 *                     sent to the target
 *   stall=N:MS        after N bytes to the target, forward nothing for MS ms
 *   rate=BPS          at most BPS bytes per second each way (every connection)
 *   flip=A-B          flip one random bit of a byte at a random offset in [A,B]
 *   truncate=K        send only half of the K-th frame (from 1), then reset
 *   dup=K             send the K-th frame twice
 *   record=PATH       write what the first connection sent to the target to PATH
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAIRS 16
#define HDR 24

struct opts {
	unsigned conns;
	uint64_t seed, drop_lo, drop_hi, stall_at, stall_ms, rate, flip_lo, flip_hi;
	long truncate, dup;
	const char *record;
};

struct buf {
	uint8_t *p;
	size_t len, cap;
};

struct pair {
	int c, t, no;
	struct buf in, out, back; /* to-target frames being cut, to target, to client */
	uint64_t sent, frames, drop_at, flip_at, stall_until;
	bool faulty, flip_armed, stalled_done, c_eof, t_eof;
	FILE *rec;
};

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void buf_add(struct buf *b, const uint8_t *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void buf_take(struct buf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

static int sock_addr(const char *a, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (!strncmp(a, "unix:", 5)) {
		struct sockaddr_un *un = (struct sockaddr_un *)ss;
		un->sun_family = AF_UNIX;
		snprintf(un->sun_path, sizeof(un->sun_path), "%s", a + 5);
		*len = sizeof(*un);
		return 0;
	}
	char host[128];
	const char *colon = strrchr(a, ':');
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	if (!colon || (size_t)(colon - a) >= sizeof(host))
		return -1;
	memcpy(host, a, (size_t)(colon - a));
	host[colon - a] = 0;
	in->sin_family = AF_INET;
	in->sin_port = htons((uint16_t)atoi(colon + 1));
	*len = sizeof(*in);
	return inet_pton(AF_INET, host, &in->sin_addr) == 1 ? 0 : -1;
}

static void parse_range(const char *v, uint64_t *lo, uint64_t *hi)
{
	char *e;
	*lo = *hi = strtoull(v, &e, 10);
	if (*e == '-')
		*hi = strtoull(e + 1, NULL, 10);
}

static void parse_mode(char *mode, struct opts *o)
{
	*o = (struct opts){ .conns = 1, .seed = 1 };
	for (char *kv = strtok(mode, ","); kv; kv = strtok(NULL, ",")) {
		char *v = strchr(kv, '=');
		if (v)
			*v++ = 0;
		if (!strcmp(kv, "conns")) o->conns = (unsigned)atoi(v);
		else if (!strcmp(kv, "seed")) o->seed = strtoull(v, NULL, 0) | 1;
		else if (!strcmp(kv, "drop")) parse_range(v, &o->drop_lo, &o->drop_hi);
		else if (!strcmp(kv, "flip")) parse_range(v, &o->flip_lo, &o->flip_hi);
		else if (!strcmp(kv, "rate")) o->rate = strtoull(v, NULL, 10);
		else if (!strcmp(kv, "truncate")) o->truncate = atol(v);
		else if (!strcmp(kv, "dup")) o->dup = atol(v);
		else if (!strcmp(kv, "record")) o->record = v;
		else if (!strcmp(kv, "stall")) {
			o->stall_at = strtoull(v, &v, 10);
			o->stall_ms = *v == ':' ? strtoull(v + 1, NULL, 10) : 1000;
		}
	}
}

static void reset_close(int fd)
{
	struct linger l = { 1, 0 };

	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

static void pair_end(struct pair *p, bool reset)
{
	fprintf(stderr, "conn %d: %s after %llu bytes, %llu frames\n", p->no,
		reset ? "reset" : "closed", (unsigned long long)p->sent,
		(unsigned long long)p->frames);
	if (reset) {
		reset_close(p->c);
		reset_close(p->t);
	} else {
		close(p->c);
		close(p->t);
	}
	free(p->in.p);
	free(p->out.p);
	free(p->back.p);
	if (p->rec)
		fclose(p->rec);
	*p = (struct pair){ .c = -1, .t = -1 };
}

/* Whole frames out of p->in into p->out, with the frame faults. */
static bool cut_frames(struct pair *p, const struct opts *o)
{
	while (p->in.len >= HDR) {
		uint32_t len, tail, flags;
		memcpy(&flags, p->in.p + 8, 4);
		memcpy(&len, p->in.p + 12, 4);
		memcpy(&tail, p->in.p + 16, 4);
		size_t size = HDR + (size_t)len + tail + (flags & 1 ? 16 : 0);
		if (size > (64u << 20))
			size = p->in.len; /* garbage: pass it on as it is */
		if (p->in.len < size)
			return true;
		p->frames++;
		if (p->faulty && o->truncate == (long)p->frames) {
			buf_add(&p->out, p->in.p, HDR + (size - HDR) / 2);
			fprintf(stderr, "conn %d: truncated frame %llu (%zu bytes)\n", p->no,
				(unsigned long long)p->frames, size);
			buf_take(&p->in, size);
			return false; /* flush what is out, then reset */
		}
		buf_add(&p->out, p->in.p, size);
		if (p->faulty && o->dup == (long)p->frames) {
			buf_add(&p->out, p->in.p, size);
			fprintf(stderr, "conn %d: duplicated frame %llu\n", p->no,
				(unsigned long long)p->frames);
		}
		buf_take(&p->in, size);
	}
	return true;
}

/* Bytes allowed now by the rate; refills per 10 ms. */
static size_t allowance(const struct opts *o, uint64_t *tokens, uint64_t *t_ms, size_t want)
{
	uint64_t now = now_ms();

	if (!o->rate)
		return want;
	if (now > *t_ms) {
		*tokens += (now - *t_ms) * o->rate / 1000;
		if (*tokens > o->rate / 10 + 65536)
			*tokens = o->rate / 10 + 65536;
		*t_ms = now;
	}
	return want < *tokens ? want : (size_t)*tokens;
}

static int pump_out(struct pair *p, const struct opts *o, uint64_t *tokens, uint64_t *t_ms)
{
	size_t n = p->out.len;

	if (p->faulty && p->drop_at && p->sent + n > p->drop_at)
		n = p->drop_at - p->sent;
	if (p->faulty && o->stall_at && !p->stalled_done && p->sent + n > o->stall_at)
		n = o->stall_at > p->sent ? o->stall_at - p->sent : 0;
	n = allowance(o, tokens, t_ms, n);
	if (p->faulty && p->flip_armed && p->flip_at >= p->sent && p->flip_at < p->sent + n) {
		p->out.p[p->flip_at - p->sent] ^= (uint8_t)(1u << (p->flip_at % 8));
		fprintf(stderr, "conn %d: flipped a bit at byte %llu\n", p->no,
			(unsigned long long)p->flip_at);
		p->flip_armed = false;
	}
	if (!n)
		return 0;
	ssize_t w = write(p->t, p->out.p, n);
	if (w <= 0)
		return errno == EAGAIN ? 0 : -1;
	if (p->rec)
		fwrite(p->out.p, 1, (size_t)w, p->rec);
	if (o->rate)
		*tokens -= (uint64_t)w;
	p->sent += (uint64_t)w;
	buf_take(&p->out, (size_t)w);
	if (p->faulty && o->stall_at && !p->stalled_done && p->sent >= o->stall_at) {
		p->stalled_done = true;
		p->stall_until = now_ms() + o->stall_ms;
		fprintf(stderr, "conn %d: stalling %llu ms at byte %llu\n", p->no,
			(unsigned long long)o->stall_ms, (unsigned long long)p->sent);
	}
	if (p->faulty && p->drop_at && p->sent >= p->drop_at) {
		fprintf(stderr, "conn %d: dropping at byte %llu\n", p->no, (unsigned long long)p->sent);
		return -1;
	}
	return 0;
}

static int open_socket(const char *addr, bool listen_it)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, fd;

	if (sock_addr(addr, &ss, &len) < 0)
		return -1;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (listen_it) {
		if (ss.ss_family == AF_UNIX)
			unlink(((struct sockaddr_un *)&ss)->sun_path);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 16) < 0)
			return -1;
	} else if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static uint64_t pick(uint64_t *seed, uint64_t lo, uint64_t hi)
{
	return hi ? lo + rnd(seed) % (hi - lo + 1) : 0;
}

static void accept_pair(struct pair *pairs, int lfd, const char *target, const struct opts *o,
			int *count, uint64_t *seed)
{
	int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK), t;
	struct pair *p = NULL;

	if (c < 0)
		return;
	t = open_socket(target, false);
	for (int i = 0; i < MAX_PAIRS && !p; i++)
		if (pairs[i].c < 0)
			p = &pairs[i];
	if (t < 0 || !p) {
		reset_close(c);
		if (t >= 0)
			close(t);
		return;
	}
	fcntl(t, F_SETFL, O_NONBLOCK);
	*p = (struct pair){ .c = c, .t = t, .no = ++*count };
	p->faulty = (unsigned)p->no <= o->conns;
	p->drop_at = pick(seed, o->drop_lo, o->drop_hi);
	p->flip_at = pick(seed, o->flip_lo, o->flip_hi);
	p->flip_armed = o->flip_hi > 0;
	if (o->record && p->no == 1)
		p->rec = fopen(o->record, "we");
	fprintf(stderr, "conn %d: open%s (drop at %llu, flip at %llu)\n", p->no,
		p->faulty ? ", faulty" : "", (unsigned long long)p->drop_at,
		(unsigned long long)p->flip_at);
}

/* One round of reading and writing for a pair; false when it ended. */
static bool pair_io(struct pair *p, short cev, short tev, const struct opts *o, uint64_t *tokens,
		    uint64_t *t_ms)
{
	uint8_t tmp[1 << 16];
	ssize_t n;

	if (cev & (POLLIN | POLLHUP | POLLERR)) {
		n = read(p->c, tmp, sizeof(tmp));
		if (n == 0 || (n < 0 && errno != EAGAIN))
			p->c_eof = true;
		if (n > 0) {
			buf_add(&p->in, tmp, (size_t)n);
			if (!cut_frames(p, o)) {
				while (p->out.len && pump_out(p, o, tokens, t_ms) == 0)
					;
				pair_end(p, true);
				return false;
			}
		}
	}
	if (p->out.len && pump_out(p, o, tokens, t_ms) < 0) {
		pair_end(p, true);
		return false;
	}
	if (tev & (POLLIN | POLLHUP | POLLERR)) {
		n = read(p->t, tmp, sizeof(tmp));
		if (n == 0 || (n < 0 && errno != EAGAIN))
			p->t_eof = true;
		if (n > 0)
			buf_add(&p->back, tmp, (size_t)n);
	}
	if (p->back.len) {
		n = write(p->c, p->back.p, p->back.len);
		if (n > 0)
			buf_take(&p->back, (size_t)n);
		else if (errno != EAGAIN)
			p->t_eof = p->c_eof = true;
	}
	if (p->c_eof && !p->out.len)
		shutdown(p->t, SHUT_WR);
	if ((p->t_eof && !p->back.len) || (p->c_eof && p->t_eof)) {
		pair_end(p, false);
		return false;
	}
	return true;
}

static int watch(struct pair *p, struct pollfd *fds, uint64_t now)
{
	bool stalled = p->stall_until > now;

	fds[0] = (struct pollfd){ .fd = p->c };
	fds[1] = (struct pollfd){ .fd = p->t };
	if (stalled)
		return 1;
	if (!p->c_eof && p->in.len + p->out.len < (8u << 20))
		fds[0].events |= POLLIN;
	if (p->back.len)
		fds[0].events |= POLLOUT;
	if (!p->t_eof && p->back.len < (8u << 20))
		fds[1].events |= POLLIN;
	if (p->out.len)
		fds[1].events |= POLLOUT;
	return 0;
}

static volatile sig_atomic_t quit;

static void on_term(int sig)
{
	quit = 1;
}

int main(int argc, char **argv)
{
	struct pair pairs[MAX_PAIRS];
	struct pollfd fds[1 + 2 * MAX_PAIRS];
	struct opts o;
	uint64_t tokens = 0, t_ms = now_ms();
	int lfd, count = 0;

	if (argc != 4) {
		fprintf(stderr, "usage: peer-proxy LISTEN TARGET MODE\n");
		return 2;
	}
	parse_mode(argv[3], &o);
	uint64_t seed = o.seed;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_term);
	lfd = open_socket(argv[1], true);
	if (lfd < 0) {
		fprintf(stderr, "cannot listen on %s: %m\n", argv[1]);
		return 1;
	}
	for (int i = 0; i < MAX_PAIRS; i++)
		pairs[i] = (struct pair){ .c = -1, .t = -1 };
	fprintf(stderr, "LISTENING on %s for %s\n", argv[1], argv[2]);
	while (!quit) {
		uint64_t now = now_ms();
		int busy = o.rate ? 1 : 0;

		fds[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (int i = 0; i < MAX_PAIRS; i++) {
			if (pairs[i].c < 0)
				fds[1 + 2 * i] = fds[2 + 2 * i] = (struct pollfd){ .fd = -1 };
			else
				busy |= watch(&pairs[i], &fds[1 + 2 * i], now);
		}
		if (poll(fds, 1 + 2 * MAX_PAIRS, busy ? 10 : 200) < 0 && errno != EINTR)
			break;
		if (fds[0].revents & POLLIN)
			accept_pair(pairs, lfd, argv[2], &o, &count, &seed);
		for (int i = 0; i < MAX_PAIRS; i++)
			if (pairs[i].c >= 0 && pairs[i].stall_until <= now_ms())
				pair_io(&pairs[i], fds[1 + 2 * i].revents, fds[2 + 2 * i].revents, &o,
					&tokens, &t_ms);
	}
	for (int i = 0; i < MAX_PAIRS; i++)
		if (pairs[i].c >= 0)
			pair_end(&pairs[i], false);
	return 0;
}
