// SPDX-License-Identifier: GPL-2.0-only
/*
 * Programs that restore tests roll back, again and again, and that check
 * their own state all the time: a thread whose registers do not go with
 * its memory (or its stack, FPU registers, TLS or signal mask) is caught
 * at its next step, and the program exits with 99 naming it (a crash
 * shows as a signal).  Nothing they check is kernel state, which restore
 * does not roll back.
 *
 *   restore-target fork     one thread: nanosleep 2 ms, fork a child that
 *                           exits at once, reap, check (issue 13's crash)
 *   restore-target threads  a control thread in read(), workers in futex,
 *                           epoll_wait, clock_nanosleep, and one spinning
 *   restore-target malloc   malloc/free churn in the main thread with a
 *                           running checksum of every live block
 *
 * Each prints "READY <address of struct shared>" on stdout.  threads and
 * malloc then read commands on stdin, one per line, answered on stdout:
 *   state        "STATE <progress> <sum> <counter 0> ... <counter 4>"
 *   pause        workers park on a condition variable (in futex) and stay
 *                there; "PAUSED <progress> <sum> ..." once all are parked
 *   resume       "RESUMED"
 *   spawn, join  one more thread (blocked in read()), or end it: "OK <tid>"
 *   map, unmap   one more anonymous mapping of 1 MiB, or unmap it: "OK"
 * The driver may also read struct shared from /proc/PID/mem.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>

#define N_WORKERS 5 /* futex, epoll, nanosleep, spin (threads); churn (malloc) */

struct shared {
	uint64_t magic;
	volatile uint64_t progress;
	volatile uint64_t counter[N_WORKERS];
	volatile uint64_t sum;       /* malloc: checksum of the live blocks */
	volatile uint32_t futex_word;
	volatile int paused_req;     /* workers: park */
	volatile int parked;
};

static struct shared sh = { .magic = 0x57504d4947524553ULL };
static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cond = PTHREAD_COND_INITIALIZER, parked_cond = PTHREAD_COND_INITIALIZER;
static int efd;
static __thread uint64_t tls_n;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	buf[n < 0 ? 0 : n] = '\n';
	if (write(2, "restore-target: self-check failed: ", 35) < 0 ||
	    write(2, buf, (size_t)(n < 0 ? 0 : n) + 1) < 0)
		_exit(98);
	_exit(99);
}

/*
 * One step of a worker: its counter in memory must equal the ones it keeps
 * on its stack, in its TLS and as a double, and its signal mask must be the
 * one it set for that count (a mask not put back, or memory restored
 * without the registers, shows here).
 */
struct step {
	uint64_t n;
	double d;
	uint64_t stack_pat[8];
};

static void step_init(struct step *s)
{
	memset(s, 0, sizeof(*s));
	for (int i = 0; i < 8; i++)
		s->stack_pat[i] = (uint64_t)i;
}

static void step(struct step *s, int w)
{
	sigset_t cur;

	if (sh.counter[w] != s->n || tls_n != s->n || s->d != (double)s->n)
		die("worker %d: counter %llu in memory, %llu on its stack, %llu in TLS, %.0f "
		    "as a double", w, (unsigned long long)sh.counter[w], (unsigned long long)s->n,
		    (unsigned long long)tls_n, s->d);
	for (int i = 0; i < 8; i++)
		if (s->stack_pat[i] != s->n * 0x9E3779B97F4A7C15ULL + (uint64_t)i)
			die("worker %d: its stack does not go with count %llu", w,
			    (unsigned long long)s->n);
	pthread_sigmask(SIG_SETMASK, NULL, &cur);
	if (sigismember(&cur, SIGUSR1) != (int)(s->n & 1))
		die("worker %d: signal mask does not go with count %llu", w,
		    (unsigned long long)s->n);
	s->n++;
	s->d += 1.0;
	tls_n = s->n;
	for (int i = 0; i < 8; i++)
		s->stack_pat[i] = s->n * 0x9E3779B97F4A7C15ULL + (uint64_t)i;
	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, SIGUSR1);
	pthread_sigmask(s->n & 1 ? SIG_BLOCK : SIG_UNBLOCK, &one, NULL);
	sh.counter[w] = s->n;
	__atomic_fetch_add(&sh.progress, 1, __ATOMIC_RELAXED);
}

static void maybe_park(void)
{
	if (!sh.paused_req)
		return;
	pthread_mutex_lock(&park_lock);
	sh.parked++;
	pthread_cond_broadcast(&parked_cond);
	while (sh.paused_req)
		pthread_cond_wait(&park_cond, &park_lock);
	sh.parked--;
	pthread_mutex_unlock(&park_lock);
}

static long futex(volatile uint32_t *w, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, w, op, val, ts, NULL, 0);
}

/* ---- threads ---- */

static void *w_futex(void *arg)
{
	struct step s;
	struct timespec ts = { 0, 50 * 1000000 };

	step_init(&s);
	for (;;) {
		uint32_t v = sh.futex_word;
		long r = futex(&sh.futex_word, FUTEX_WAIT_PRIVATE, v, &ts);

		if (r < 0 && errno != EAGAIN && errno != EINTR && errno != ETIMEDOUT)
			die("futex: %s", strerror(errno));
		step(&s, 0);
		maybe_park();
	}
	return NULL;
}

static void *w_epoll(void *arg)
{
	struct epoll_event ev = { .events = EPOLLIN }, out;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct step s;

	step_init(&s);
	if (ep < 0)
		die("epoll_create1: %s", strerror(errno));
	if (epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	for (;;) {
		int n = epoll_wait(ep, &out, 1, 20);
		uint64_t v;

		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		if (n > 0 && read(efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			die("eventfd: %s", strerror(errno));
		step(&s, 1);
		maybe_park();
	}
	return NULL;
}

static void *w_sleep(void *arg)
{
	struct timespec ts = { 0, 1000000 };
	struct step s;

	step_init(&s);
	for (;;) {
		int r = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);

		if (r && r != EINTR)
			die("clock_nanosleep: %s", strerror(r));
		step(&s, 2);
		maybe_park();
	}
	return NULL;
}

/*
 * A count kept at once in a general register, an SSE register and memory,
 * with no call in between (so no compiler spills them): registers put back
 * without the FPU state, or memory without the registers, break it.
 */
static volatile uint64_t spin_mem;

static int spin_regs(uint64_t iters)
{
	int bad;

	__asm__ volatile("xorq %%r8, %%r8\n\t"
			 "movq %%r8, %[mem]\n\t"
			 "pxor %%xmm8, %%xmm8\n\t"
			 "movq $1, %%r9\n\t"
			 "cvtsi2sdq %%r9, %%xmm10\n\t"
			 "1:\n\t"
			 "incq %%r8\n\t"
			 "addq $1, %[mem]\n\t"
			 "addsd %%xmm10, %%xmm8\n\t"
			 "cmpq %[mem], %%r8\n\t"
			 "jne 2f\n\t"
			 "cvtsi2sdq %%r8, %%xmm9\n\t"
			 "ucomisd %%xmm9, %%xmm8\n\t"
			 "jne 2f\n\t"
			 "cmpq %[it], %%r8\n\t"
			 "jb 1b\n\t"
			 "xorl %[bad], %[bad]\n\t"
			 "jmp 3f\n\t"
			 "2:\n\t"
			 "movl $1, %[bad]\n\t"
			 "3:\n\t"
			 : [bad] "=&r"(bad), [mem] "+m"(spin_mem)
			 : [it] "r"(iters)
			 : "r8", "r9", "xmm8", "xmm9", "xmm10", "cc");
	return bad;
}

static void *w_spin(void *arg)
{
	struct step s;
	uint64_t v = 1;

	step_init(&s);
	for (;;) {
		if (spin_regs(2000))
			die("spinner: its general, SSE and memory counts disagree (%llu in memory)",
			    (unsigned long long)spin_mem);
		step(&s, 3);
		if (s.n % 4096 == 0) { /* wake the futex and epoll workers now and then */
			__atomic_fetch_add(&sh.futex_word, 1, __ATOMIC_RELAXED);
			futex(&sh.futex_word, FUTEX_WAKE_PRIVATE, 1, NULL);
			if (write(efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				die("eventfd write: %s", strerror(errno));
		}
		maybe_park();
	}
	return NULL;
}

/* ---- malloc ---- */

#define SLOTS 4096
#define MAX_BLOCK 4096

struct block {
	uint32_t len;
	uint64_t seed;
	uint8_t *p;
};

static struct block table[SLOTS];

static uint64_t mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x9E3779B97F4A7C15ULL;
	return x ^ (x >> 29);
}

static uint64_t fill(uint8_t *p, uint32_t len, uint64_t seed)
{
	uint64_t sum = 0;

	for (uint32_t i = 0; i < len; i++) {
		p[i] = (uint8_t)mix(seed + i / 8);
		sum += p[i] * (uint64_t)(i + 1);
	}
	return sum ^ seed;
}

static uint64_t check_block(const struct block *b)
{
	uint64_t sum = 0;

	for (uint32_t i = 0; i < b->len; i++) {
		if (b->p[i] != (uint8_t)mix(b->seed + i / 8))
			die("malloc: block %p of %u bytes was changed at %u", (void *)b->p, b->len, i);
		sum += b->p[i] * (uint64_t)(i + 1);
	}
	return sum ^ b->seed;
}

static void *churn(void *arg)
{
	uint64_t rng = 12345, sum = 0, ops = 0;
	struct step s;

	step_init(&s);
	for (;;) {
		rng = mix(rng + 1);
		struct block *b = &table[rng % SLOTS];

		if (b->p) {
			sum -= check_block(b);
			free(b->p);
			b->p = NULL;
		} else {
			b->len = (uint32_t)(16 + (rng >> 20) % (MAX_BLOCK - 16));
			b->seed = rng;
			b->p = malloc(b->len);
			if (!b->p)
				die("malloc failed");
			sum += fill(b->p, b->len, b->seed);
		}
		sh.sum = sum;
		if (++ops % 512 == 0) { /* the whole heap against the running sum */
			uint64_t all = 0;

			for (int i = 0; i < SLOTS; i++)
				if (table[i].p)
					all += check_block(&table[i]);
			if (all != sum)
				die("malloc: heap checksum %llx, running checksum %llx",
				    (unsigned long long)all, (unsigned long long)sum);
		}
		step(&s, 4);
		maybe_park();
	}
	return NULL;
}

/* The heap grows to its largest at once and never shrinks: the layout stays
 * what it was at the checkpoints. */
static void malloc_setup(void)
{
	mallopt(M_ARENA_MAX, 1);
	mallopt(M_TRIM_THRESHOLD, 1 << 30);
	mallopt(M_MMAP_THRESHOLD, 1 << 30);
	for (int i = 0; i < SLOTS; i++)
		table[i].p = malloc(MAX_BLOCK);
	for (int i = 0; i < SLOTS; i++) {
		free(table[i].p);
		table[i].p = NULL;
	}
}

/* ---- fork ---- */

static void fork_loop(void)
{
	struct timespec ts = { 0, 2000000 };
	struct step s;

	step_init(&s);
	for (;;) {
		int r = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
		pid_t pid;

		if (r && r != EINTR)
			die("nanosleep: %s", strerror(r));
		pid = fork();
		if (pid == 0)
			_exit(0);
		if (pid < 0 && errno != EAGAIN)
			die("fork: %s", strerror(errno));
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		step(&s, 0);
	}
}

/* ---- control ---- */

static int extra_pipe[2] = { -1, -1 };
static pthread_t extra;
static volatile pid_t extra_tid;
static uint8_t *extra_map;

static void *extra_main(void *arg)
{
	char c;

	extra_tid = (pid_t)syscall(SYS_gettid);
	while (read(extra_pipe[0], &c, 1) < 0 && errno == EINTR)
		;
	return NULL;
}

static void extra_cmd(const char *cmd)
{
	char buf[64];
	int ok = 1;

	if (!strcmp(cmd, "spawn") && extra_pipe[0] < 0) {
		extra_tid = 0;
		ok = pipe(extra_pipe) == 0 && pthread_create(&extra, NULL, extra_main, NULL) == 0;
		while (ok && !extra_tid)
			sched_yield();
	} else if (!strcmp(cmd, "join") && extra_pipe[0] >= 0) {
		ok = write(extra_pipe[1], "x", 1) == 1 && pthread_join(extra, NULL) == 0;
		close(extra_pipe[0]);
		close(extra_pipe[1]);
		extra_pipe[0] = extra_pipe[1] = -1;
	} else if (!strcmp(cmd, "map") && !extra_map) {
		extra_map = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				 -1, 0);
		ok = extra_map != MAP_FAILED;
		if (ok)
			memset(extra_map, 0x5a, 1 << 20);
		else
			extra_map = NULL;
	} else if (!strcmp(cmd, "unmap") && extra_map) {
		ok = munmap(extra_map, 1 << 20) == 0;
		extra_map = NULL;
	} else {
		ok = 0;
	}
	int n = snprintf(buf, sizeof(buf), ok ? "OK %d\n" : "ERR\n", (int)extra_tid);
	if (write(1, buf, (size_t)n) != n)
		_exit(97);
}

static void reply(const char *what)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "%s %llu %llu", what, (unsigned long long)sh.progress,
			 (unsigned long long)sh.sum);

	for (int i = 0; i < N_WORKERS; i++)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, " %llu",
			      (unsigned long long)sh.counter[i]);
	buf[n++] = '\n';
	if (write(1, buf, (size_t)n) != n)
		_exit(97);
}

static void control(int n_workers)
{
	char line[64];
	size_t have = 0;

	for (;;) {
		ssize_t n = read(0, line + have, sizeof(line) - 1 - have);
		char *nl;

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			_exit(0); /* the driver went away */
		}
		have += (size_t)n;
		line[have] = 0;
		while ((nl = strchr(line, '\n'))) {
			*nl = 0;
			if (!strcmp(line, "state")) {
				reply("STATE");
			} else if (!strcmp(line, "pause")) {
				pthread_mutex_lock(&park_lock);
				sh.paused_req = 1;
				while (sh.parked < n_workers)
					pthread_cond_wait(&parked_cond, &park_lock);
				pthread_mutex_unlock(&park_lock);
				reply("PAUSED");
			} else if (!strcmp(line, "resume")) {
				pthread_mutex_lock(&park_lock);
				sh.paused_req = 0;
				pthread_cond_broadcast(&park_cond);
				pthread_mutex_unlock(&park_lock);
				reply("RESUMED");
			} else if (!strcmp(line, "spawn") || !strcmp(line, "join") ||
				   !strcmp(line, "map") || !strcmp(line, "unmap")) {
				extra_cmd(line);
			} else {
				reply("UNKNOWN");
			}
			have -= (size_t)(nl + 1 - line);
			memmove(line, nl + 1, have + 1);
		}
	}
}

static void ready(void)
{
	printf("READY %p\n", (void *)&sh);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	pthread_t th;
	const char *mode = argc > 1 ? argv[1] : "";

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(mode, "fork")) {
		ready();
		fork_loop();
	} else if (!strcmp(mode, "threads")) {
		void *(*fns[])(void *) = { w_futex, w_epoll, w_sleep, w_spin };

		efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		for (size_t i = 0; i < 4; i++)
			if (pthread_create(&th, NULL, fns[i], NULL))
				die("pthread_create");
		ready();
		control(4);
	} else if (!strcmp(mode, "malloc")) {
		malloc_setup();
		if (pthread_create(&th, NULL, churn, NULL))
			die("pthread_create");
		ready();
		control(1);
	}
	fprintf(stderr, "usage: restore-target fork|threads|malloc\n");
	return 2;
}
