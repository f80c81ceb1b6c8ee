// SPDX-License-Identifier: GPL-2.0-only
/*
 * Checkpoints streamed between two real daemons over real sockets, from a
 * real workload: the receiver's export must equal the source process's
 * memory byte for byte (the process is left stopped while we compare).
 *
 *   test-peer tcp|unix|netns|restart|auth
 *
 * tcp: full + incremental generations over loopback TCP, status on both
 * sides.  unix: the same over a unix socket, with regions added and
 * removed, and sparse writes sent as deltas.  netns: across a veth pair
 * between two network namespaces, the default port.  restart: the
 * receiver killed with SIGKILL mid-generation and restarted.  auth: keys
 * refused, missing or different.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <json-c/json.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "peer-harness.h"
#include "basic/util.h"

static const char *const wl_args[] = { "--populate", "100", "--anon", "24M", "--memfd", "8M",
				       NULL };

static void start_wl(struct wl *w)
{
	int r = wl_start(w, wl_args);

	if (r < 0)
		SKIP("cannot start the workload: %s", strerror(-r));
}

static int64_t jint(json_object *o, const char *key)
{
	json_object *v;
	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : -1;
}

static size_t count_tasks(pid_t pid)
{
	char path[64];
	size_t n = 0;
	DIR *d;
	struct dirent *de;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	while (d && (de = readdir(d)))
		n += de->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

/* The receiver's image holds the state of exactly the (stopped) process's
 * threads: images show lists their ids. */
static void check_threads(struct pd *rx, const char *set, uint64_t gen, pid_t pid)
{
	char img[160], *out = NULL, path[64];
	json_object *root, *sets, *gens, *thr;
	size_t found = 0, listed = 0;

	snprintf(img, sizeof(img), "%s/%llu", set, (unsigned long long)gen);
	CHECK(CTL(&rx->d, &out, NULL, "--json", "images", "show", img) == 0, "show %s", img);
	root = out ? json_tokener_parse(out) : NULL;
	free(out);
	if (root && json_object_object_get_ex(root, "sets", &sets) &&
	    json_object_object_get_ex(json_object_array_get_idx(sets, 0), "generations", &gens)) {
		for (size_t i = 0; i < json_object_array_length(gens); i++) {
			json_object *g = json_object_array_get_idx(gens, i);
			if (jint(g, "number") != (int64_t)gen ||
			    !json_object_object_get_ex(g, "threads", &thr))
				continue;
			listed = json_object_array_length(thr);
			for (size_t k = 0; k < listed; k++) {
				snprintf(path, sizeof(path), "/proc/%d/task/%d", (int)pid,
					 (int)jint(json_object_array_get_idx(thr, k), "tid"));
				found += access(path, F_OK) == 0;
			}
		}
	}
	json_object_put(root);
	CHECK(listed > 0 && found == listed && listed == count_tasks(pid), "%s: %zu threads in "
	      "the image, %zu of them the process's, which has %zu", img, listed, found,
	      count_tasks(pid));
}

/* images show SET/GEN on p carries the checkpoint's pass table as it
 * stored it (the "passes" section): the same rows as the result's. */
static void check_passes(struct pd *p, const char *set, const struct ckres *res)
{
	char img[160], *out = NULL;
	json_object *root, *gen = NULL, *v;
	const char *shown = "";

	snprintf(img, sizeof(img), "%s/%llu", set, (unsigned long long)res->generation);
	CHECK(CTL(&p->d, &out, NULL, "--json", "images", "show", img) == 0, "show %s", img);
	root = out ? json_tokener_parse(out) : NULL;
	free(out);
	if (root && json_object_object_get_ex(root, "sets", &v) &&
	    json_object_object_get_ex(json_object_array_get_idx(v, 0), "generations", &v))
		for (size_t i = 0; i < json_object_array_length(v); i++)
			if (jint(json_object_array_get_idx(v, i), "number") == (int64_t)res->generation)
				gen = json_object_array_get_idx(v, i);
	json_object *rows = gen && json_object_object_get_ex(gen, "passes", &v) ? v : NULL;
	if (rows)
		shown = json_object_to_json_string_ext(rows, JSON_C_TO_STRING_PLAIN);
	size_t n = rows ? json_object_array_length(rows) : 0;
	json_object *last = n ? json_object_array_get_idx(rows, n - 1) : NULL;
	CHECK(n > 0 && last && json_object_object_get_ex(last, "final", &v) &&
	      json_object_get_boolean(v), "%s: %zu stored passes, the last one not frozen", img, n);
	CHECK(!strcmp(shown, res->pass_rows), "%s: stored passes %s\nresult's pass_rows %s", img,
	      shown, res->pass_rows);
	json_object_put(root);
}

/* Stream a generation leaving the target stopped, compare, let it run. */
static int stream(struct pd *tx, struct pd *rx, pid_t pid, const char *peer, const char *set,
		  struct ckres *res)
{
	int rc = pd_checkpoint(tx, pid, peer, set, true, NULL, res);

	CHECK(rc == 0, "checkpoint to %s: %s", peer, res->err);
	if (rc == 0) {
		long bad = pd_compare(rx, set, res->generation, pid);
		CHECK(bad == 0, "%s/%llu: %ld pages differ from the process", set,
		      (unsigned long long)res->generation, bad);
		CHECK(pd_verify(rx, set, res->generation) == 0, "verify %s/%llu", set,
		      (unsigned long long)res->generation);
		check_threads(rx, set, res->generation, pid);
		check_passes(rx, set, res);
	}
	kill(pid, SIGCONT);
	return rc;
}

static void churn(struct wl *w, int round)
{
	CHECK(wl_cmd(w, NULL, 0, "write anon 300 %d", round) == 0, "write");
	CHECK(wl_cmd(w, NULL, 0, "poke anon 500 %d", round + 100) == 0, "poke");
	CHECK(wl_cmd(w, NULL, 0, "zero anon %d 20", 100 + round * 40) == 0, "zero");
	CHECK(wl_cmd(w, NULL, 0, "dontneed anon %d 10", 1000 + round * 20) == 0, "dontneed");
	CHECK(wl_cmd(w, NULL, 0, "write memfd 50 %d", round) == 0, "write memfd");
}

static json_object *status_json(struct pd *p)
{
	char *out = NULL;
	json_object *o = NULL;

	if (CTL(&p->d, &out, NULL, "--json", "status") == 0)
		o = json_tokener_parse(out);
	free(out);
	return o;
}

static json_object *get(json_object *o, const char *k)
{
	json_object *v = NULL;
	return o && json_object_object_get_ex(o, k, &v) ? v : NULL;
}

static uint64_t ju(json_object *o, const char *k)
{
	return get(o, k) ? json_object_get_uint64(get(o, k)) : 0;
}

/* Both sides' status show the link, and agree on the bytes. */
static void check_links(struct pd *tx, struct pd *rx, const char *peer)
{
	json_object *a = status_json(tx), *b = status_json(rx);
	json_object *sess = json_object_array_get_idx(get(a, "sessions"), 0);
	json_object *link = get(sess, "link"), *in = json_object_array_get_idx(get(b, "links"), 0);
	const char *p = get(link, "peer") ? json_object_get_string(get(link, "peer")) : "";

	CHECK(!strcmp(p, peer), "source link peer '%s', want %s", p, peer);
	CHECK(ju(link, "bytes_sent") > 0 && ju(link, "bytes_sent") == ju(link, "bytes_acked"),
	      "source sent %llu, acked %llu", (unsigned long long)ju(link, "bytes_sent"),
	      (unsigned long long)ju(link, "bytes_acked"));
	CHECK(ju(in, "bytes_received") == ju(link, "bytes_sent"),
	      "receiver got %llu bytes, source sent %llu", (unsigned long long)ju(in, "bytes_received"),
	      (unsigned long long)ju(link, "bytes_sent"));
	CHECK(get(link, "ratio") && json_object_get_double(get(link, "ratio")) > 1.0,
	      "source ratio %s", json_object_to_json_string(link));
	CHECK(get(in, "ratio") && json_object_get_double(get(in, "ratio")) > 1.0,
	      "receiver ratio %s", json_object_to_json_string(in));
	fprintf(stderr, "source link: %s\nreceiver link: %s\n", json_object_to_json_string(link),
		json_object_to_json_string(in));
	json_object_put(a);
	json_object_put(b);
}

/* Full, then two increments; the third after regions come and go. */
static void full_and_incremental(struct pd *tx, struct pd *rx, const char *peer)
{
	struct ckres r1, r2, r3;
	struct wl w = { 0 };
	char reply[128];

	start_wl(&w);
	if (stream(tx, rx, w.pid, peer, "s", &r1) == 0)
		CHECK(r1.generation == 1 && r1.parent == 0, "first: %llu over %llu",
		      (unsigned long long)r1.generation, (unsigned long long)r1.parent);
	churn(&w, 1);
	if (stream(tx, rx, w.pid, peer, "s", &r2) == 0)
		CHECK(r2.parent == r1.generation && r2.bytes * 4 < r1.bytes,
		      "increment over %llu, %llu bytes (full: %llu)", (unsigned long long)r2.parent,
		      (unsigned long long)r2.bytes, (unsigned long long)r1.bytes);
	churn(&w, 2);
	CHECK(wl_cmd(&w, reply, sizeof(reply), "mmap extra anon 4M") == 0, "mmap: %s", reply);
	CHECK(wl_cmd(&w, NULL, 0, "munmap memfd") == 0, "munmap");
	if (stream(tx, rx, w.pid, peer, "s", &r3) == 0)
		CHECK(r3.parent == r2.generation, "third over %llu", (unsigned long long)r3.parent);
	/* the bandwidth cap: 4 MB of random pages at 4 MB/s take about a second */
	struct ckres r4;
	CHECK(wl_cmd(&w, NULL, 0, "write anon 1000 77") == 0, "write");
	if (pd_checkpoint(tx, w.pid, peer, "s", false, "--max-bandwidth 4M", &r4) == 0)
		CHECK(r4.duration_ms >= (double)r4.bytes / 4194304.0 * 1000 * 0.7,
		      "--max-bandwidth 4M: %llu bytes in %.0f ms", (unsigned long long)r4.bytes,
		      r4.duration_ms);
	else
		CHECK(0, "capped checkpoint: %s", r4.err);
	fprintf(stderr, "capped at 4 MiB/s: %llu bytes in %.0f ms\n", (unsigned long long)r4.bytes,
		r4.duration_ms);
	check_links(tx, rx, peer);
	CHECK(pd_verify(rx, "s", 1) == 0, "generation 1 after the others");
	/* The local store keeps the same pass table as a receiver. */
	struct ckres rl;
	CHECK(pd_checkpoint(tx, w.pid, NULL, "local", false, NULL, &rl) == 0, "local: %s", rl.err);
	check_passes(tx, "local", &rl);
	fprintf(stderr, "bytes on the wire: full %llu, increments %llu and %llu\n",
		(unsigned long long)r1.bytes, (unsigned long long)r2.bytes,
		(unsigned long long)r3.bytes);
	wl_stop(&w);
}

static void with_pair(const char *listen, const char *peer, const char *rx_ns,
		      const char *tx_ns)
{
	struct pd rx = { 0 }, tx = { 0 };
	char key[192];

	require_tracking();
	CHECK(pk_make(key, sizeof(key)) == 0, "key");
	CHECK(pd_start(&rx, key, listen, "", rx_ns) == 0, "receiver start (log %s)", rx.d.log);
	CHECK(pd_start(&tx, key, NULL, "", tx_ns) == 0, "source start (log %s)", tx.d.log);
	if (!test_failures)
		full_and_incremental(&tx, &rx, peer);
	fprintf(stderr, "RSS: source %ld KiB, receiver %ld KiB\n", pd_rss(&tx), pd_rss(&rx));
	/* The process is gone, and so is the source's link: the receiver is
	 * idle again and must be as small (design: idle RSS under 10 MiB). */
	long rss = pd_rss(&rx);
	for (int i = 0; i < 150 && rss >= 10 * 1024 && daemon_memory_judged(); i++) {
		usleep(20000);
		rss = pd_rss(&rx);
	}
	fprintf(stderr, "receiver RSS once idle: %ld KiB\n", rss);
	CHECK(rss > 0 && (!daemon_memory_judged() || rss < 10 * 1024),
	      "receiver RSS %ld KiB once idle (goal < 10 MiB)", rss);
	pd_cleanup(&tx);
	pd_cleanup(&rx);
}

static void test_tcp(void)
{
	char addr[64];

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
	with_pair(addr, addr, NULL, NULL);
}

static void test_unix(void)
{
	char dir[] = "/tmp/wpmig-unix.XXXXXX", addr[128];

	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	snprintf(addr, sizeof(addr), "unix:%s/peer.sock", dir);
	with_pair(addr, addr, NULL, NULL);
	rmdir(dir);
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

/* Two namespaces joined by a veth pair: the receiver in one, the source
 * in the other, the target process where the test runs. */
static void test_netns(void)
{
	int id = getpid() % 200 + 20;
	char a[32], b[32], listen[64];

	snprintf(a, sizeof(a), "wpmig-rx-%d", id);
	snprintf(b, sizeof(b), "wpmig-tx-%d", id);
	if (sh("ip netns add %s 2>/dev/null && ip netns add %s", a, b) != 0) {
		sh("ip netns del %s 2>/dev/null", a);
		SKIP("cannot create network namespaces");
	}
	int r = sh("ip link add wpr%d type veth peer name wpt%d && "
		   "ip link set wpr%d netns %s && ip link set wpt%d netns %s && "
		   "ip -n %s addr add 10.211.%d.1/24 dev wpr%d && ip -n %s link set wpr%d up && "
		   "ip -n %s link set lo up && "
		   "ip -n %s addr add 10.211.%d.2/24 dev wpt%d && ip -n %s link set wpt%d up && "
		   "ip -n %s link set lo up", id, id, id, a, id, b, a, id, id, a, id, a, b, id, id,
		   b, id, b);
	if (r != 0) {
		sh("ip netns del %s; ip netns del %s", a, b);
		SKIP("cannot set up the veth pair");
	}
	snprintf(listen, sizeof(listen), "10.211.%d.1", id); /* the default port */
	with_pair(listen, listen, a, b);
	sh("ip netns del %s; ip netns del %s", a, b);
}

struct bg {
	struct pd *tx;
	pid_t pid;
	const char *peer;
	const char *cap; /* --max-bandwidth, so the generation takes a while */
	struct ckres res;
	pthread_t th;
};

static void *bg_checkpoint(void *arg)
{
	struct bg *b = arg;

	pd_checkpoint(b->tx, b->pid, b->peer, "s", false, b->cap, &b->res);
	return NULL;
}

static bool has_temp_files(struct pd *p, const char *set)
{
	char *cmd = xstrdup_printf("ls -A %s/images/%s | grep -q '^\\.tmp-'", p->d.state, set);
	bool found = system(cmd) == 0;

	free(cmd);
	return found;
}

/* SIGKILL the receiver while a generation streams; what it committed
 * before survives, and the source carries on from there. */
static void test_restart(void)
{
	struct pd rx = { 0 }, tx = { 0 };
	struct ckres r1, r3;
	struct wl w = { 0 };
	char key[192], addr[64];
	uint64_t gens[8];

	require_tracking();
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
	CHECK(pk_make(key, sizeof(key)) == 0, "key");
	CHECK(pd_start(&rx, key, addr, "", NULL) == 0, "receiver start");
	CHECK(pd_start(&tx, key, NULL, "", NULL) == 0, "source start");
	start_wl(&w);
	stream(&tx, &rx, w.pid, addr, "s", &r1);
	CHECK(wl_cmd(&w, NULL, 0, "writeall anon") == 0, "writeall");
	struct bg b = { .tx = &tx, .pid = w.pid, .peer = addr, .cap = "--max-bandwidth 2M" };
	pthread_create(&b.th, NULL, bg_checkpoint, &b);
	CHECK(wpmigd_wait_log(&rx.d, "receiving generation 2", 10000), "generation 2 not begun");
	usleep(500000);
	kill(rx.d.pid, SIGKILL);
	waitpid(rx.d.pid, NULL, 0);
	rx.d.pid = 0;
	pthread_join(b.th, NULL);
	CHECK(b.res.rc == 1 && strstr(b.res.err, "gave up after") && strstr(b.res.err, addr),
	      "checkpoint with the receiver gone: %d %s", b.res.rc, b.res.err);
	fprintf(stderr, "with the receiver gone: %s", b.res.err);
	CHECK(pd_restart(&rx) == 0, "receiver restart");
	CHECK(pd_generations(&rx, "s", gens, 8) == 1 && gens[0] == 1, "generations after restart");
	CHECK(pd_verify(&rx, "s", 1) == 0, "generation 1 after the crash");
	CHECK(!has_temp_files(&rx, "s"), "temp files left after the restart");
	churn(&w, 3);
	if (stream(&tx, &rx, w.pid, addr, "s", &r3) == 0)
		CHECK(r3.parent == 1 && r3.generation == 2 && r3.pages < r1.pages,
		      "resumed: generation %llu over %llu, %llu pages", (unsigned long long)r3.generation,
		      (unsigned long long)r3.parent, (unsigned long long)r3.pages);
	/* SIGTERM mid-generation: a clean exit that drops it; restarted at
	 * once, the source's next attempt carries the generation through. */
	CHECK(wl_cmd(&w, NULL, 0, "write anon 2000 9") == 0, "write");
	b = (struct bg){ .tx = &tx, .pid = w.pid, .peer = addr,
			 .cap = "--max-bandwidth 8M --leave-stopped" };
	pthread_create(&b.th, NULL, bg_checkpoint, &b);
	CHECK(wpmigd_wait_log(&rx.d, "receiving generation 3", 10000), "generation 3 not begun");
	usleep(300000);
	kill(rx.d.pid, SIGTERM);
	CHECK(wait_exit(rx.d.pid, 10000) == 0, "receiver exit after SIGTERM mid-generation");
	rx.d.pid = 0;
	CHECK(!has_temp_files(&rx, "s"), "temp files left by a clean stop");
	CHECK(pd_restart(&rx) == 0, "receiver restart");
	pthread_join(b.th, NULL);
	CHECK(b.res.rc == 0 && b.res.parent == 2 && b.res.generation == 3,
	      "after the restart: %d, generation %llu over %llu: %s", b.res.rc,
	      (unsigned long long)b.res.generation, (unsigned long long)b.res.parent, b.res.err);
	CHECK(b.res.rc || pd_compare(&rx, "s", 3, w.pid) == 0, "generation 3 differs");
	kill(w.pid, SIGCONT);
	wl_stop(&w);
	pd_cleanup(&tx);
	pd_cleanup(&rx);
}

static void test_auth(void)
{
	struct pd rx = { 0 }, tx = { 0 }, bad = { 0 };
	struct ckres r;
	struct wl w = { 0 };
	char key[192], other[192], addr[64];

	require_tracking();
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
	CHECK(pk_make(key, sizeof(key)) == 0 && pk_make(other, sizeof(other)) == 0, "keys");
	/* listening without a key, or with one others may read: refused */
	CHECK(pd_start(&bad, NULL, addr, "", NULL) == -ECHILD, "listen without a key started");
	CHECK(wpmigd_log_has(&bad.d, "needs peer_key_file"), "no reason given (%s)", bad.d.log);
	wpmigd_cleanup(&bad.d);
	chmod(key, 0640);
	CHECK(pd_start(&bad, key, addr, "", NULL) == -ECHILD, "a readable key was taken");
	CHECK(wpmigd_log_has(&bad.d, "chmod 600"), "no reason given (%s)", bad.d.log);
	wpmigd_cleanup(&bad.d);
	chmod(key, 0600);
	CHECK(pd_start(&rx, key, addr, "", NULL) == 0, "receiver start");
	start_wl(&w);
	/* a source without a key, then one with another key */
	CHECK(pd_start(&tx, NULL, NULL, "", NULL) == 0, "keyless source start");
	CHECK(pd_checkpoint(&tx, w.pid, addr, "s", false, NULL, &r) == 1 &&
	      strstr(r.err, "peer_key_file"), "keyless source: %d %s", r.rc, r.err);
	pd_cleanup(&tx);
	CHECK(pd_start(&tx, other, NULL, "", NULL) == 0, "source start");
	CHECK(pd_checkpoint(&tx, w.pid, addr, "s", false, NULL, &r) == 1 &&
	      strstr(r.err, "authentication"), "wrong key: %d %s", r.rc, r.err);
	CHECK(pd_generations(&rx, "s", (uint64_t[1]){ 0 }, 1) == 0, "a generation from a wrong key");
	wl_stop(&w);
	pd_cleanup(&tx);
	pd_cleanup(&rx);
}

int main(int argc, char **argv)
{
	static const struct subtest tests[] = {
		{ "tcp", test_tcp }, { "unix", test_unix }, { "netns", test_netns },
		{ "restart", test_restart }, { "auth", test_auth },
	};

	return run_subtests(argc, argv, tests, ARRAY_SIZE(tests));
}
