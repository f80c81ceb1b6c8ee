// SPDX-License-Identifier: GPL-2.0-only
/*
 * The Linux guest's workload (static, run from the test's initramfs): fill
 * most of RAM with checkable pages of mixed content (guest-pages.h: a third
 * zero, text-like, random), then forever rewrite a hot part of them and
 * verify every page against the generation the program wrote last.  Serial
 * console lines:
 *
 *   RUN <run id> PAGES <n> HOT <h>     once, before filling
 *   FILL zero <z> text <t> random <r>  once, after filling
 *   OK <cycle>                         each time every page checked out
 *   BAD <address> index <i> gen <g>    a page that does not hold what it should
 *
 * Settings from the environment (the kernel passes unknown key=value boot
 * parameters to init): mc_mb (MiB of pages; default: all but 48 MiB of free
 * RAM), mc_hot (hot pages; default an eighth), mc_delay (busy iterations
 * after each page rewritten: a lower dirty rate).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "guest-pages.h"

struct mc {
	uint64_t run;
	uint32_t pages, hot, ntables;
	unsigned long delay;
	uint8_t *data, *tables;
};

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *s = getenv(name);

	return s && *s ? strtoull(s, NULL, 0) : def;
}

static uint32_t *gen_slot(struct mc *m, uint32_t i)
{
	uint8_t *t = m->tables + (size_t)(i / GP_TABLE_ENTRIES) * GP_PAGE;

	return (uint32_t *)(t + GP_HDR) + i % GP_TABLE_ENTRIES;
}

static int setup(struct mc *m)
{
	struct sysinfo si;
	struct timespec ts;
	uint64_t bytes;

	if (sysinfo(&si) < 0)
		return -1;
	bytes = (uint64_t)si.freeram * si.mem_unit;
	bytes = bytes > (96ull << 20) ? bytes - (48ull << 20) : bytes / 2;
	bytes = env_u64("mc_mb", bytes >> 20) << 20;
	m->pages = (uint32_t)(bytes / GP_PAGE);
	m->hot = (uint32_t)env_u64("mc_hot", m->pages / 8);
	if (m->hot > m->pages)
		m->hot = m->pages;
	m->delay = env_u64("mc_delay", 0);
	m->ntables = (m->pages + GP_TABLE_ENTRIES - 1) / GP_TABLE_ENTRIES;
	clock_gettime(CLOCK_REALTIME, &ts);
	m->run = gp_mix((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) | 1;
	m->data = mmap(NULL, (size_t)m->pages * GP_PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	m->tables = mmap(NULL, (size_t)m->ntables * GP_PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return m->data == MAP_FAILED || m->tables == MAP_FAILED ? -1 : 0;
}

static void fill(struct mc *m)
{
	uint32_t count[3] = { 0, 0, 0 };

	for (uint32_t t = 0; t < m->ntables; t++) {
		struct gp_hdr h = { GP_MAGIC_TABLE, m->run, t * GP_TABLE_ENTRIES,
				    GP_TABLE_ENTRIES, 0 };

		memcpy(m->tables + (size_t)t * GP_PAGE, &h, sizeof(h));
	}
	for (uint32_t i = 0; i < m->pages; i++) {
		gp_write(m->data + (size_t)i * GP_PAGE, m->run, i, 0);
		count[gp_kind_of(m->run, i)]++;
	}
	printf("FILL zero %u text %u random %u\n", count[GP_ZERO], count[GP_TEXT],
	       count[GP_RANDOM]);
}

static void rewrite(struct mc *m, uint32_t i)
{
	uint32_t *g = gen_slot(m, i);

	/* The page first, then its generation: a dump taken in between shows
	 * one page a generation ahead of the table, which the checker allows. */
	gp_write(m->data + (size_t)i * GP_PAGE, m->run, i, *g + 1);
	__atomic_store_n(g, *g + 1, __ATOMIC_RELEASE);
	for (volatile unsigned long d = 0; d < m->delay; d++)
		;
}

static void verify(struct mc *m, uint32_t i)
{
	uint8_t *p = m->data + (size_t)i * GP_PAGE;
	uint32_t gen = *gen_slot(m, i);

	if (gp_check(p, m->run, i, gen) < 0)
		printf("BAD %p index %u gen %u\n", (void *)p, i, gen);
}

int main(void)
{
	struct mc m = { 0 };
	uint32_t hot = 0, v = 0, cycle = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (setup(&m) < 0) {
		printf("SETUP FAILED\n");
		return 1;
	}
	printf("RUN %016" PRIx64 " PAGES %u HOT %u\n", m.run, m.pages, m.hot);
	fill(&m);
	for (;;) {
		/* Rewrite one hot page and verify one page, in turn. */
		if (m.hot) {
			rewrite(&m, hot);
			hot = hot + 1 < m.hot ? hot + 1 : 0;
		}
		verify(&m, v);
		if (++v == m.pages) {
			v = 0;
			printf("OK %u\n", ++cycle);
		}
	}
}
