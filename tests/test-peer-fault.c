// SPDX-License-Identifier: GPL-2.0-only
/*
 * Faults between two daemons, injected by tests/peer-proxy.c: connections
 * dropped at random points, stalls, a 1 MB/s link, flipped bits, truncated
 * and duplicated frames.  In every case and after every checkpoint:
 *  - no corrupt page is committed: each generation the receiver holds
 *    verifies and equals the source process's memory at that checkpoint,
 *    and a failed checkpoint leaves no generation (nor temp file) behind;
 *  - the source process runs on, its memory (workload `sum`) unchanged by
 *    us;
 *  - the checkpoint succeeds (after retries) or fails with a clear error;
 *  - both daemons' memory stays bounded (RSS printed and checked).
 *
 *   test-peer-fault drop|drop-all|stall|throttle|flip|truncate|dup|slow
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peer-harness.h"
#include "basic/util.h"

#define RSS_LIMIT_KIB (128 * 1024) /* peak; the workloads map 20 MiB */

static const char *const wl_default[] = { "--populate", "100", "--anon", "16M", "--memfd",
					  "4M", NULL };
static const char *const wl_small[] = { "--populate", "100", "--anon", "3M", "--memfd", "1M",
					NULL };

struct rig {
	struct pd rx, tx;
	struct proxy px;
	struct wl w;
	char dir[64], key[192], rx_addr[128], px_addr[128];
	uint64_t committed[16];
	int n_committed;
};

static void sums(struct wl *w, char *buf, size_t len)
{
	char a[64] = "", m[64] = "";

	CHECK(wl_cmd(w, a, sizeof(a), "sum anon") == 0 && wl_cmd(w, m, sizeof(m), "sum memfd") == 0,
	      "sum: %s %s", a, m);
	snprintf(buf, len, "%.20s %.20s", a, m);
}

static int rig_start(struct rig *g, const char *mode, const char *tx_extra,
		     const char *const *wl_args)
{
	int r;

	require_tracking();
	snprintf(g->dir, sizeof(g->dir), "/tmp/wpmig-fault.XXXXXX");
	if (!mkdtemp(g->dir) || pk_make(g->key, sizeof(g->key)) < 0)
		return -errno;
	snprintf(g->rx_addr, sizeof(g->rx_addr), "unix:%s/rx.sock", g->dir);
	snprintf(g->px_addr, sizeof(g->px_addr), "unix:%s/px.sock", g->dir);
	if ((r = pd_start(&g->rx, g->key, g->rx_addr, "", NULL)) < 0 ||
	    (r = pd_start(&g->tx, g->key, NULL, tx_extra, NULL)) < 0 ||
	    (r = proxy_start(&g->px, g->px_addr, g->rx_addr, mode)) < 0)
		return r;
	r = wl_start(&g->w, wl_args);
	if (r < 0)
		SKIP("cannot start the workload: %s", strerror(-r));
	return 0;
}

static bool has_temp(struct rig *g)
{
	char *cmd = xstrdup_printf("ls -A %s/images/s 2>/dev/null | grep -q '^\\.tmp-'",
				   g->rx.d.state);
	bool found = system(cmd) == 0;

	free(cmd);
	return found;
}

/* One checkpoint through the proxy and everything we expect of it. */
static bool round_trip(struct rig *g, bool must_succeed)
{
	char before[64], after[64];
	struct ckres r;
	uint64_t gens[16];

	sums(&g->w, before, sizeof(before));
	pd_checkpoint(&g->tx, g->w.pid, g->px_addr, "s", true, NULL, &r);
	if (r.rc == 0) {
		uint64_t want = g->n_committed ? g->committed[g->n_committed - 1] : 0;
		long bad = pd_compare(&g->rx, "s", r.generation, g->w.pid);

		CHECK(bad == 0, "generation %llu: %ld pages differ", (unsigned long long)r.generation,
		      bad);
		CHECK(r.parent == want || r.parent == 0, "generation %llu over %llu, want %llu",
		      (unsigned long long)r.generation, (unsigned long long)r.parent,
		      (unsigned long long)want);
		if (g->n_committed < 16)
			g->committed[g->n_committed++] = r.generation;
		fprintf(stderr, "generation %llu: %llu bytes in %.0f ms\n",
			(unsigned long long)r.generation, (unsigned long long)r.bytes, r.duration_ms);
	} else {
		CHECK(!must_succeed, "checkpoint failed: %s", r.err);
		CHECK(r.rc == 1 && strstr(r.err, "checkpoint of pid") &&
		      (strstr(r.err, "gave up after") || strstr(r.err, "refused")),
		      "unclear failure: %d %s", r.rc, r.err);
		fprintf(stderr, "failed as allowed: %s", r.err);
	}
	kill(g->w.pid, SIGCONT);
	CHECK(kill(g->w.pid, 0) == 0, "the source process is gone");
	sums(&g->w, after, sizeof(after));
	CHECK(!strcmp(before, after), "memory changed under the process: %s -> %s", before, after);
	CHECK(pd_generations(&g->rx, "s", gens, 16) == g->n_committed,
	      "receiver holds a generation the source does not know committed");
	return r.rc == 0;
}

static void rig_finish(struct rig *g)
{
	long rx = pd_hwm(&g->rx), tx = pd_hwm(&g->tx);
	bool temp = true;

	for (int i = 0; i < g->n_committed; i++)
		CHECK(pd_verify(&g->rx, "s", g->committed[i]) == 0, "verify %llu",
		      (unsigned long long)g->committed[i]);
	for (int i = 0; i < 100 && (temp = has_temp(g)); i++)
		usleep(20000); /* a dropped generation is aborted when its tasks end */
	CHECK(!temp, "temp files left in the receiver's store");
	fprintf(stderr, "peak RSS: source %ld KiB, receiver %ld KiB (limit %d); now %ld, %ld\n", tx,
		rx, RSS_LIMIT_KIB, pd_rss(&g->tx), pd_rss(&g->rx));
	CHECK(tx > 0 && tx < RSS_LIMIT_KIB && rx > 0 && rx < RSS_LIMIT_KIB, "memory not bounded");
	CHECK(kill(g->rx.d.pid, 0) == 0 && kill(g->tx.d.pid, 0) == 0, "a daemon died");
	wl_stop(&g->w);
	proxy_stop(&g->px);
	pd_cleanup(&g->tx);
	pd_cleanup(&g->rx);
	char *cmd = xstrdup_printf("rm -rf %s", g->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", g->dir);
	free(cmd);
}

static void churn(struct rig *g, int round)
{
	CHECK(wl_cmd(&g->w, NULL, 0, "write anon 200 %d", round) == 0, "write");
	CHECK(wl_cmd(&g->w, NULL, 0, "poke anon 400 %d", round + 50) == 0, "poke");
	CHECK(wl_cmd(&g->w, NULL, 0, "write memfd 30 %d", round) == 0, "write memfd");
}

/* The fault must have happened: the proxy (and the receiver) say so. */
static void saw(const char *log, const char *marker)
{
	char *text = NULL;

	if (!marker)
		return;
	CHECK(read_full_file(log, &text, NULL) == 0 && strstr(text, marker),
	      "\"%s\" not in %s", marker, log);
	free(text);
}

static void scenario(const char *mode, const char *tx_extra, const char *const *wl, int rounds,
		     bool must_succeed, const char *px_marker, const char *rx_marker)
{
	struct rig g = { 0 };
	int r = rig_start(&g, mode, tx_extra, wl);

	CHECK(r == 0, "rig: %s", strerror(-r));
	for (int i = 1; r == 0 && i <= rounds; i++) {
		round_trip(&g, must_succeed);
		churn(&g, i);
	}
	if (r == 0)
		round_trip(&g, must_succeed);
	saw(g.px.log, px_marker);
	saw(g.rx.d.log, rx_marker);
	rig_finish(&g);
}

static void test_drop(void)
{
	/* Three connections reset at random points; the fourth attempt is clean. */
	scenario("conns=3,drop=20000-3000000,seed=11", "", wl_default, 2, true, "dropping at",
		 "dropped");
}

static void test_drop_all(void)
{
	/* Every connection reset: a clear failure, nothing committed, then a
	 * clean path again (the proxy's later connections are faulty too, so
	 * only the failures are checked). */
	scenario("conns=1000,drop=5000-400000,seed=5", "", wl_small, 0, false, "dropping at",
		 NULL);
}

static void test_stall(void)
{
	/* Shorter than the timeout: the same connection carries on. */
	scenario("stall=300000:700", "peer_timeout = 2", wl_default, 1, true, "stalling", NULL);
	/* Longer: the source times out, reconnects, redoes the generation. */
	scenario("stall=300000:5000", "peer_timeout = 2", wl_default, 1, true, "conn 2: open",
		 "superseded");
}

static void test_throttle(void)
{
	struct rig g = { 0 };
	struct ckres r;
	int rc = rig_start(&g, "rate=1000000,conns=1000", "", wl_small);

	CHECK(rc == 0, "rig");
	if (rc == 0) {
		pd_checkpoint(&g.tx, g.w.pid, g.px_addr, "s", true, NULL, &r);
		CHECK(r.rc == 0, "throttled checkpoint: %s", r.err);
		CHECK(r.rc || pd_compare(&g.rx, "s", r.generation, g.w.pid) == 0, "pages differ");
		CHECK(r.rc || r.duration_ms >= (double)r.bytes / 1e6 * 1000 * 0.7,
		      "%llu bytes in %.0f ms: not throttled", (unsigned long long)r.bytes,
		      r.duration_ms);
		fprintf(stderr, "at 1 MB/s: %llu bytes in %.0f ms\n", (unsigned long long)r.bytes,
			r.duration_ms);
		if (r.rc == 0)
			g.committed[g.n_committed++] = r.generation;
		kill(g.w.pid, SIGCONT);
		churn(&g, 1);
		round_trip(&g, true);
	}
	rig_finish(&g);
}

/* A receiver that reads too slowly for peer_timeout: the source says that
 * peer_timeout elapsed and what it waited for, not only that it closed. */
static void test_slow(void)
{
	struct rig g = { 0 };
	struct ckres r;
	int rc = rig_start(&g, "rate=100000,conns=1000", "peer_timeout = 2\n", wl_small);

	CHECK(rc == 0, "rig");
	if (rc == 0) {
		pd_checkpoint(&g.tx, g.w.pid, g.px_addr, "s", true, NULL, &r);
		fprintf(stderr, "at 100 kB/s with peer_timeout = 2: %s", r.err);
		CHECK(r.rc == 1 && strstr(r.err, "peer_timeout (2 s) elapsed waiting for "),
		      "source's error: %s", r.err);
		CHECK(!strstr(r.err, "closed by us"), "source's error: %s", r.err);
		CHECK(!wpmigd_log_has(&g.tx.d, "closed by us") &&
		      !wpmigd_log_has(&g.tx.d, "did not answer the handshake") &&
		      wpmigd_log_has(&g.tx.d, "Peer link: unix:"), "source's log (%s)", g.tx.d.log);
		kill(g.w.pid, SIGCONT);
	}
	rig_finish(&g);
}

static void test_flip(void)
{
	/* Caught by the frame MAC (before any page checksum is even needed). */
	scenario("conns=2,flip=2000-2500000,seed=3", "", wl_default, 1, true, "flipped",
		 "MAC mismatch");
}

static void test_truncate(void)
{
	scenario("truncate=9", "", wl_default, 1, true, "truncated", "dropped");
}

static void test_dup(void)
{
	scenario("dup=9", "", wl_default, 1, true, "duplicated", "MAC mismatch");
}

int main(int argc, char **argv)
{
	static const struct subtest tests[] = {
		{ "drop", test_drop }, { "drop-all", test_drop_all }, { "stall", test_stall },
		{ "throttle", test_throttle }, { "flip", test_flip }, { "truncate", test_truncate },
		{ "dup", test_dup }, { "slow", test_slow },
	};

	return run_subtests(argc, argv, tests, ARRAY_SIZE(tests));
}
