// SPDX-License-Identifier: GPL-2.0-only
/*
 * A target process for wpmig's tests and demo.  It maps memory of several
 * kinds, fills part of it, and obeys line commands on stdin, answering one
 * line on stdout ("OK ..." or "ERR ...").  With --selfcheck it also watches
 * its own state: a thread keeps known values in registers across a busy
 * loop, one thread blocks in read(), one in clock_nanosleep(), and SIGUSR1
 * and SIGRTMIN+1 are counted, so a tracer that disturbs it is caught by the
 * target itself.  --busy N adds N threads spinning on the CPU.
 *
 *   regions                      list regions: name kind start end
 *   write NAME N SEED            write N distinct random pages; answers them
 *   poke NAME N SEED             change one word in N pages (sparse writes)
 *   writeall NAME                rewrite every page
 *   zero NAME FIRST COUNT        write zeros into pages
 *   dontneed NAME FIRST COUNT    madvise(MADV_DONTNEED)
 *   remove NAME FIRST COUNT      madvise(MADV_REMOVE) (shared kinds)
 *   mmap NAME KIND SIZE          map, fill a new region
 *   munmap NAME                  unmap a region
 *   mremap NAME                  move a region to a new address
 *   mprotect NAME ro|rw          change protection
 *   fork                         fork a child that writes its copy and waits
 *   reapchild                    end that child
 *   writer start|stop            a thread writing pages continuously
 *   sum NAME                     FNV-1a 64 of the region
 *   check                        self-check results
 *   busy                         total loop count of the --busy threads
 *   churn start|stop             a thread creating and joining threads
 *   exec                         answer OK, exec() itself again with the same options:
 *                                a new program image (it prints READY again)
 *   ticker start|stop            a thread waking every millisecond; stop answers
 *                                the longest time it was kept from running (us)
 *   quit
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pagegen.h"

#define PG 4096UL
#define MAX_REGIONS 64

struct region {
	char name[32];
	char kind[16];
	uint8_t *addr;
	size_t len;
	int fd;
};

struct workload {
	struct region r[MAX_REGIONS];
	int n;
	uint64_t seed;
	unsigned populate_pct;
	bool all_random; /* --random: populated pages all random, not mixed */
	pid_t child;
	pthread_t writer;
	atomic_bool writer_on;
	atomic_ulong writer_pages;
	/* self-check */
	atomic_bool stop;
	atomic_ulong reg_loops, reg_bad, sleep_bad, read_bad, usr1, rt;
	atomic_ulong busy_loops;
	pthread_t churner;
	atomic_bool churn_on;
	atomic_ulong churned;
	pthread_t ticker;
	atomic_bool ticker_on;
	atomic_ulong ticker_max_us;
	int read_pipe[2];
	atomic_int read_got;
};

static uint64_t xs(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* Mixed content: a third zero, a third text-like, a third random. */
static void fill_page(uint8_t *p, uint64_t seed, bool all_random)
{
	uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
	int kind = (int)(xs(&s) % 3);

	pg_fill(p, all_random ? PG_RANDOM : kind, &s);
}

static void random_page(uint8_t *p, uint64_t *s)
{
	for (size_t i = 0; i < PG; i += 8) {
		uint64_t v = xs(s) | 1;
		memcpy(p + i, &v, 8);
	}
}

static struct region *find(struct workload *w, const char *name)
{
	for (int i = 0; i < w->n; i++)
		if (!strcmp(w->r[i].name, name))
			return &w->r[i];
	return NULL;
}

static int map_kind(const char *kind, size_t len, uint8_t **addr, int *fdp)
{
	int prot = PROT_READ | PROT_WRITE, fd = -1;
	void *p;

	*fdp = -1;
	if (!strcmp(kind, "anon") || !strcmp(kind, "thp")) {
		size_t al = 2UL << 20;
		/* 2 MiB aligned so THP can back it. */
		uint8_t *raw = mmap(NULL, len + al, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (raw == MAP_FAILED)
			return -errno;
		uint8_t *a = (uint8_t *)(((uintptr_t)raw + al - 1) & ~(al - 1));
		if (a > raw)
			munmap(raw, (size_t)(a - raw));
		munmap(a + len, (size_t)(raw + len + al - (a + len)));
		if (madvise(a, len, !strcmp(kind, "thp") ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) < 0)
			return -errno;
		*addr = a;
		return 0;
	}
	if (!strcmp(kind, "memfd") || !strcmp(kind, "memfd-private")) {
		fd = memfd_create("wpmig-workload", MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, (off_t)len) < 0)
			return -errno;
		p = mmap(NULL, len, prot, !strcmp(kind, "memfd") ? MAP_SHARED : MAP_PRIVATE, fd, 0);
	} else if (!strcmp(kind, "file")) {
		char path[] = "/tmp/wpmig-workload-XXXXXX";
		fd = mkstemp(path);
		if (fd < 0)
			return -errno;
		unlink(path);
		/* File content differs from what we write later: a revert shows. */
		uint8_t *buf = malloc(PG);
		for (size_t o = 0; o < len; o += PG) {
			memset(buf, (int)(0x40 + (o / PG) % 32), PG);
			if (pwrite(fd, buf, PG, (off_t)o) != (ssize_t)PG)
				return -EIO;
		}
		free(buf);
		p = mmap(NULL, len, prot, MAP_PRIVATE, fd, 0);
	} else if (!strcmp(kind, "hugetlb")) {
		p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	} else if (!strcmp(kind, "shm")) {
		p = mmap(NULL, len, prot, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	} else {
		return -EINVAL;
	}
	if (p == MAP_FAILED) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return -e;
	}
	*addr = p;
	*fdp = fd;
	return 0;
}

static void populate(struct workload *w, struct region *r)
{
	uint64_t s = w->seed ^ (uint64_t)(uintptr_t)r->addr;
	size_t pages = r->len / PG;

	for (size_t i = 0; i < pages; i++)
		if (xs(&s) % 100 < w->populate_pct)
			fill_page(r->addr + i * PG, s, w->all_random);
}

static int add_region(struct workload *w, const char *name, const char *kind, size_t len)
{
	struct region *r;
	int rc;

	if (w->n == MAX_REGIONS || find(w, name))
		return -EEXIST;
	r = &w->r[w->n];
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->kind, sizeof(r->kind), "%s", kind);
	r->len = len;
	rc = map_kind(kind, len, &r->addr, &r->fd);
	if (rc < 0)
		return rc;
	w->n++;
	populate(w, r);
	return 0;
}

static void drop_region(struct workload *w, struct region *r)
{
	if (r->fd >= 0)
		close(r->fd);
	*r = w->r[--w->n];
}

static size_t parse_size(const char *s)
{
	char *e;
	size_t v = strtoull(s, &e, 10);

	switch (*e) {
	case 'K': case 'k': return v << 10;
	case 'M': case 'm': return v << 20;
	case 'G': case 'g': return v << 30;
	}
	return v;
}

/* Pick n distinct pages of r with seed; returns a malloc'ed index list. */
static size_t *pick_pages(const struct region *r, size_t n, uint64_t seed)
{
	size_t pages = r->len / PG;
	size_t *idx = malloc(pages * sizeof(*idx));
	uint64_t s = seed | 1;

	for (size_t i = 0; i < pages; i++)
		idx[i] = i;
	if (n > pages)
		n = pages;
	for (size_t i = 0; i < n; i++) {
		size_t j = i + xs(&s) % (pages - i), t = idx[i];
		idx[i] = idx[j];
		idx[j] = t;
	}
	return idx;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

static void cmd_write(struct workload *w, struct region *r, size_t n, uint64_t seed, bool poke)
{
	size_t *idx = pick_pages(r, n, seed);
	uint64_t s = seed * 31 + 7;

	if (n > r->len / PG)
		n = r->len / PG;
	qsort(idx, n, sizeof(*idx), cmp_size);
	for (size_t i = 0; i < n; i++) {
		uint8_t *p = r->addr + idx[i] * PG;
		if (poke) {
			uint64_t v = xs(&s) | 1;
			memcpy(p + (xs(&s) % (PG / 8)) * 8, &v, 8);
		} else {
			random_page(p, &s);
		}
	}
	printf("OK");
	for (size_t i = 0; i < n; i++)
		printf(" %zu", idx[i]);
	printf("\n");
	free(idx);
}

static void *writer_thread(void *arg)
{
	struct workload *w = arg;
	uint64_t s = 0x1234567;

	while (atomic_load(&w->writer_on)) {
		struct region *r = &w->r[xs(&s) % (uint64_t)w->n];
		if (r->len && strcmp(r->kind, "ro")) {
			uint8_t *p = r->addr + (xs(&s) % (r->len / PG)) * PG;
			uint64_t v = xs(&s);
			memcpy(p + (v % (PG / 8)) * 8, &v, 8);
			atomic_fetch_add(&w->writer_pages, 1);
		}
	}
	return NULL;
}

static uint64_t fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

/* ---- self-check threads ---- */

static struct workload *the_workload; /* for the signal handler only */

static void on_usr1(int sig)
{
	(void)sig;
	atomic_fetch_add(&the_workload->usr1, 1);
}

/* Real-time signals queue (standard ones coalesce): every one sent counts. */
static void on_rt(int sig)
{
	(void)sig;
	atomic_fetch_add(&the_workload->rt, 1);
}

static void *short_thread(void *arg)
{
	return arg;
}

static void *churn_thread(void *arg)
{
	struct workload *w = arg;

	while (atomic_load(&w->churn_on)) {
		pthread_t t;

		if (pthread_create(&t, NULL, short_thread, NULL) == 0) {
			pthread_join(t, NULL);
			atomic_fetch_add(&w->churned, 1);
		}
	}
	return NULL;
}

/* How long was the process kept from running (a freeze, a dump)?  The
 * longest gap between wake-ups beyond the 1 ms asked for. */
static void *ticker_thread(void *arg)
{
	struct workload *w = arg;
	struct timespec ts = { .tv_nsec = 1000000 }, t0, t1;
	uint64_t max = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (atomic_load(&w->ticker_on)) {
		clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		uint64_t us = (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000 +
					 (t1.tv_nsec - t0.tv_nsec) / 1000);
		if (us > 1000 && us - 1000 > max)
			max = us - 1000;
		t0 = t1;
	}
	atomic_store(&w->ticker_max_us, max);
	return NULL;
}

static void *busy_thread(void *arg)
{
	struct workload *w = arg;

	while (!atomic_load(&w->stop)) {
		for (volatile unsigned i = 0; i < 100000; i++)
			;
		atomic_fetch_add(&w->busy_loops, 1);
	}
	return NULL;
}

static void *regcheck_thread(void *arg)
{
	struct workload *w = arg;

	while (!atomic_load(&w->stop)) {
		unsigned long bad;

		/* rcx and r11 are what a syscall clobbers; the others are
		 * callee-saved.  The loop counts rcx down from 200000 while
		 * r11 counts from 100000: at the end rcx must be 100000. */
		__asm__ volatile(
			"mov $0x1111111111111111, %%r12\n\t"
			"mov $0x2222222222222222, %%r13\n\t"
			"mov $0x3333333333333333, %%r14\n\t"
			"mov $0x4444444444444444, %%r15\n\t"
			"mov $200000, %%rcx\n\t"
			"mov $100000, %%r11\n\t"
			"1:\n\t"
			"dec %%rcx\n\t"
			"dec %%r11\n\t"
			"jnz 1b\n\t"
			"xor %%eax, %%eax\n\t"
			"cmp $100000, %%rcx\n\t"
			"setne %%al\n\t"
			"mov $0x1111111111111111, %%rdx\n\t"
			"cmp %%rdx, %%r12\n\t"
			"setne %%dl\n\t"
			"or %%dl, %%al\n\t"
			"mov $0x2222222222222222, %%rdx\n\t"
			"cmp %%rdx, %%r13\n\t"
			"setne %%dl\n\t"
			"or %%dl, %%al\n\t"
			"mov $0x3333333333333333, %%rdx\n\t"
			"cmp %%rdx, %%r14\n\t"
			"setne %%dl\n\t"
			"or %%dl, %%al\n\t"
			"mov $0x4444444444444444, %%rdx\n\t"
			"cmp %%rdx, %%r15\n\t"
			"setne %%dl\n\t"
			"or %%dl, %%al\n\t"
			: "=&a"(bad)
			:
			: "rcx", "rdx", "r11", "r12", "r13", "r14", "r15", "cc");
		if (bad)
			atomic_fetch_add(&w->reg_bad, 1);
		atomic_fetch_add(&w->reg_loops, 1);
		usleep(100);
	}
	return NULL;
}

static void *sleep_thread(void *arg)
{
	struct workload *w = arg;
	struct timespec ts = { .tv_sec = 3600 }, t0, t1;
	sigset_t counted;

	/* A handler run on this thread ends clock_nanosleep() with EINTR
	 * whatever SA_RESTART says (signal(7)): keep the counted signals
	 * away, so an early wake-up can only be a restart a tracer lost. */
	sigemptyset(&counted);
	sigaddset(&counted, SIGUSR1);
	sigaddset(&counted, SIGRTMIN + 1);
	pthread_sigmask(SIG_BLOCK, &counted, NULL);
	while (!atomic_load(&w->stop)) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		int rc = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (atomic_load(&w->stop))
			break;
		/* Woken early: a restart was lost (rc EINTR, or 516 leaked). */
		if (rc != 0 || t1.tv_sec - t0.tv_sec < 3599)
			atomic_fetch_add(&w->sleep_bad, 1);
	}
	return NULL;
}

static void *read_thread(void *arg)
{
	struct workload *w = arg;
	char c;

	for (;;) {
		ssize_t n = read(w->read_pipe[0], &c, 1);
		if (n == 1 && c == 'q')
			break;
		if (n == 1)
			atomic_fetch_add(&w->read_got, 1);
		else
			atomic_fetch_add(&w->read_bad, 1); /* EINTR or errno 512 */
	}
	return NULL;
}

static void start_selfcheck(struct workload *w, pthread_t th[3])
{
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };

	the_workload = w;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_rt;
	sigaction(SIGRTMIN + 1, &sa, NULL);
	if (pipe(w->read_pipe) < 0)
		exit(1);
	pthread_create(&th[0], NULL, regcheck_thread, w);
	pthread_create(&th[1], NULL, sleep_thread, w);
	pthread_create(&th[2], NULL, read_thread, w);
}

static void cmd_check(struct workload *w, bool selfcheck)
{
	if (!selfcheck) {
		printf("OK\n");
		return;
	}
	/* The blocked read must still get exactly what we send. */
	int before = atomic_load(&w->read_got);
	if (write(w->read_pipe[1], "x", 1) != 1)
		printf("ERR pipe\n");
	for (int i = 0; i < 2000 && atomic_load(&w->read_got) == before; i++)
		usleep(1000);
	printf("%s loops=%lu reg_bad=%lu sleep_bad=%lu read_bad=%lu read_ok=%d usr1=%lu rt=%lu\n",
	       (w->reg_bad || w->sleep_bad || w->read_bad ||
		atomic_load(&w->read_got) != before + 1) ? "ERR" : "OK",
	       atomic_load(&w->reg_loops), atomic_load(&w->reg_bad),
	       atomic_load(&w->sleep_bad), atomic_load(&w->read_bad),
	       atomic_load(&w->read_got) - before, atomic_load(&w->usr1), atomic_load(&w->rt));
}

static void range_cmd(struct region *r, const char *op, size_t first, size_t count)
{
	if ((first + count) * PG > r->len) {
		printf("ERR range\n");
		return;
	}
	uint8_t *a = r->addr + first * PG;
	int rc = 0;
	if (!strcmp(op, "zero"))
		memset(a, 0, count * PG);
	else
		rc = madvise(a, count * PG, !strcmp(op, "dontneed") ? MADV_DONTNEED : MADV_REMOVE);
	if (rc < 0)
		printf("ERR %s\n", strerror(errno));
	else
		printf("OK\n");
}

static void cmd_mremap(struct region *r)
{
	/* Reserve a new, 2 MiB aligned place (hugetlb needs it) and move. */
	size_t al = 2UL << 20;
	uint8_t *raw = mmap(NULL, r->len + 2 * al, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) {
		printf("ERR %s\n", strerror(errno));
		return;
	}
	uint8_t *dst = (uint8_t *)(((uintptr_t)raw + 2 * al - 1) & ~(al - 1));
	void *p = mremap(r->addr, r->len, r->len, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	if (p == MAP_FAILED) {
		printf("ERR %s\n", strerror(errno));
		return;
	}
	r->addr = p;
	printf("OK %lx %lx\n", (unsigned long)r->addr, (unsigned long)(r->addr + r->len));
}

static void cmd_fork(struct workload *w)
{
	int p[2];
	if (pipe(p) < 0) {
		printf("ERR pipe\n");
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		/* The child writes its own copy (COW), then waits to be reaped. */
		for (int i = 0; i < w->n; i++)
			for (size_t o = 0; o < w->r[i].len; o += 16 * PG)
				w->r[i].addr[o] ^= 0x5a;
		char c = 1;
		if (write(p[1], &c, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	char c;
	close(p[1]); /* a child that dies must end our read */
	p[1] = -1;
	if (pid < 0 || read(p[0], &c, 1) != 1) {
		printf("ERR fork\n");
	} else {
		w->child = pid;
		printf("OK %d\n", (int)pid);
	}
	close(p[0]);
}

/* "start" or "stop" a thread that runs while *on. */
static void start_stop(const char *how, atomic_bool *on, pthread_t *th, void *(*fn)(void *),
		       struct workload *w)
{
	if (!strcmp(how, "start") && !atomic_load(on)) {
		atomic_store(on, true);
		pthread_create(th, NULL, fn, w);
	} else if (!strcmp(how, "stop") && atomic_load(on)) {
		atomic_store(on, false);
		pthread_join(*th, NULL);
	}
}

static char **exec_argv; /* main's, for "exec" */

static void handle(struct workload *w, char *line, bool selfcheck)
{
	char cmd[32] = "", a[64] = "", b[64] = "", c[64] = "";
	int n = sscanf(line, "%31s %63s %63s %63s", cmd, a, b, c);
	struct region *r = n >= 2 ? find(w, a) : NULL;

	if (n < 1)
		return;
	if (!strcmp(cmd, "regions")) {
		for (int i = 0; i < w->n; i++)
			printf("REGION %s %s %lx %lx\n", w->r[i].name, w->r[i].kind,
			       (unsigned long)w->r[i].addr,
			       (unsigned long)(w->r[i].addr + w->r[i].len));
		printf("OK %d\n", w->n);
	} else if (!strcmp(cmd, "check")) {
		cmd_check(w, selfcheck);
	} else if (!strcmp(cmd, "churn")) {
		start_stop(a, &w->churn_on, &w->churner, churn_thread, w);
		printf("OK %lu\n", atomic_load(&w->churned));
	} else if (!strcmp(cmd, "exec")) {
		printf("OK\n");
		fflush(stdout);
		execv("/proc/self/exe", exec_argv);
		printf("ERR exec: %s\n", strerror(errno));
	} else if (!strcmp(cmd, "busy")) {
		printf("OK %lu\n", atomic_load(&w->busy_loops));
	} else if (!strcmp(cmd, "fork")) {
		cmd_fork(w);
	} else if (!strcmp(cmd, "reapchild")) {
		if (w->child > 0) {
			kill(w->child, SIGKILL);
			waitpid(w->child, NULL, 0);
			w->child = 0;
		}
		printf("OK\n");
	} else if (!strcmp(cmd, "ticker")) {
		start_stop(a, &w->ticker_on, &w->ticker, ticker_thread, w);
		printf("OK %lu\n", atomic_load(&w->ticker_max_us));
	} else if (!strcmp(cmd, "writer")) {
		start_stop(a, &w->writer_on, &w->writer, writer_thread, w);
		printf("OK %lu\n", atomic_load(&w->writer_pages));
	} else if (!strcmp(cmd, "mmap") && n == 4) {
		int rc = add_region(w, a, b, parse_size(c));
		if (rc < 0) {
			printf("ERR %s\n", strerror(-rc));
		} else {
			r = &w->r[w->n - 1];
			printf("OK %lx %lx\n", (unsigned long)r->addr, (unsigned long)(r->addr + r->len));
		}
	} else if (!r) {
		printf("ERR no region %s\n", a);
	} else if ((!strcmp(cmd, "write") || !strcmp(cmd, "poke")) && n == 4) {
		cmd_write(w, r, strtoull(b, NULL, 0), strtoull(c, NULL, 0), cmd[0] == 'p');
	} else if (!strcmp(cmd, "writeall")) {
		uint64_t s = w->seed + 99;
		for (size_t o = 0; o < r->len; o += PG)
			random_page(r->addr + o, &s);
		printf("OK\n");
	} else if ((!strcmp(cmd, "zero") || !strcmp(cmd, "dontneed") ||
		    !strcmp(cmd, "remove")) && n == 4) {
		range_cmd(r, cmd, strtoull(b, NULL, 0), strtoull(c, NULL, 0));
	} else if (!strcmp(cmd, "munmap")) {
		munmap(r->addr, r->len);
		drop_region(w, r);
		printf("OK\n");
	} else if (!strcmp(cmd, "mremap")) {
		cmd_mremap(r);
	} else if (!strcmp(cmd, "mprotect") && n == 3) {
		int rc = mprotect(r->addr, r->len, !strcmp(b, "ro") ? PROT_READ : PROT_READ | PROT_WRITE);
		printf(rc ? "ERR mprotect\n" : "OK\n");
	} else if (!strcmp(cmd, "sum")) {
		printf("OK %016" PRIx64 "\n", fnv(r->addr, r->len));
	} else {
		printf("ERR unknown command\n");
	}
}

int main(int argc, char **argv)
{
	static struct workload w = { .seed = 42, .populate_pct = 60 };
	bool selfcheck = false;
	pthread_t th[3], busy;
	char line[512];
	int n_busy = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	exec_argv = argv;
	const char *kinds[MAX_REGIONS];
	size_t sizes[MAX_REGIONS], n = 0;

	/* Every option first: --populate and --seed apply to all regions. */
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i];
		if (!strcmp(o, "--selfcheck")) {
			selfcheck = true;
		} else if (!strcmp(o, "--seed") && i + 1 < argc) {
			w.seed = strtoull(argv[++i], NULL, 0);
		} else if (!strcmp(o, "--random")) {
			w.all_random = true;
		} else if (!strcmp(o, "--busy") && i + 1 < argc) {
			n_busy = atoi(argv[++i]);
		} else if (!strcmp(o, "--populate") && i + 1 < argc) {
			w.populate_pct = (unsigned)atoi(argv[++i]);
		} else if (!strncmp(o, "--", 2) && i + 1 < argc && n < MAX_REGIONS) {
			kinds[n] = o + 2;
			sizes[n++] = parse_size(argv[++i]);
		} else {
			fprintf(stderr, "usage: workload [--KIND SIZE]... [--populate PCT] "
					"[--seed N] [--random] [--selfcheck] [--busy N]\n");
			return 2;
		}
	}
	for (size_t i = 0; i < n; i++) {
		int rc = add_region(&w, kinds[i], kinds[i], sizes[i]);
		if (rc < 0) {
			printf("ERR %s: %s\n", kinds[i], strerror(-rc));
			return rc == -ENOMEM ? 77 : 1;
		}
	}
	for (; n_busy > 0; n_busy--)
		pthread_create(&busy, NULL, busy_thread, &w);
	if (selfcheck)
		start_selfcheck(&w, th);
	printf("READY %d\n", (int)getpid());
	while (fgets(line, sizeof(line), stdin)) {
		if (!strncmp(line, "quit", 4))
			break;
		handle(&w, line, selfcheck);
	}
	if (w.child > 0) {
		kill(w.child, SIGKILL);
		waitpid(w.child, NULL, 0);
	}
	return 0;
}
