// SPDX-License-Identifier: GPL-2.0-only
/*
 * wpmigd under systemd's protocols, without systemd as PID 1:
 *   activate  the control socket passed by systemd-socket-activate
 *   notify    READY=1, STATUS=, WATCHDOG=1 every WATCHDOG_USEC/2, STOPPING=1
 *   idle      no watchdog: no wake-ups (CPU time flat over 2 s), RSS < 10 MiB
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "wpmigd-harness.h"
#include "basic/util.h"

static void mkdir_tmp(struct wpmigd *d)
{
	snprintf(d->dir, sizeof(d->dir), "/tmp/wpmigd-sd.XXXXXX");
	if (!mkdtemp(d->dir))
		abort();
	snprintf(d->sock, sizeof(d->sock), "%s/activated.sock", d->dir);
	snprintf(d->state, sizeof(d->state), "%s/state", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/wpmigd.log", d->dir);
}

/* ---- socket activation ---- */

static void test_activate(void)
{
	struct wpmigd d = { 0 };
	char own[256];
	int fd = -1;

	if (access("/usr/bin/systemd-socket-activate", X_OK) < 0)
		SKIP("no systemd-socket-activate");
	mkdir_tmp(&d);
	snprintf(own, sizeof(own), "%s/own/control.sock", d.dir);
	const char *argv[] = { "systemd-socket-activate", "-l", d.sock, wpmigd_exe(),
			       "--control", own, "--state-dir", d.state, NULL };
	pid_t p = spawn_logged(d.log, NULL, argv);
	for (int i = 0; i < 300 && fd < 0; i++) {
		fd = raw_connect(d.sock);
		if (fd < 0)
			usleep(10000);
	}
	CHECK(fd >= 0, "cannot connect to the activated socket");
	CHECK(raw_status(fd, 2000) == 0, "no status through the activated socket");
	close(fd);
	char *out = NULL;
	int rc = ctl_run(d.sock, &out, NULL, (const char *const[]){ "sessions", NULL });
	CHECK(rc == 0 && strstr(out, "PID"), "wpmig-ctl through it: %d", rc);
	free(out);
	CHECK(wpmigd_wait_log(&d, "passed by systemd", 1000), "activation not logged");
	CHECK(access(own, F_OK) < 0, "created its own socket too");
	kill(p, SIGTERM); /* systemd-socket-activate exec'ed wpmigd: p is the daemon */
	CHECK(wait_exit(p, 5000) == 0, "daemon exit status");
	/* the socket belongs to the activator: not removed by the daemon */
	CHECK(access(d.sock, F_OK) == 0, "removed the activated socket");
	wpmigd_cleanup(&d);
}

/* ---- sd_notify ---- */

struct notes {
	int ready, status, watchdog, stopping;
	char last_status[256];
};

static void read_notes(int fd, int ms, struct notes *n)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000;
	char buf[1024];

	for (;;) {
		int64_t left = (int64_t)(end - now_ns()) / 1000000;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		ssize_t k = recv(fd, buf, sizeof(buf) - 1, 0);
		if (k <= 0)
			continue;
		buf[k] = 0;
		for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n")) {
			n->ready += !strcmp(l, "READY=1");
			n->watchdog += !strcmp(l, "WATCHDOG=1");
			n->stopping += !strcmp(l, "STOPPING=1");
			if (!strncmp(l, "STATUS=", 7)) {
				n->status++;
				snprintf(n->last_status, sizeof(n->last_status), "%s", l + 7);
			}
		}
	}
}

/* A temp dir for d, and the datagram socket the daemon notifies; *env
 * gets "NOTIFY_SOCKET=..." (free it). */
static int notify_setup(struct wpmigd *d, char **env)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	mkdir_tmp(d);
	snprintf(d->sock, sizeof(d->sock), "%s/control.sock", d->dir);
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s/notify", d->dir) >=
	    sizeof(sa.sun_path) || fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		abort();
	*env = xstrdup_printf("NOTIFY_SOCKET=%s", sa.sun_path);
	return fd;
}

static void test_notify(void)
{
	struct wpmigd d = { 0 };
	struct notes n = { 0 };
	char *env_notify;
	int fd = notify_setup(&d, &env_notify);

	const char *env[] = { env_notify, "WATCHDOG_USEC=200000", NULL };
	const char *argv[] = { wpmigd_exe(), "--control", d.sock, "--state-dir", d.state,
			       "--config", "/nonexistent/default-is-fine.conf", NULL };
	/* an explicit config that does not exist is an error... */
	pid_t p = spawn_logged(d.log, env, argv);
	CHECK(wait_exit(p, 3000) == 1, "missing explicit config accepted");
	read_notes(fd, 100, &n);
	CHECK(n.ready == 0, "READY=1 from a daemon that failed");
	/* ...so run with the default file, which may be missing */
	argv[5] = NULL;
	p = spawn_logged(d.log, env, argv);
	read_notes(fd, 1200, &n);
	printf("in 1.2 s with WATCHDOG_USEC=200000: READY=1 x%d, STATUS= x%d, WATCHDOG=1 x%d; "
	       "status '%s'\n", n.ready, n.status, n.watchdog, n.last_status);
	CHECK(n.ready == 1, "READY=1 x%d", n.ready);
	CHECK(n.status >= 1 && strstr(n.last_status, "sessions"), "STATUS= '%s'", n.last_status);
	CHECK(n.watchdog >= 8 && n.watchdog <= 14, "WATCHDOG=1 x%d, want about 12", n.watchdog);
	kill(p, SIGTERM);
	CHECK(wait_exit(p, 5000) == 0, "daemon exit status");
	read_notes(fd, 100, &n);
	CHECK(n.stopping == 1, "STOPPING=1 x%d", n.stopping);
	close(fd);
	free(env_notify);
	wpmigd_cleanup(&d);
}

/* ---- idle: no timer without a watchdog ---- */

static unsigned long long cpu_ticks(pid_t pid)
{
	char path[64], *text = NULL, *p;
	unsigned long long ut = 0, st = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_full_file(path, &text, NULL) < 0)
		return 0;
	p = strrchr(text, ')'); /* fields 14 and 15 after the comm */
	if (p)
		sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st);
	free(text);
	return ut + st;
}

static void test_idle(void)
{
	struct wpmigd d = { 0 };
	struct notes n = { 0 };
	char *env_notify;
	int fd = notify_setup(&d, &env_notify);

	const char *env[] = { env_notify, NULL };
	const char *argv[] = { wpmigd_exe(), "--control", d.sock, "--state-dir", d.state,
			       NULL };
	pid_t p = spawn_logged(d.log, env, argv);
	read_notes(fd, 300, &n);
	CHECK(n.ready == 1, "not ready");
	unsigned long long t0 = cpu_ticks(p);
	read_notes(fd, 2000, &n);
	unsigned long long t1 = cpu_ticks(p);
	long rss = proc_rss_kib(p);
	printf("idle wpmigd: CPU %llu -> %llu ticks over 2 s, RSS %ld KiB, WATCHDOG=1 x%d\n",
	       t0, t1, rss, n.watchdog);
	CHECK(t1 == t0, "idle daemon used CPU: %llu ticks", t1 - t0);
	CHECK(n.watchdog == 0, "watchdog pings without WATCHDOG_USEC");
	CHECK(rss > 0 && (!daemon_memory_judged() || rss < 10 * 1024), "RSS %ld KiB", rss);
	kill(p, SIGTERM);
	CHECK(wait_exit(p, 5000) == 0, "daemon exit status");
	close(fd);
	free(env_notify);
	wpmigd_cleanup(&d);
}

int main(int argc, char **argv)
{
	static const struct subtest tests[] = {
		{ "activate", test_activate }, { "notify", test_notify }, { "idle", test_idle },
	};

	return run_subtests(argc, argv, tests, ARRAY_SIZE(tests));
}
