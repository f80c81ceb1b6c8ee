// SPDX-License-Identifier: GPL-2.0-only
/*
 * The target of bench-pause: a process that sleeps most of the time, as a
 * real service does, with memory of the usual mix, and threads of two kinds.
 *
 *   pause-target MIB [SLEEPERS [SPINNERS]]
 *
 * Maps MIB MiB of anonymous memory, a third each zero, text-like and random
 * pages (tests/pagegen.h), then its main thread loops in usleep(100000) and
 * between sleeps reads its commands from stdin (non-blocking), answering one
 * line on stdout:
 *
 *   write N SEED   rewrite N distinct random pages whole with random bytes
 *   quit
 *
 * SLEEPERS more threads loop in usleep(100000); SPINNERS threads spin on the
 * CPU (each counts in a variable of its own).  It prints "READY" when filled.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pagegen.h"

#define PG 4096UL
#define MAX_THREADS 64

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		usleep(100000);
	return NULL;
}

static void *spinner(void *arg)
{
	atomic_ulong *count = arg;

	for (;;)
		atomic_fetch_add_explicit(count, 1, memory_order_relaxed);
	return NULL;
}

/* n distinct pages of npages, each rewritten whole: a random start and a
 * stride coprime with npages visit distinct pages. */
static void rewrite(uint8_t *mem, size_t npages, size_t n, uint64_t seed)
{
	uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
	size_t at = pg_rand(&s) % npages, stride = 7919; /* a prime */

	while (npages % stride == 0)
		stride += 2;
	for (size_t i = 0; i < n && i < npages; i++) {
		pg_fill_random(mem + at * PG, &s);
		at = (at + stride) % npages;
	}
}

/* One command line, if a whole one is buffered; 1 when it says quit. */
static int serve(uint8_t *mem, size_t npages, char *buf, size_t *have, size_t cap)
{
	ssize_t n;
	char *nl;

	if (*have >= cap - 1)
		*have = 0; /* a line too long for any command: drop it */
	n = read(0, buf + *have, cap - 1 - *have);

	if (n == 0)
		return 1; /* our parent went away */
	if (n > 0)
		*have += (size_t)n;
	buf[*have] = 0;
	while ((nl = strchr(buf, '\n'))) {
		unsigned long long cnt, seed;

		*nl = 0;
		if (!strcmp(buf, "quit"))
			return 1;
		if (sscanf(buf, "write %llu %llu", &cnt, &seed) == 2) {
			rewrite(mem, npages, cnt, seed);
			printf("OK %llu\n", cnt);
		} else {
			printf("ERR %s\n", buf);
		}
		fflush(stdout);
		*have -= (size_t)(nl + 1 - buf);
		memmove(buf, nl + 1, *have + 1);
	}
	return 0;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 64;
	int sleepers = argc > 2 ? atoi(argv[2]) : 0, spinners = argc > 3 ? atoi(argv[3]) : 0;
	static atomic_ulong counts[MAX_THREADS];
	size_t npages = (mib << 20) / PG, have = 0;
	char buf[256];
	uint64_t s = 42;
	pthread_t th;

	if (!mib || sleepers < 0 || spinners < 0 || sleepers + spinners > MAX_THREADS) {
		fprintf(stderr, "usage: pause-target MIB [SLEEPERS [SPINNERS]]\n");
		return 2;
	}
	uint8_t *mem = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		printf("ERR mmap: %s\n", strerror(errno));
		return 1;
	}
	for (size_t i = 0; i < npages; i++)
		pg_fill(mem + i * PG, (int)(pg_rand(&s) % 3), &s);
	for (int i = 0; i < sleepers; i++)
		pthread_create(&th, NULL, sleeper, NULL);
	for (int i = 0; i < spinners; i++)
		pthread_create(&th, NULL, spinner, &counts[i]);
	fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
	printf("READY\n");
	fflush(stdout);
	for (;;) {
		usleep(100000);
		if (serve(mem, npages, buf, &have, sizeof(buf)))
			return 0;
	}
}
