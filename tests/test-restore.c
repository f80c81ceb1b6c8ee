// SPDX-License-Identifier: GPL-2.0-only
/*
 * Restore through wpmigd and wpmig-ctl, against programs that check their
 * own state all the time (tests/restore-target.c) and exit 99 naming what
 * does not add up; a crash shows as a signal.
 *
 *   fork      a program forking a child every 2 ms, mostly in nanosleep
 *             (issue 13's crash): restored ROUNDS times, it must live and
 *             go on
 *   threads   a control thread in read(), workers in futex, epoll_wait,
 *             clock_nanosleep and one spinning: ROUNDS restores while it
 *             runs, and every fourth round an exact one: checkpoint while
 *             paused, run, pause, restore: every thread's counter must be
 *             the checkpoint's exactly
 *   malloc    malloc/free churn with a running checksum of the heap: the
 *             same rounds; the heap checksum must be the checkpoint's
 *   refuse    a thread created or exited since the checkpoint, a mapping
 *             added or removed: refused, naming it, the process untouched
 *   memory    --memory-only where it is safe (the process waits where it
 *             waited at the checkpoint): memory restored, a warning
 *   tmpfile   a decoded image too large for memory goes to a temporary file
 *   damaged   a damaged image or thread state: refused, nothing changed
 *
 * ROUNDS is $WPMIG_RESTORE_ROUNDS, 200 by default (CI); a longer run:
 *   WPMIG_RESTORE_ROUNDS=2000 meson test -C build --suite restore
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wpmigd-harness.h"
#include "basic/util.h"
#include "store/format.h"

/* ---- the target program ---- */

struct rt {
	pid_t pid;
	int in, out;
	uint64_t shared; /* address of its struct shared */
	char buf[4096];
	size_t have;
	char stderr_path[256];
};

static int rt_line(struct rt *t, char *line, size_t len, int ms)
{
	for (;;) {
		char *nl = memchr(t->buf, '\n', t->have);

		if (nl) {
			size_t n = (size_t)(nl - t->buf);
			snprintf(line, len, "%.*s", (int)n, t->buf);
			t->have -= n + 1;
			memmove(t->buf, nl + 1, t->have);
			return 0;
		}
		struct pollfd p = { t->out, POLLIN, 0 };
		if (poll(&p, 1, ms) <= 0)
			return -ETIMEDOUT;
		ssize_t r = read(t->out, t->buf + t->have, sizeof(t->buf) - 1 - t->have);
		if (r <= 0)
			return -EPIPE;
		t->have += (size_t)r;
	}
}

static void rt_start(struct rt *t, const char *mode, const char *dir)
{
	const char *bin = test_bin("WPMIG_RESTORE_TARGET", "restore-target");
	int in[2], out[2];
	char line[128];

	*t = (struct rt){ 0 };
	snprintf(t->stderr_path, sizeof(t->stderr_path), "%s/target-%s.err", dir, mode);
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
		SKIP("pipe: %s", strerror(errno));
	t->pid = fork();
	if (t->pid == 0) {
		int err = open(t->stderr_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(in[0], 0);
		dup2(out[1], 1);
		if (err >= 0)
			dup2(err, 2);
		execl(bin, bin, mode, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	t->in = in[1];
	t->out = out[0];
	CHECK(rt_line(t, line, sizeof(line), 5000) == 0 && !strncmp(line, "READY ", 6),
	      "%s: no READY", bin);
	t->shared = strtoull(line + 6, NULL, 16);
}

/* Died?  Then say how, with what it printed. */
static bool rt_dead(struct rt *t)
{
	int status;
	char *err = NULL;

	if (waitpid(t->pid, &status, WNOHANG) != t->pid)
		return false;
	read_full_file(t->stderr_path, &err, NULL);
	if (WIFSIGNALED(status))
		CHECK(0, "the target was killed by signal %d: %s", WTERMSIG(status), err ? err : "");
	else
		CHECK(0, "the target exited with %d: %s", WEXITSTATUS(status), err ? err : "");
	free(err);
	t->pid = 0;
	return true;
}

/* Send a command; reply gets its answer line. */
static int rt_cmd(struct rt *t, const char *cmd, char *reply, size_t len)
{
	char line[256];
	int n = snprintf(line, sizeof(line), "%s\n", cmd);

	if (write(t->in, line, (size_t)n) != n)
		return -EPIPE;
	int r = rt_line(t, reply, len, 10000);
	if (r < 0)
		CHECK(!rt_dead(t) && 0, "no answer to %s: %s", cmd, strerror(-r));
	return r;
}

static uint64_t rt_progress(struct rt *t)
{
	char path[64];
	uint64_t v = 0;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/mem", (int)t->pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || pread(fd, &v, sizeof(v), (off_t)(t->shared + 8)) != sizeof(v))
		v = 0;
	if (fd >= 0)
		close(fd);
	return v;
}

static void rt_stop(struct rt *t)
{
	if (t->pid > 0) {
		kill(t->pid, SIGKILL);
		waitpid(t->pid, NULL, 0);
	}
	close(t->in);
	close(t->out);
}

/* ---- wpmig-ctl ---- */

struct res {
	int rc;
	json_object *o;
	char err[1024];
};

static struct res ctl_json(struct wpmigd *d, const char *const *args)
{
	const char *argv[16] = { "--json" };
	char *out = NULL, *err = NULL;
	struct res r = { 0 };
	size_t n = 1;

	for (; args[n - 1] && n < 15; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	r.rc = ctl_run(d->sock, &out, &err, argv);
	r.o = r.rc == 0 && out ? json_tokener_parse(out) : NULL;
	snprintf(r.err, sizeof(r.err), "%s", err ? err : "");
	free(out);
	free(err);
	return r;
}

static uint64_t checkpoint(struct wpmigd *d, pid_t pid)
{
	char p[16];
	snprintf(p, sizeof(p), "%d", (int)pid);
	struct res r = ctl_json(d, (const char *const[]){ "checkpoint", p, "--set", "r", NULL });
	uint64_t gen = ju64(r.o, "generation");

	CHECK(r.rc == 0 && gen, "checkpoint: %s", r.err);
	json_object_put(r.o);
	return gen;
}

struct pauses {
	double *v;
	size_t n;
	uint64_t written;
};

static struct res restore(struct wpmigd *d, pid_t pid, uint64_t gen, const char *extra)
{
	char p[16], img[32];

	snprintf(p, sizeof(p), "%d", (int)pid);
	snprintf(img, sizeof(img), "r/%llu", (unsigned long long)gen);
	return ctl_json(d, (const char *const[]){ "restore", p, img, extra, NULL });
}

static bool restore_ok(struct wpmigd *d, struct rt *t, uint64_t gen, struct pauses *ps)
{
	struct res r = restore(d, t->pid, gen, NULL);

	CHECK(r.rc == 0, "restore r/%llu: %s", (unsigned long long)gen, r.err);
	if (r.rc == 0) {
		CHECK(ju64(r.o, "threads") > 0, "no thread state put back");
		ps->v[ps->n++] = jdbl(r.o, "pause_ms");
		ps->written += ju64(r.o, "pages");
	}
	json_object_put(r.o);
	return r.rc == 0 && !rt_dead(t);
}

static int rounds(void)
{
	const char *e = getenv("WPMIG_RESTORE_ROUNDS");
	int n = e ? atoi(e) : 200;

	return n > 0 ? n : 200;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *what, struct pauses *ps)
{
	if (!ps->n)
		return;
	qsort(ps->v, ps->n, sizeof(*ps->v), cmp_dbl);
	fprintf(stderr, "%s: %zu restores, %llu pages written back, pause median %.2f ms, "
		"90th %.2f ms, max %.2f ms\n", what, ps->n, (unsigned long long)ps->written,
		ps->v[ps->n / 2], ps->v[ps->n * 9 / 10], ps->v[ps->n - 1]);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

static void start_daemon(struct wpmigd *d, const char *const *env)
{
	require_tracking();
	CHECK(wpmigd_start(d, "", env) == 0, "daemon start");
}

/* ---- subtests ---- */

static void test_fork(void)
{
	struct wpmigd d = { 0 };
	struct rt t;
	int n = rounds();
	struct pauses ps = { calloc((size_t)n, sizeof(double)), 0, 0 };
	uint64_t gen = 0, seed = (uint64_t)time(NULL);

	start_daemon(&d, NULL);
	rt_start(&t, "fork", d.dir);
	fprintf(stderr, "fork: %d rounds (seed %llu)\n", n, (unsigned long long)seed);
	for (int i = 0; i < n && t.pid; i++) {
		if (i % 5 == 0)
			gen = checkpoint(&d, t.pid);
		sleep_ms((unsigned)((seed = seed * 6364136223846793005ULL + 1) >> 59));
		if (!restore_ok(&d, &t, gen, &ps))
			break;
		/* it goes on: a step in 2 ms, forking each time */
		uint64_t p0 = rt_progress(&t);
		for (int k = 0; k < 200 && rt_progress(&t) == p0 && !rt_dead(&t); k++)
			sleep_ms(5);
		CHECK(!t.pid || rt_progress(&t) > p0, "round %d: no progress after the restore", i);
	}
	report("fork", &ps);
	CHECK(ps.n == (size_t)n, "only %zu of %d restores", ps.n, n);
	rt_stop(&t);
	free(ps.v);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit");
	wpmigd_cleanup(&d);
}

/* "PAUSED p s c0 .. c4" and "STATE p s c0 .. c4": the same numbers? */
static bool same_state(const char *a, const char *b)
{
	const char *x = strchr(a, ' '), *y = strchr(b, ' ');
	return x && y && !strcmp(x, y);
}

/*
 * Rounds against a running program, every fourth exact: checkpoint while
 * paused, resume, run, pause, restore: the state must be the checkpoint's.
 */
static void busy_rounds(const char *mode, const char *const *env, const char *log_want)
{
	struct wpmigd d = { 0 };
	struct rt t;
	int n = rounds();
	struct pauses ps = { calloc((size_t)n, sizeof(double)), 0, 0 };
	uint64_t gen = 0, seed = (uint64_t)time(NULL);
	char then[256], now[256];
	int exact = 0;

	start_daemon(&d, env);
	rt_start(&t, mode, d.dir);
	fprintf(stderr, "%s: %d rounds (seed %llu)\n", mode, n, (unsigned long long)seed);
	for (int i = 0; i < n && t.pid; i++) {
		unsigned wait = (unsigned)((seed = seed * 6364136223846793005ULL + 1) >> 59);

		if (i % 4 == 3) {
			uint64_t g;
			if (rt_cmd(&t, "pause", then, sizeof(then)) < 0)
				break;
			g = checkpoint(&d, t.pid);
			uint64_t p0 = rt_progress(&t);
			rt_cmd(&t, "resume", now, sizeof(now));
			sleep_ms(wait);
			/* a loaded box may not have run it yet: wait for a step */
			for (int k = 0; k < 400 && rt_progress(&t) == p0; k++)
				sleep_ms(5);
			rt_cmd(&t, "pause", now, sizeof(now));
			CHECK(!same_state(then, now), "round %d: nothing ran between: %s", i, now);
			if (!restore_ok(&d, &t, g, &ps) || rt_cmd(&t, "state", now, sizeof(now)) < 0)
				break;
			CHECK(same_state(then, now), "round %d: checkpoint '%s', after restore '%s'",
			      i, then, now);
			exact++;
			rt_cmd(&t, "resume", now, sizeof(now));
			continue;
		}
		if (i % 4 == 0)
			gen = checkpoint(&d, t.pid);
		sleep_ms(wait);
		if (!restore_ok(&d, &t, gen, &ps) || rt_cmd(&t, "state", now, sizeof(now)) < 0)
			break;
		CHECK(!strncmp(now, "STATE ", 6), "round %d: answer '%s'", i, now);
	}
	/* still sound after all that: its own checks ran meanwhile */
	sleep_ms(100);
	CHECK(t.pid && !rt_dead(&t) && rt_cmd(&t, "state", now, sizeof(now)) == 0, "at the end");
	if (log_want)
		CHECK(wpmigd_log_has(&d, log_want), "the daemon's log lacks '%s'", log_want);
	report(mode, &ps);
	fprintf(stderr, "%s: %d exact rounds: every thread's counter%s equal to the "
		"checkpoint's\n", mode, exact, !strcmp(mode, "malloc") ? " and the heap checksum" : "");
	CHECK(ps.n == (size_t)n, "only %zu of %d restores", ps.n, n);
	rt_stop(&t);
	free(ps.v);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit");
	wpmigd_cleanup(&d);
}

static void test_threads(void)
{
	busy_rounds("threads", NULL, NULL);
}

static void test_malloc(void)
{
	busy_rounds("malloc", NULL, NULL);
}

/* A decoded image above 1 MiB goes to a temporary file. */
static void test_tmpfile(void)
{
	static const char *const env[] = { "WPMIGD_DEBUG_RESTORE_MEM_MAX=1M", NULL };
	setenv("WPMIG_RESTORE_ROUNDS", "24", 0);
	busy_rounds("malloc", env, "decoded into a temporary file");
}

/* A refused restore: exit 1 naming what, and nothing rolled back. */
static void refused(struct wpmigd *d, struct rt *t, uint64_t gen, const char *want,
		    const char *label)
{
	char before[256], after[256];
	struct res r;

	rt_cmd(t, "state", before, sizeof(before));
	r = restore(d, t->pid, gen, NULL);
	CHECK(r.rc == 1 && strstr(r.err, want) && strstr(r.err, "nothing was changed"),
	      "%s: %d %s", label, r.rc, r.err);
	fprintf(stderr, "%s: %s", label, r.err);
	json_object_put(r.o);
	rt_cmd(t, "state", after, sizeof(after));
	CHECK(same_state(before, after), "%s: the process changed: %s, then %s", label, before,
	      after);
}

/* Run a little, pause: a state unlike the checkpoint's. */
static void move_on(struct rt *t, char *state, size_t len)
{
	rt_cmd(t, "resume", state, len);
	sleep_ms(20);
	rt_cmd(t, "pause", state, len);
}

static void test_refuse(void)
{
	struct wpmigd d = { 0 };
	struct pauses ps = { calloc(4, sizeof(double)), 0, 0 };
	char then[256], now[256], tid[64];
	uint64_t g;
	struct rt t;

	start_daemon(&d, NULL);
	rt_start(&t, "threads", d.dir);
	/* a thread created since */
	rt_cmd(&t, "pause", then, sizeof(then));
	g = checkpoint(&d, t.pid);
	move_on(&t, now, sizeof(now));
	rt_cmd(&t, "spawn", tid, sizeof(tid));
	refused(&d, &t, g, tid + 3, "thread created since");
	/* its stack stays mapped (glibc keeps it for the next thread) */
	rt_cmd(&t, "join", tid, sizeof(tid));
	refused(&d, &t, g, "is new or changed since", "mapping created since");
	/* a thread exited since */
	rt_cmd(&t, "spawn", tid, sizeof(tid));
	g = checkpoint(&d, t.pid);
	move_on(&t, now, sizeof(now));
	rt_cmd(&t, "join", now, sizeof(now));
	refused(&d, &t, g, tid + 3, "thread exited since");
	/* a mapping added, then gone again: the restore goes through */
	g = checkpoint(&d, t.pid);
	rt_cmd(&t, "state", then, sizeof(then));
	move_on(&t, now, sizeof(now));
	rt_cmd(&t, "map", now, sizeof(now));
	refused(&d, &t, g, "is new or changed since", "mapping added");
	rt_cmd(&t, "unmap", now, sizeof(now));
	CHECK(restore_ok(&d, &t, g, &ps), "restore once the mapping is gone again");
	rt_cmd(&t, "state", now, sizeof(now));
	CHECK(same_state(then, now), "restored: %s, checkpoint %s", now, then);
	/* a mapping removed */
	rt_cmd(&t, "map", now, sizeof(now));
	g = checkpoint(&d, t.pid);
	rt_cmd(&t, "unmap", now, sizeof(now));
	refused(&d, &t, g, "is gone, moved, resized or replaced", "mapping removed");
	CHECK(!rt_dead(&t), "the target died");
	rt_stop(&t);
	free(ps.v);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit");
	wpmigd_cleanup(&d);
}

/* Flip a byte in the middle of every chunk's payload, or of the threads
 * section, of a generation file; returns the file's old bytes. */
static uint8_t *damage(const char *path, bool threads, size_t *len)
{
	uint8_t *orig = NULL, *b;
	int fd;

	CHECK(read_full_file(path, (char **)&orig, len) == 0, "read %s", path);
	if (!orig)
		return NULL;
	b = malloc(*len);
	memcpy(b, orig, *len);
	struct disk_footer *f = (void *)(b + *len - sizeof(*f));
	struct disk_index *ix = (void *)(b + f->index_off);
	uint64_t *chunks = (uint64_t *)(ix + 1);
	struct disk_section_ref *sec = (void *)(chunks + ix->n_chunks);
	int hits = 0;

	for (uint32_t i = 0; threads && i < ix->n_sections; i++)
		if (!strcmp(sec[i].name, "threads") && sec[i].length) {
			b[sec[i].offset + sizeof(struct disk_section) + sec[i].length / 2] ^= 1;
			hits++;
		}
	for (uint32_t i = 0; !threads && i < ix->n_chunks; i++) {
		struct disk_chunk *h = (void *)(b + chunks[i]);
		uint64_t at = chunks[i] + sizeof(*h) + h->n_ext * sizeof(struct ext) +
			      h->n_data_pages * 8ULL + h->payload_len / 2;
		if (h->payload_len) {
			b[at] ^= 1;
			hits++;
		}
	}
	CHECK(hits, "nothing to damage in %s", path);
	fd = open(path, O_WRONLY);
	CHECK(fd >= 0 && write(fd, b, *len) == (ssize_t)*len, "write %s", path);
	close(fd);
	free(b);
	return orig;
}

static void undamage(const char *path, uint8_t *orig, size_t len)
{
	int fd = open(path, O_WRONLY);

	CHECK(fd >= 0 && write(fd, orig, len) == (ssize_t)len, "rewrite %s", path);
	close(fd);
	free(orig);
}

static void test_damaged(void)
{
	struct wpmigd d = { 0 };
	struct pauses ps = { calloc(4, sizeof(double)), 0, 0 };
	char then[256], now[256], path[512];
	uint8_t *orig;
	size_t len;
	uint64_t g;
	struct rt t;

	start_daemon(&d, NULL);
	rt_start(&t, "threads", d.dir);
	rt_cmd(&t, "pause", then, sizeof(then));
	g = checkpoint(&d, t.pid);
	snprintf(path, sizeof(path), "%s/images/r/gen-%08llu.img", d.state, (unsigned long long)g);
	move_on(&t, now, sizeof(now));
	orig = damage(path, true, &len);
	refused(&d, &t, g, "thread state of image r/1 is damaged", "damaged thread state");
	undamage(path, orig, len);
	orig = damage(path, false, &len);
	refused(&d, &t, g, "image r/1 is damaged", "damaged pages");
	undamage(path, orig, len);
	CHECK(restore_ok(&d, &t, g, &ps), "restore once repaired");
	rt_cmd(&t, "state", now, sizeof(now));
	CHECK(same_state(then, now), "restored: %s, checkpoint %s", now, then);
	rt_stop(&t);
	free(ps.v);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit");
	wpmigd_cleanup(&d);
}

int main(int argc, char **argv)
{
	static const struct subtest tests[] = {
		{ "fork", test_fork }, { "threads", test_threads }, { "malloc", test_malloc },
		{ "tmpfile", test_tmpfile }, { "refuse", test_refuse }, { "damaged", test_damaged },
	};

	signal(SIGPIPE, SIG_IGN);
	return run_subtests(argc, argv, tests, ARRAY_SIZE(tests));
}
