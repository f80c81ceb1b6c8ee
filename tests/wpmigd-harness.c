// SPDX-License-Identifier: GPL-2.0-only
#include "wpmigd-harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "control.pb-c.h"
#include "frame.h"
#include "basic/util.h"
#include "track/probe.h"

char *xstrdup_printf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	if (!f)
		return -errno;
	fputs(text ? text : "", f);
	return fclose(f) == 0 ? 0 : -errno;
}

int wpmigd_write_config(struct wpmigd *d, const char *config_text)
{
	return write_file(d->conf, config_text);
}

pid_t spawn_logged(const char *log, const char *const *env, const char *const *argv)
{
	pid_t parent = getpid();
	pid_t p = fork();

	if (p == 0) {
		/* A test that dies (a meson timeout) stops its daemons: an orphaned
		 * daemon would keep whatever fds it inherited (a lock) forever. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
			_exit(127);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		for (; env && *env; env++)
			putenv((char *)*env);
		dup2(fd, 1);
		dup2(fd, 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	return p;
}

int wait_exit(pid_t pid, int ms)
{
	int status;

	for (int i = 0; i < ms / 10; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

int run_subtests(int argc, char **argv, const struct subtest *t, size_t n)
{
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < n; i++) {
		if (argc > 1 && strcmp(argv[1], t[i].name))
			continue;
		fprintf(stderr, "== %s\n", t[i].name);
		t[i].fn();
	}
	return test_failures ? 1 : 0;
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WPMIG_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define WPMIG_ASAN 1
#endif

bool daemon_memory_judged(void)
{
#ifdef WPMIG_ASAN
	return false;
#else
	const char *v = getenv("WPMIG_DAEMON_FIGURES");

	return !v || strcmp(v, "unjudged");
#endif
}

const char *wpmigd_exe(void)
{
	const char *daemon = test_bin("WPMIGD", "../daemon/wpmigd"); /* sets $WPMIGD */
	const char *wrapper = getenv("WPMIG_DAEMON_WRAPPER");

	return wrapper && *wrapper ? wrapper : daemon;
}

int wpmigd_start(struct wpmigd *d, const char *config_text, const char *const *env)
{
	snprintf(d->dir, sizeof(d->dir), "/tmp/wpmigd-test.XXXXXX");
	if (!mkdtemp(d->dir))
		return -errno;
	snprintf(d->sock, sizeof(d->sock), "%s/run/control.sock", d->dir);
	snprintf(d->state, sizeof(d->state), "%s/state", d->dir);
	snprintf(d->conf, sizeof(d->conf), "%s/wpmigd.conf", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/wpmigd.log", d->dir);
	if (wpmigd_write_config(d, config_text) < 0)
		return -EIO;
	const char *argv[] = { wpmigd_exe(), "--config",
			       d->conf_arg ? d->conf_arg : d->conf, "--control", d->sock,
			       "--state-dir", d->state, NULL };
	d->pid = spawn_logged(d->log, env, argv);
	if (d->pid < 0)
		return -errno;
	return wpmigd_wait_started(d);
}

int wpmigd_wait_started(struct wpmigd *d)
{
	for (int i = 0; i < 3000; i++) {
		int fd = raw_connect(d->sock);
		if (fd >= 0) {
			close(fd);
			return 0;
		}
		if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
			d->pid = 0;
			return -ECHILD;
		}
		usleep(10000);
	}
	return -ETIMEDOUT;
}

int wpmigd_stop(struct wpmigd *d, int timeout_ms)
{
	int r;

	if (d->pid <= 0)
		return -1;
	kill(d->pid, SIGTERM);
	r = wait_exit(d->pid, timeout_ms);
	d->pid = 0;
	return r;
}

void wpmigd_cleanup(struct wpmigd *d)
{
	if (d->pid > 0)
		wpmigd_stop(d, 5000);
	if (getenv("WPMIG_KEEP_TEST_DIR") || !d->dir[0])
		return;
	char *cmd = xstrdup_printf("rm -rf '%s'", d->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", d->dir);
	free(cmd);
}

bool wpmigd_log_has(const struct wpmigd *d, const char *needle)
{
	char *text = NULL;
	bool found;

	if (read_full_file(d->log, &text, NULL) < 0)
		return false;
	found = strstr(text, needle) != NULL;
	free(text);
	return found;
}

bool wpmigd_wait_log(const struct wpmigd *d, const char *needle, int timeout_ms)
{
	for (int i = 0; i <= timeout_ms / 10; i++) {
		if (wpmigd_log_has(d, needle))
			return true;
		usleep(10000);
	}
	return false;
}

long proc_rss_kib(pid_t pid)
{
	char path[64], *text = NULL, *p;
	long kib = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (read_full_file(path, &text, NULL) < 0)
		return -1;
	p = strstr(text, "VmRSS:");
	if (p)
		kib = strtol(p + 6, NULL, 10);
	free(text);
	return kib;
}

static char *slurp_fd(int fd)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	ssize_t n;

	while (buf && (n = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (len + 1 == cap) {
			char *more = realloc(buf, cap *= 2);
			if (!more)
				free(buf);
			buf = more;
		}
	}
	if (buf)
		buf[len] = 0;
	return buf;
}

static unsigned ctl_timeout_s;

void ctl_set_timeout(unsigned s)
{
	ctl_timeout_s = s;
}

int ctl_run(const char *sock, char **out, char **err, const char *const *args)
{
	const char *argv[32] = { "wpmig-ctl" };
	int o[2], e[2], status, n = 1;
	pid_t pid;

	if (sock) {
		argv[n++] = "--socket";
		argv[n++] = sock;
	}
	for (; *args && n < 31; args++)
		argv[n++] = *args;
	if (pipe2(o, O_CLOEXEC) < 0 || pipe2(e, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(o[1], 1);
		dup2(e[1], 2);
		alarm(ctl_timeout_s); /* kept across exec */
		execv(test_bin("WPMIG_CTL", "../client/wpmig-ctl"), (char *const *)argv);
		_exit(127);
	}
	close(o[1]);
	close(e[1]);
	/* stderr is small: read stdout first, then stderr */
	char *so = slurp_fd(o[0]), *se = slurp_fd(e[0]);
	close(o[0]);
	close(e[0]);
	waitpid(pid, &status, 0);
	if (out)
		*out = so;
	else
		free(so);
	if (err)
		*err = se;
	else
		free(se);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int raw_connect(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

int raw_read_response(int fd, int timeout_ms, int *error, char *msg, size_t len)
{
	static const uint16_t types[] = { FRAME_CTL_RESPONSE };
	static const struct frame_limits lim = { 1 << 20, 0, types, 1, 0 };
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct frame_header h;
	uint8_t *payload;
	int r;

	if (poll(&p, 1, timeout_ms) <= 0)
		return -ETIMEDOUT;
	r = frame_read_fd(fd, &lim, &h, &payload, NULL);
	if (r < 0)
		return r;
	Wpmig__Response *resp = wpmig__response__unpack(NULL, h.length, payload);
	free(payload);
	if (!resp)
		return -EBADMSG;
	*error = resp->error;
	if (msg)
		snprintf(msg, len, "%s", resp->message);
	wpmig__response__free_unpacked(resp, NULL);
	return 0;
}

int raw_status(int fd, int timeout_ms)
{
	Wpmig__Request req = WPMIG__REQUEST__INIT;
	Wpmig__StatusRequest sr = WPMIG__STATUS_REQUEST__INIT;
	int error = 0, r;

	req.id = 7;
	req.verb_case = WPMIG__REQUEST__VERB_STATUS;
	req.status = &sr;
	r = frame_write_fd(fd, FRAME_CTL_REQUEST, &req.base);
	/* refused at accept: the answer waits though the daemon closed */
	if (r == 0 || r == -EPIPE || r == -ECONNRESET)
		r = raw_read_response(fd, timeout_ms, &error, NULL, 0);
	return r < 0 ? r : error;
}

void require_tracking(void)
{
	struct probe_result res[PROBE_MAX];
	int n = probe_run(res);

	for (int i = 0; i < n; i++)
		if (!res[i].ok)
			SKIP("kernel feature %s missing: %s", res[i].name, res[i].detail);
}

uint64_t ju64(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_uint64(v) : 0;
}

double jdbl(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0;
}
