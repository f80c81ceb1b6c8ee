// SPDX-License-Identifier: GPL-2.0-only
/*
 * The control socket against a real wpmigd on a private socket: client
 * usage errors, hostile frames, who may connect, connection limits, and a
 * SIGHUP reload.  Kernel-independent: nothing here attaches to a process.
 *
 *   test-control usage|frames|partial-frame|auth|limits|refusals|reload|config|
 *                config-syntax|later-verbs|special-files
 */
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control.pb-c.h"
#include "frame.h"
#include "wpmigd-harness.h"
#include "basic/util.h"

/* ---- usage: exit 2 before any socket; daemon down: exit 1 naming it ---- */

static void test_usage(void)
{
#define MIGRATE_ARGS "migrate", "--qmp", "/q", "--peer", "h:1", "--dest-qmp", "/d", "--dest-uri", \
		     "tcp:h:2"
	static const char *const bad[][12] = {
		{ "frobnicate" }, { "--bogus", "status" }, { "track" }, { "track", "12x" },
		{ "track", "-3" }, { "track", "0" }, { "track", "1", "2" }, { "untrack", "" },
		{ "status", "abc" }, { "checkpoint" }, { "checkpoint", "1", "--set", "../x" },
		{ "checkpoint", "1", "--peer", "host:99999" }, { "checkpoint", "1", "--frob" },
		{ "images" }, { "images", "frob" }, { "images", "show" },
		{ "images", "export", "set" }, { "images", "export", "set/0", "/tmp" },
{ "restore", "1", "set" },
		{ "restore", "1", "set/x" }, { "migrate", "--qmp", "/q" },
		{ "migrate", "--qmp", "q", "--peer", "h:1", "--dest-qmp", "/d", "--dest-uri", "tcp:h:2" },
		{ "sessions", "x" }, { "" }, { "track", "010" }, { "track", "0x10" },
		{ "checkpoint", "1", "--peer", "h:0x50" }, { "checkpoint", "1", "--peer", "a b:1" },
		{ "--socket", "", "status" }, { "images", "show", "s/01" },
		{ MIGRATE_ARGS, "--max-iterations", "128" }, { MIGRATE_ARGS, "--max-iterations", "010" },
		{ MIGRATE_ARGS, "--downtime-ms", "0x10" },
	};
	const char *nosock = "/nonexistent/wpmig-test.sock";
	char *out, *err;
	int rc;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		rc = ctl_run(nosock, &out, &err, bad[i]);
		CHECK(rc == 2, "'%s %s' exit %d, want 2 (stderr: %s)", bad[i][0],
		      bad[i][1] ? bad[i][1] : "", rc, err);
		CHECK(strstr(err, "Usage:") != NULL, "'%s': no usage line: %s", bad[i][0], err);
		free(out);
		free(err);
	}
	rc = ctl_run(nosock, &out, &err, (const char *const[]){ "status", NULL });
	CHECK(rc == 1, "daemon down: exit %d", rc);
	CHECK(strstr(err, nosock) && strstr(err, "No such file"), "message: %s", err);
	free(out);
	free(err);
	rc = ctl_run(nosock, &out, &err, (const char *const[]){ MIGRATE_ARGS, "--max-iterations",
								 "127", "--downtime-ms", "10", NULL });
	CHECK(rc == 1, "migrate with good options: exit %d, want 1 (daemon down): %s", rc, err);
	free(out);
	free(err);
#undef MIGRATE_ARGS
	setenv("WPMIG_SOCKET", "/nonexistent/from-env.sock", 1);
	rc = ctl_run(NULL, &out, &err, (const char *const[]){ "sessions", NULL });
	CHECK(rc == 1 && strstr(err, "/nonexistent/from-env.sock"), "WPMIG_SOCKET: %d %s", rc, err);
	free(out);
	free(err);
	/* check without a daemon probes locally and says so */
	rc = ctl_run(NULL, &out, &err, (const char *const[]){ "check", NULL });
	CHECK(strstr(err, "probing locally") && strstr(out, "pagemap-scan"), "local check: %s", err);
	CHECK(rc == 0 || rc == 1, "local check exit %d", rc);
	free(out);
	free(err);
	unsetenv("WPMIG_SOCKET");
}

/* ---- frames ---- */

static void header(uint8_t *raw, uint16_t type, uint32_t len)
{
	struct frame_header h = { .magic = FRAME_MAGIC, .version = WPMIG_PROTO_VERSION,
				  .type = type, .length = len };
	frame_header_encode(&h, raw);
}

struct bad_frame {
	const char *name;
	uint8_t bytes[64];
	size_t len;
	bool half_close; /* then shutdown(SHUT_WR): a truncated frame */
	int want_error;
	const char *want_msg;
};

static void send_bad(struct wpmigd *d, int witness, const struct bad_frame *b)
{
	int fd = raw_connect(d->sock), error = 0;
	char msg[256] = "";
	uint8_t end;

	CHECK(fd >= 0, "%s: connect", b->name);
	if (fd < 0)
		return;
	CHECK(write(fd, b->bytes, b->len) == (ssize_t)b->len, "%s: write", b->name);
	if (b->half_close)
		shutdown(fd, SHUT_WR);
	int r = raw_read_response(fd, 2000, &error, msg, sizeof(msg));
	CHECK(r == 0, "%s: no answer (%d)", b->name, r);
	CHECK(error == b->want_error, "%s: error %d, want %d (%s)", b->name, error,
	      b->want_error, msg);
	CHECK(strstr(msg, b->want_msg), "%s: message '%s' lacks '%s'", b->name, msg, b->want_msg);
	/* then the daemon closes it */
	shutdown(fd, SHUT_WR);
	CHECK(read(fd, &end, 1) == 0, "%s: connection not closed", b->name);
	close(fd);
	CHECK(raw_status(witness, 1000) == 0, "%s: witness connection not served after it",
	      b->name);
}

static void test_frames(void)
{
	struct wpmigd d = { 0 };
	struct bad_frame b[12];
	size_t n = 0;
	int witness;

	CHECK(wpmigd_start(&d, "", NULL) == 0, "daemon start");
	witness = raw_connect(d.sock);
	CHECK(raw_status(witness, 1000) == 0, "witness status");
	long rss0 = proc_rss_kib(d.pid);

	b[n] = (struct bad_frame){ "wrong magic", .len = 24, .want_error = -EBADMSG,
				   .want_msg = "bad magic" };
	header(b[n].bytes, FRAME_CTL_REQUEST, 2);
	b[n].bytes[0] ^= 0xff;
	n++;
	b[n] = (struct bad_frame){ "bad checksum", .len = 24, .want_error = -EBADMSG,
				   .want_msg = "checksum" };
	header(b[n].bytes, FRAME_CTL_REQUEST, 2);
	b[n].bytes[22] ^= 1;
	n++;
	/* no payload follows: the answer must come from the header alone */
	b[n] = (struct bad_frame){ "oversized", .len = 24, .want_error = -EMSGSIZE,
				   .want_msg = "longer than" };
	header(b[n].bytes, FRAME_CTL_REQUEST, 0xfffffff0u);
	n++;
	b[n] = (struct bad_frame){ "just over the limit", .len = 24, .want_error = -EMSGSIZE,
				   .want_msg = "longer than" };
	header(b[n].bytes, FRAME_CTL_REQUEST, 64 * 1024 + 1);
	n++;
	b[n] = (struct bad_frame){ "wrong version", .len = 24, .want_error = -EPROTONOSUPPORT,
				   .want_msg = "version" };
	{
		struct frame_header h = { .magic = FRAME_MAGIC,
					  .version = WPMIG_PROTO_VERSION + 1,
					  .type = FRAME_CTL_REQUEST };
		frame_header_encode(&h, b[n].bytes);
	}
	n++;
	b[n] = (struct bad_frame){ "unknown type", .len = 24, .want_error = -EPROTOTYPE,
				   .want_msg = "type" };
	header(b[n].bytes, 0x4242, 0);
	n++;
	b[n] = (struct bad_frame){ "response type from a client", .len = 24,
				   .want_error = -EPROTOTYPE, .want_msg = "type" };
	header(b[n].bytes, FRAME_CTL_RESPONSE, 0);
	n++;
	b[n] = (struct bad_frame){ "truncated header", .len = 10, .half_close = true,
				   .want_error = -EBADMSG, .want_msg = "truncated" };
	header(b[n].bytes, FRAME_CTL_REQUEST, 4);
	n++;
	b[n] = (struct bad_frame){ "truncated payload", .len = 24 + 20, .half_close = true,
				   .want_error = -EBADMSG, .want_msg = "truncated" };
	header(b[n].bytes, FRAME_CTL_REQUEST, 40);
	memset(b[n].bytes + 24, 0x08, 20);
	n++;
	b[n] = (struct bad_frame){ "garbage message", .len = 24 + 8, .want_error = -EBADMSG,
				   .want_msg = "cannot decode" };
	header(b[n].bytes, FRAME_CTL_REQUEST, 8);
	memset(b[n].bytes + 24, 0xff, 8);
	n++;
	b[n] = (struct bad_frame){ "request without a verb", .len = 24 + 2,
				   .want_error = -EOPNOTSUPP, .want_msg = "unknown request" };
	header(b[n].bytes, FRAME_CTL_REQUEST, 2);
	b[n].bytes[24] = 0x08; /* id = 5, no verb */
	b[n].bytes[25] = 0x05;
	n++;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(b[i].name, "request without a verb")) {
			/* not a framing error: the connection stays usable */
			int fd = raw_connect(d.sock), error = 0;
			char msg[256];
			CHECK(write(fd, b[i].bytes, b[i].len) == (ssize_t)b[i].len, "write");
			CHECK(raw_read_response(fd, 1000, &error, msg, sizeof(msg)) == 0 &&
			      error == -EOPNOTSUPP, "no-verb answer %d %s", error, msg);
			CHECK(raw_status(fd, 1000) == 0, "connection unusable after a no-verb request");
			close(fd);
			continue;
		}
		send_bad(&d, witness, &b[i]);
	}
	/* a client that half-closes after its request still gets the answer */
	{
		Wpmig__Request req = WPMIG__REQUEST__INIT;
		Wpmig__SessionsRequest sr = WPMIG__SESSIONS_REQUEST__INIT;
		int fd = raw_connect(d.sock), error = -1;
		req.id = 9;
		req.verb_case = WPMIG__REQUEST__VERB_SESSIONS;
		req.sessions = &sr;
		CHECK(frame_write_fd(fd, FRAME_CTL_REQUEST, &req.base) == 0, "write");
		shutdown(fd, SHUT_WR);
		CHECK(raw_read_response(fd, 1000, &error, NULL, 0) == 0 && error == 0,
		      "half-closed client not answered (%d)", error);
		close(fd);
	}
	long rss1 = proc_rss_kib(d.pid);
	printf("daemon RSS %ld KiB before, %ld KiB after the hostile frames\n", rss0, rss1);
	CHECK(!daemon_memory_judged() || rss1 - rss0 < 1024, "RSS grew by %ld KiB", rss1 - rss0);
	close(witness);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit status");
	wpmigd_cleanup(&d);
}

/* ---- a frame started, however little of it, must end within 30 s ---- */

static void test_partial_frame(void)
{
	static const size_t sizes[] = { 1, 23, 26, 1 }; /* the last one dribbles on */
	enum { N = 4, DRIBBLER = 3 };
	struct wpmigd d = { 0 };
	uint8_t raw[64] = { 0 };
	int fds[N], error[N] = { 0 }, witness;
	double answered_ms[N] = { 0 };
	char msg[N][256] = { "" };

	header(raw, FRAME_CTL_REQUEST, 40);
	CHECK(wpmigd_start(&d, "", NULL) == 0, "daemon start");
	witness = raw_connect(d.sock);
	uint64_t t0 = now_ns();
	for (int i = 0; i < N; i++) {
		fds[i] = raw_connect(d.sock);
		CHECK(write(fds[i], raw, sizes[i]) == (ssize_t)sizes[i], "write %d", i);
	}
	/* the dribbler sends one more byte every 8 s: idle time never reaches 30 s */
	for (int left = N, tick = 1; left && ns_to_ms(now_ns() - t0) < 45000;) {
		struct pollfd p[N];
		for (int i = 0; i < N; i++)
			p[i] = (struct pollfd){ .fd = answered_ms[i] ? -1 : fds[i], .events = POLLIN };
		if (poll(p, N, 1000) < 0)
			break;
		double ms = ns_to_ms(now_ns() - t0);
		for (int i = 0; i < N; i++) {
			if (!(p[i].revents & (POLLIN | POLLHUP)))
				continue;
			answered_ms[i] = ms;
			left--;
			error[i] = 0;
			msg[i][0] = 0;
			raw_read_response(fds[i], 1000, &error[i], msg[i], sizeof(msg[i]));
		}
		if (ms > tick * 8000.0 && !answered_ms[DRIBBLER] && sizes[DRIBBLER] + tick < 24) {
			CHECK(write(fds[DRIBBLER], raw + sizes[DRIBBLER] + tick - 1, 1) == 1, "dribble");
			tick++;
		}
		CHECK(raw_status(witness, 1000) == 0, "witness not served");
	}
	for (int i = 0; i < N; i++) {
		printf("%zu bytes%s: answered after %.1f s: %d %s\n", sizes[i],
		       i == DRIBBLER ? " and one every 8 s" : "", answered_ms[i] / 1000, error[i],
		       msg[i]);
		CHECK(answered_ms[i] >= 29500 && answered_ms[i] < 36000, "%d: after %.0f ms", i,
		      answered_ms[i]);
		CHECK(error[i] == -ETIMEDOUT && strstr(msg[i], "not finished within 30 s"),
		      "%d: %d %s", i, error[i], msg[i]);
		close(fds[i]);
	}
	close(witness);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit status");
	wpmigd_cleanup(&d);
}

/* ---- auth ---- */

/* Run wpmig-ctl status as nobody:nogroup, optionally in a new PID namespace. */
static int status_as_nobody(struct wpmigd *d, bool new_pidns, char *err, size_t len)
{
	int e[2], status;
	pid_t pid;

	if (pipe(e) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		close(e[0]);
		dup2(e[1], 2);
		dup2(e[1], 1);
		if (new_pidns) {
			if (unshare(CLONE_NEWPID) < 0)
				_exit(99);
			pid_t inner = fork(); /* pid 1 of the new namespace */
			if (inner > 0) {
				waitpid(inner, &status, 0);
				_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 98);
			}
		}
		if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
			_exit(97);
		execl(getenv("WPMIG_CTL"), "wpmig-ctl", "--socket", d->sock, "status", (char *)NULL);
		_exit(127);
	}
	close(e[1]);
	ssize_t n = read(e[0], err, len - 1);
	err[n > 0 ? n : 0] = 0;
	close(e[0]);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_auth(void)
{
	struct wpmigd d = { 0 };
	char err[1024];
	int rc;

	if (getuid() != 0)
		SKIP("needs root to switch to nobody");
	CHECK(wpmigd_start(&d, "log_level = info\n", NULL) == 0, "daemon start");
	/* 1. the socket file itself keeps others out (0660 root) */
	chmod(d.dir, 0711);
	char *run = xstrdup_printf("%s/run", d.dir);
	chmod(run, 0755);
	free(run);
	rc = status_as_nobody(&d, false, err, sizeof(err));
	CHECK(rc == 1 && strstr(err, d.sock) && strstr(err, "Permission denied"),
	      "socket mode: exit %d: %s", rc, err);
	/* 2. even through an open file mode, the daemon checks SO_PEERCRED */
	chmod(d.sock, 0666);
	rc = status_as_nobody(&d, false, err, sizeof(err));
	CHECK(rc == 1 && strstr(err, "permission denied: uid 65534 is not root"),
	      "peercred: exit %d: %s", rc, err);
	CHECK(wpmigd_log_has(&d, "uid 65534"), "refusal not logged");
	/* 3. control_group (set by a reload) lets the group in */
	CHECK(wpmigd_write_config(&d, "control_group = nogroup\n") == 0, "config");
	kill(d.pid, SIGHUP);
	CHECK(wpmigd_wait_log(&d, "Reloaded", 3000), "no reload");
	chmod(d.sock, 0666);
	rc = status_as_nobody(&d, false, err, sizeof(err));
	CHECK(rc == 0 && strstr(err, "sessions"), "group member refused: exit %d: %s", rc, err);
	struct stat st;
	CHECK(stat(d.sock, &st) == 0 && st.st_gid == 65534, "socket group not nogroup");
	/* 4. a client in another PID namespace is refused */
	rc = status_as_nobody(&d, true, err, sizeof(err));
	if (rc == 99)
		fprintf(stderr, "note: cannot unshare a PID namespace here; not tested\n");
	else
		CHECK(rc == 1 && strstr(err, "another PID namespace"), "pidns: exit %d: %s", rc, err);
	/* and root still gets in */
	int fd = raw_connect(d.sock);
	CHECK(raw_status(fd, 1000) == 0, "root refused after all that");
	close(fd);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit status");
	wpmigd_cleanup(&d);
}

/* ---- limits ---- */

static void count_answers(struct wpmigd *d, int max, int total)
{
	int fds[128], ok = 0, refused = 0, other = 0;

	for (int i = 0; i < total; i++)
		fds[i] = raw_connect(d->sock);
	for (int i = 0; i < total; i++) {
		int r = fds[i] < 0 ? -1 : raw_status(fds[i], 2000);
		if (r == 0)
			ok++;
		else if (r == -EUSERS)
			refused++;
		else
			other++;
	}
	printf("%d connections, max_connections=%d: %d served, %d refused, %d other\n", total, max,
	       ok, refused, other);
	CHECK(ok == (max < total ? max : total), "served %d", ok);
	CHECK(refused == (max < total ? total - max : 0), "refused %d", refused);
	CHECK(other == 0, "other %d", other);
	for (int i = 0; i < total; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* Until the daemon has seen every earlier client go: status counts itself.
 * (Nothing tells a client when the daemon saw another one close: ask again,
 * for up to 10 s, the loaded box's margin.) */
static bool wait_one_connection(struct wpmigd *d)
{
	for (uint64_t t0 = now_ns(); now_ns() - t0 < 10000000000ULL;) {
		char *out = NULL;
		int rc = CTL(d, &out, NULL, "--json", "status");
		bool one = rc == 0 && strstr(out, "\"connections\":1,");
		free(out);
		if (one)
			return true;
		usleep(10000);
	}
	return false;
}

/* A client that sends and never reads is dropped at max_output. */
static void flood_without_reading(struct wpmigd *d)
{
	Wpmig__Request req = WPMIG__REQUEST__INIT;
	Wpmig__StatusRequest sr = WPMIG__STATUS_REQUEST__INIT;
	struct timeval tv = { 5, 0 };
	int fd = raw_connect(d->sock), sent = 0;

	req.verb_case = WPMIG__REQUEST__VERB_STATUS;
	req.status = &sr;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	for (; sent < 100000; sent++)
		if (frame_write_fd(fd, FRAME_CTL_REQUEST, &req.base) < 0)
			break;
	printf("flood: %d requests sent before the daemon hung up\n", sent);
	CHECK(sent < 100000, "never dropped");
	CHECK(wpmigd_wait_log(d, "reads too slowly", 2000), "drop not logged");
	long rss = proc_rss_kib(d->pid);
	printf("daemon RSS after the flood: %ld KiB\n", rss);
	CHECK(!daemon_memory_judged() || rss < 16 * 1024, "RSS %ld KiB", rss);
	close(fd);
}

static void test_limits(void)
{
	struct wpmigd d = { 0 };

	CHECK(wpmigd_start(&d, "max_connections = 50\nmax_output = 64K\n", NULL) == 0,
	      "daemon start");
	flood_without_reading(&d);
	CHECK(wait_one_connection(&d), "start-up probe connection still counted");
	count_answers(&d, 50, 100);
	/* the slots come back once the clients are gone */
	CHECK(wait_one_connection(&d), "connections not released");
	CHECK(wpmigd_write_config(&d, "max_connections = 200\n") == 0, "config");
	kill(d.pid, SIGHUP);
	CHECK(wpmigd_wait_log(&d, "Reloaded", 3000), "no reload");
	CHECK(wait_one_connection(&d), "connections not released");
	count_answers(&d, 200, 100);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit status");
	wpmigd_cleanup(&d);
}

/* ---- refusals: cost nothing, keep nobody out, root always gets in ---- */

struct holder {
	pid_t pid;
	int go; /* closing it ends the holder */
};

/* A child as nobody holding n connections open (each sent a status
 * request, none read); returns once they are all made. */
static int hold_as_nobody(struct wpmigd *d, int n, struct holder *h)
{
	int ready[2], go[2];
	char c;

	if (pipe(ready) < 0 || pipe(go) < 0)
		return -1;
	h->pid = fork();
	if (h->pid == 0) {
		close(ready[0]);
		close(go[1]);
		if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
			_exit(97);
		for (int i = 0; i < n; i++) {
			int fd = raw_connect(d->sock);
			Wpmig__Request req = WPMIG__REQUEST__INIT;
			Wpmig__StatusRequest sr = WPMIG__STATUS_REQUEST__INIT;
			req.verb_case = WPMIG__REQUEST__VERB_STATUS;
			req.status = &sr;
			if (fd >= 0)
				frame_write_fd(fd, FRAME_CTL_REQUEST, &req.base);
		}
		(void)!write(ready[1], "r", 1);
		(void)!read(go[0], &c, 1); /* until the parent is done */
		_exit(0);
	}
	close(ready[1]);
	close(go[0]);
	h->go = go[1];
	ssize_t got = read(ready[0], &c, 1);
	close(ready[0]);
	return got == 1 ? 0 : -1;
}

static void holder_end(struct holder *h)
{
	close(h->go);
	waitpid(h->pid, NULL, 0);
}

static int count_lines(struct wpmigd *d, const char *needle)
{
	char *text = NULL;
	int n = 0;

	if (read_full_file(d->log, &text, NULL) < 0)
		return -1;
	for (char *p = text; (p = strstr(p, needle)); p++)
		n++;
	free(text);
	return n;
}

/* status --json "connections": what the daemon holds open. */
static long json_connections(struct wpmigd *d)
{
	char *out = NULL, *p;
	long n = -1;

	if (CTL(d, &out, NULL, "--json", "status") == 0 && (p = strstr(out, "\"connections\":")))
		n = strtol(p + 14, NULL, 10);
	free(out);
	return n;
}

static void test_refusals(void)
{
	struct wpmigd d = { 0 };
	struct holder h;

	if (getuid() != 0)
		SKIP("needs root to switch to nobody");
	CHECK(wpmigd_start(&d, "max_connections = 4\n", NULL) == 0, "daemon start");
	chmod(d.dir, 0711);
	char *run = xstrdup_printf("%s/run", d.dir);
	chmod(run, 0755);
	free(run);
	chmod(d.sock, 0666);
	/* 1. 60 refused connections held open by nobody: root is still served,
	 * nothing of them is held, and the log gets a bounded number of lines */
	CHECK(hold_as_nobody(&d, 60, &h) == 0, "holder");
	int fd = raw_connect(d.sock);
	CHECK(raw_status(fd, 2000) == 0, "root refused while nobody's refusals are held");
	close(fd);
	long conns = json_connections(&d);
	CHECK(conns == 1, "status counts %ld connections, want 1 (itself)", conns);
	holder_end(&h);
	int lines = count_lines(&d, "refused a control client (pid");
	printf("60 refused connections: %d log lines\n", lines);
	CHECK(lines >= 1 && lines <= 10, "%d refusal lines", lines);
	CHECK(wpmigd_log_has(&d, "for a while more refusals are only counted"),
	      "throttling not said");
	/* 2. nobody admitted (control_group) fills max_connections, and more:
	 * root still has its own connections */
	CHECK(wpmigd_write_config(&d, "max_connections = 4\ncontrol_group = nogroup\n") == 0,
	      "config");
	kill(d.pid, SIGHUP);
	CHECK(wpmigd_wait_log(&d, "Reloaded", 3000), "no reload");
	chmod(d.sock, 0666);
	CHECK(hold_as_nobody(&d, 20, &h) == 0, "holder");
	int fds[4];
	for (int i = 0; i < 3; i++) {
		fds[i] = raw_connect(d.sock);
		CHECK(raw_status(fds[i], 2000) == 0, "root connection %d refused", i);
	}
	conns = json_connections(&d); /* root's fourth */
	CHECK(conns == 8, "status counts %ld connections, want 4 of nobody + 4 of root", conns);
	bool served = false; /* once the daemon has seen status's connection go */
	for (uint64_t t0 = now_ns(); now_ns() - t0 < 10000000000ULL && !served;) {
		usleep(10000);
		fds[3] = raw_connect(d.sock);
		served = raw_status(fds[3], 2000) == 0;
		if (!served)
			close(fds[3]);
	}
	CHECK(served, "root's fourth connection refused");
	int error = 0, fd5 = raw_connect(d.sock);
	CHECK(raw_read_response(fd5, 2000, &error, NULL, 0) == 0 && error == -EUSERS,
	      "root's fifth connection: %d", error);
	close(fd5);
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	holder_end(&h);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit status");
	wpmigd_cleanup(&d);
}

/* ---- reload ---- */

static void test_reload(void)
{
	struct wpmigd d = { 0 };

	CHECK(wpmigd_start(&d, "# start quiet\nlog_level = info\n", NULL) == 0, "daemon start");
	int fd = raw_connect(d.sock);
	CHECK(raw_status(fd, 1000) == 0, "status");
	CHECK(!wpmigd_log_has(&d, "request 7: status"), "debug line at info level");
	CHECK(wpmigd_write_config(&d, "[wpmigd]\nlog_level = debug\n") == 0, "config");
	kill(d.pid, SIGHUP);
	CHECK(wpmigd_wait_log(&d, "Debug logging is on", 3000), "no reload");
	CHECK(raw_status(fd, 1000) == 0, "status after reload (same connection)");
	CHECK(wpmigd_wait_log(&d, "request 7: status", 1000), "no debug line after reload");
	/* a broken file keeps the running configuration */
	CHECK(wpmigd_write_config(&d, "log_level = loud\nbogus = 1\npeer_verify = some\n") == 0,
	      "config");
	kill(d.pid, SIGHUP);
	CHECK(wpmigd_wait_log(&d, "keeping the running configuration", 3000), "bad reload");
	CHECK(wpmigd_log_has(&d, "unknown key 'bogus'"), "bad key not named");
	CHECK(wpmigd_log_has(&d, "bad value for peer_verify: 'some'"), "bad value not named");
	CHECK(raw_status(fd, 1000) == 0, "status after a bad reload");
	close(fd);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit status");
	wpmigd_cleanup(&d);
}

/* A daemon that must not start: it exits 1 within 5 s, saying why. */
static void refused_start(struct wpmigd *d, const char *config_text, const char *want)
{
	int rc = wpmigd_start(d, config_text, NULL);

	if (rc == 0) /* the socket answered: it must still exit */
		rc = wait_exit(d->pid, 5000) == 1 ? -ECHILD : -ETIMEDOUT, d->pid = 0;
	CHECK(rc == -ECHILD, "daemon with \"%s\" (--config %s) did not exit (%d)", config_text,
	      d->conf_arg ? d->conf_arg : "", rc);
	CHECK(wpmigd_log_has(d, want), "log of \"%s\" lacks \"%s\"", config_text, want);
	wpmigd_cleanup(d);
}

/* ---- one number syntax; every refusal names the key, the value, what it takes ---- */

static void test_config_syntax(void)
{
	static const struct {
		const char *text, *want;
	} bad[] = {
		{ "workers = 010\n", "bad value for workers: '010': expected a decimal number from 1 "
				     "to 64 (no sign, no 0x, no leading zero)" },
		{ "workers = 0x10\n", "bad value for workers: '0x10': expected a decimal number" },
		{ "max_output = 0x10000\n", "bad value for max_output: '0x10000': expected a size" },
		{ "peer_cache = 010M\n", "bad value for peer_cache: '010M': expected a size" },
		{ "peer_cache = 5G\n", "bad value for peer_cache: '5G': expected a size: a decimal "
				       "number (no sign, no 0x, no leading zero) with an optional K, M, "
				       "G or T suffix, at least 0, at most 4G" },
		{ "zstd_level = 08\n", "bad value for zstd_level: '08': expected a zstd level" },
		{ "zstd_level = +3\n", "bad value for zstd_level: '+3'" },
		{ "max_connections = 5\nmax_connections = 6\n",
		  "max_connections = '6': max_connections is set more than once" },
		{ "listen = nonsense host:1\n", "bad value for listen: 'nonsense host:1': expected "
						"HOST:PORT" },
		{ "listen = host:070\n", "bad value for listen: 'host:070'" },
		{ "bogus = 1\n", "unknown key 'bogus' (= '1')" },
	};
	static const struct {
		const char *text, *want;
	} warned[] = {
		{ "control_group = 99999\n", "control_group = '99999': no group has gid 99999" },
		{ "control_group = no-such-group-here\n",
		  "control_group = 'no-such-group-here': no such group" },
	};
	struct wpmigd d;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		d = (struct wpmigd){ 0 };
		refused_start(&d, bad[i].text, bad[i].want);
		CHECK(!wpmigd_log_has(&d, "needs peer_key_file"), "%s: key blamed", bad[i].text);
	}
	for (size_t i = 0; i < ARRAY_SIZE(warned); i++) {
		d = (struct wpmigd){ 0 };
		CHECK(wpmigd_start(&d, warned[i].text, NULL) == 0, "start with %s", warned[i].text);
		CHECK(wpmigd_wait_log(&d, warned[i].want, 2000), "no warning for %s", warned[i].text);
		CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit status");
		wpmigd_cleanup(&d);
	}
	/* good values of each kind still start */
	d = (struct wpmigd){ 0 };
	CHECK(wpmigd_start(&d, "workers = 10\nmax_output = 64K\nzstd_level = -7\npeer_cache = 0\n"
			   "max_bandwidth = 100MiB\npeer_zstd_level = 0\n", NULL) == 0, "good values");
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit status");
	wpmigd_cleanup(&d);
}

/* ---- the installed default config parses, commented and uncommented ---- */

static void test_config(void)
{
	const char *path = getenv("WPMIG_DEFAULT_CONF");
	char *text = NULL, *open_text;
	struct wpmigd d = { 0 };

	CHECK(path && read_full_file(path, &text, NULL) == 0, "cannot read %s", path);
	if (!text)
		return;
	CHECK(wpmigd_start(&d, text, NULL) == 0, "daemon refuses the default config");
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit status");
	wpmigd_cleanup(&d);
	/* every documented key, uncommented: "# key = value" -> "key = value" */
	open_text = calloc(1, strlen(text) + 1);
	for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
		char key[64], eq[2];
		if (sscanf(l, "# %63[a-z_] %1[=]", key, eq) == 2 && strcmp(key, "control") &&
		    strcmp(key, "state_dir"))
			sprintf(open_text + strlen(open_text), "%s\n", l + 2);
	}
	CHECK(strstr(open_text, "max_connections = 64") && strstr(open_text, "log_level = info"),
	      "keys not found:\n%s", open_text);
	CHECK(wpmigd_start(&d, open_text, NULL) == 0, "daemon refuses:\n%s", open_text);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit status");
	CHECK(!wpmigd_log_has(&d, "unknown key"), "a documented key is unknown");
	wpmigd_cleanup(&d);
	free(open_text);
	free(text);
}

/* ---- FIFOs where the daemon expects files: refused at once, never waited on ---- */

static void store_fifo(void)
{
	struct wpmigd d = { 0 };
	char path[512], *out, *err;

	CHECK(wpmigd_start(&d, "", NULL) == 0, "daemon start");
	snprintf(path, sizeof(path), "%s/images/S", d.state);
	CHECK(mkdir(path, 0700) == 0, "mkdir");
	snprintf(path, sizeof(path), "%s/images/S/gen-00000001.img", d.state);
	CHECK(mkfifo(path, 0600) == 0, "mkfifo");
	snprintf(path, sizeof(path), "%s/export", d.dir);
	const char *const cmds[][5] = {
		{ "images", "list" }, { "images", "show", "S" }, { "images", "verify", "S" },
		{ "images", "export", "S/1", path }, { "status" }, { "images", "rm", "S" },
	};
	const int want[] = { 0, 1, 1, 1, 0, 0 };
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		int rc = ctl_run(d.sock, &out, &err, cmds[i]);
		CHECK(rc == want[i], "%s %s: exit %d (142: no answer in 10 s), want %d: %s%s",
		      cmds[i][0], cmds[i][1] ? cmds[i][1] : "", rc, want[i], out, err);
		if (want[i])
			CHECK(strstr(err, "damaged"), "%s: %s", cmds[i][1], err);
		free(out);
		free(err);
	}
	snprintf(path, sizeof(path), "%s/images/S", d.state);
	CHECK(access(path, F_OK) < 0, "rm left the set");
	uint64_t t0 = now_ns();
	CHECK(wpmigd_stop(&d, 10000) == 0, "daemon exit status");
	CHECK(ns_to_ms(now_ns() - t0) < 3000, "stop took %.0f ms", ns_to_ms(now_ns() - t0));
	wpmigd_cleanup(&d);
}


/* --config naming a directory or a FIFO: refused at start, kept on reload. */
static void config_not_a_file(const char *dir, const char *fifo)
{
	struct wpmigd d = { .conf_arg = dir };

	refused_start(&d, "", "is not a regular file (a directory)");
	d = (struct wpmigd){ .conf_arg = fifo };
	refused_start(&d, "", "is not a regular file (a FIFO)");
	/* running with a good file, which then becomes a directory */
	d = (struct wpmigd){ 0 };
	CHECK(wpmigd_start(&d, "log_level = debug\nmax_connections = 7\n", NULL) == 0, "start");
	CHECK(unlink(d.conf) == 0 && mkdir(d.conf, 0700) == 0, "config file -> directory");
	kill(d.pid, SIGHUP);
	CHECK(wpmigd_wait_log(&d, "keeping the running configuration", 3000), "reload not refused");
	CHECK(wpmigd_log_has(&d, "is not a regular file (a directory)"), "reason not logged");
	int fd = raw_connect(d.sock);
	CHECK(raw_status(fd, 1000) == 0, "status");
	close(fd);
	CHECK(wpmigd_wait_log(&d, "request 7: status", 1000), "log_level = debug dropped");
	/* removed altogether: an error too, not the defaults */
	CHECK(rmdir(d.conf) == 0, "rmdir");
	kill(d.pid, SIGHUP);
	CHECK(wpmigd_wait_log(&d, "Cannot open config file", 3000), "missing file not refused");
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit status");
	wpmigd_cleanup(&d);
}

static void test_special_files(void)
{
	char dir[] = "/tmp/wpmig-special.XXXXXX", fifo[64], *conf;
	struct wpmigd d = { 0 };

	ctl_set_timeout(10);
	store_fifo();
	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	CHECK(mkfifo(fifo, 0600) == 0, "mkfifo");
	conf = xstrdup_printf("listen = unix:%s/peer.sock\npeer_key_file = %s\n", dir, fifo);
	refused_start(&d, conf, "is not a regular file");
	free(conf);
	config_not_a_file(dir, fifo);
	unlink(fifo);
	rmdir(dir);
	ctl_set_timeout(0);
}

/* ---- verbs that need more than the daemon has: answered clearly, not hung ---- */

static void test_later_verbs(void)
{
	static const char *const cmds[][10] = {
		{ "migrate", "--qmp", "/q", "--peer", "h:1", "--dest-qmp", "/d", "--dest-uri",
		  "tcp:h:2" },
	};
	struct wpmigd d = { 0 };
	char *out, *err;

	/* No peer_key_file: migrate says what it needs. */
	CHECK(wpmigd_start(&d, "", NULL) == 0, "daemon start");
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		int rc = ctl_run(d.sock, &out, &err, cmds[i]);
		CHECK(rc == 1 && strstr(err, cmds[i][0]) && strstr(err, "peer_key_file"),
		      "%s: %d %s", cmds[i][0], rc, err);
		free(out);
		free(err);
	}
	/* What the client refuses, the daemon refuses too, before anything else. */
	const struct { uint32_t iters; const char *peer, *want; } raw[] = {
		{ 128, "h:1", "max_iterations 128: at most 127" },
		{ 0, "h:0x50", "invalid peer address 'h:0x50'" },
		{ 127, "h:1", "peer_key_file" }, /* the control: accepted so far */
	};
	for (size_t i = 0; i < ARRAY_SIZE(raw); i++) {
		Wpmig__Request req = WPMIG__REQUEST__INIT;
		Wpmig__MigrateRequest mr = WPMIG__MIGRATE_REQUEST__INIT;
		int fd = raw_connect(d.sock), error = 0;
		char msg[256] = "";

		mr.qmp = (char *)"/q";
		mr.dest_qmp = (char *)"/d";
		mr.dest_uri = (char *)"tcp:h:2";
		mr.peer = (char *)raw[i].peer;
		mr.max_iterations = raw[i].iters;
		req.id = 1;
		req.verb_case = WPMIG__REQUEST__VERB_MIGRATE;
		req.migrate = &mr;
		CHECK(frame_write_fd(fd, FRAME_CTL_REQUEST, &req.base) == 0, "write");
		CHECK(raw_read_response(fd, 5000, &error, msg, sizeof(msg)) == 0 && error < 0 &&
		      strstr(msg, raw[i].want), "migrate %u %s: %d %s", raw[i].iters, raw[i].peer,
		      error, msg);
		close(fd);
	}
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit status");
	wpmigd_cleanup(&d);
}

int main(int argc, char **argv)
{
	static const struct subtest tests[] = {
		{ "usage", test_usage }, { "frames", test_frames }, { "auth", test_auth },
		{ "limits", test_limits }, { "reload", test_reload },
		{ "config", test_config }, { "later-verbs", test_later_verbs },
		{ "special-files", test_special_files }, { "refusals", test_refusals },
		{ "partial-frame", test_partial_frame }, { "config-syntax", test_config_syntax },
	};

	return run_subtests(argc, argv, tests, ARRAY_SIZE(tests));
}
