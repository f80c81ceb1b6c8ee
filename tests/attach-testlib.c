// SPDX-License-Identifier: GPL-2.0-only
/*
 * What the attach tests share: the target's thread states and uffd-wp
 * pages, the workload's self-check, attach/pass/freeze steps that fail the
 * test with a reason, a second tracer, and main() running one case.
 */
#include "attach-testlib.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include "basic/util.h"
#include "track/freeze.h"
#include "track/maps.h"
#include "track/target.h"

void sleep_us(uint64_t us)
{
	struct timespec ts = { .tv_sec = (time_t)(us / 1000000), .tv_nsec = (long)(us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- the target's state ---- */

/* State letter of every thread of pid, as a string; returns how many. */
size_t task_states(pid_t pid, char *out, size_t len)
{
	char path[64];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	out[0] = 0;
	d = opendir(path);
	if (!d)
		return 0;
	while ((de = readdir(d)) && n + 1 < len) {
		unsigned long flags;
		pid_t tid = (pid_t)atoi(de->d_name);

		if (tid > 0 && proc_task_stat(pid, tid, &out[n], &flags) == 0)
			n++;
	}
	closedir(d);
	out[n] = 0;
	return n;
}

/* Wait up to ms for every thread to be in one of the states `allowed`. */
bool wait_states(pid_t pid, const char *allowed, int ms, char *states, size_t len)
{
	for (int i = 0;; i++) {
		size_t n = task_states(pid, states, len);

		if (n > 0 && strspn(states, allowed) == n)
			return true;
		if (i >= ms)
			return false;
		sleep_us(1000);
	}
}

#define PM_UFFD_WP (1ULL << 57)

/* Pages of pid with the uffd-wp bit; *empty gets those not present
 * (markers in empty entries: this tracker must never install them). */
long wp_pages_ex(pid_t pid, long *empty)
{
	struct vma_list maps;
	char path[64];
	long n = 0;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || maps_read(pid, &maps) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	for (size_t i = 0; i < maps.n; i++) {
		uint64_t pages = (maps.v[i].end - maps.v[i].start) / PAGE_SIZE_4K;
		uint64_t *e = malloc(pages * 8);

		if (maps.v[i].kind == VMA_SPECIAL || !e) {
			free(e);
			continue;
		}
		ssize_t got = pread(fd, e, pages * 8, (off_t)(maps.v[i].start / PAGE_SIZE_4K * 8));
		for (ssize_t k = 0; k < got / 8; k++) {
			n += !!(e[k] & PM_UFFD_WP);
			if (empty)
				*empty += (e[k] & PM_UFFD_WP) && !(e[k] & (1ULL << 63));
		}
		free(e);
	}
	vma_list_free(&maps);
	close(fd);
	return n;
}

long wp_pages(pid_t pid)
{
	return wp_pages_ex(pid, NULL);
}

static unsigned long field(const char *line, const char *key)
{
	const char *p = strstr(line, key);

	return p ? strtoul(p + strlen(key), NULL, 10) : (unsigned long)-1;
}

/* The workload's own verdict on its registers, blocked calls and signals. */
bool selfcheck(struct wl *w, struct selfcheck *c)
{
	c->ok = wl_cmd(w, c->line, sizeof(c->line), "check") == 0;
	c->line[strcspn(c->line, "\n")] = 0;
	c->usr1 = field(c->line, "usr1=");
	c->rt = field(c->line, " rt=");
	return c->ok;
}

void check_clean(struct wl *w, const char *when)
{
	struct selfcheck c;

	CHECK(selfcheck(w, &c), "%s: target self-check: %s", when, c.line);
}

bool why_names_pid(const char *why, pid_t pid)
{
	char num[16];
	const char *p = why;
	size_t n = (size_t)snprintf(num, sizeof(num), "%d", (int)pid);

	/* The PID as a whole number, not as part of another. */
	while ((p = strstr(p, num))) {
		bool left = p == why || p[-1] < '0' || p[-1] > '9';
		if (left && (p[n] < '0' || p[n] > '9'))
			return true;
		p++;
	}
	return false;
}

int start_selfcheck_target(struct wl *w, const char *busy)
{
	const char *args[] = { "--anon", "16M", "--memfd", "4M", "--shm", "4M", "--file", "2M",
			       "--selfcheck", busy ? "--busy" : NULL, busy, NULL };
	int r = wl_start(w, args);

	CHECK(r == 0, "workload start: %s", strerror(-r));
	return r;
}

struct tracker *attach_or_fail(pid_t pid, const char *when)
{
	struct tracker *t = NULL;
	char why[256] = "";
	int r = tracker_attach(pid, NULL, &t, why, sizeof(why));

	CHECK(r == 0, "%s: attach: %s (%s)", when, why, strerror(-r));
	return r == 0 ? t : NULL;
}

void one_pass(struct tracker *t, unsigned flags, const char *when)
{
	struct pass p;
	int r = tracker_pass(t, flags, &p);

	CHECK(r == 0, "%s: pass: %s", when, strerror(-r));
	if (r == 0)
		pass_free(&p);
}

/* Freeze, a final pass, thaw: what a checkpoint does. */
void frozen_pass(struct tracker *t, pid_t pid, const char *when)
{
	struct freeze f;
	int r = freeze_process(pid, &f);

	CHECK(r == 0, "%s: freeze: %s", when, strerror(-r));
	if (r < 0)
		return;
	one_pass(t, PASS_FINAL, when);
	thaw_process(&f, false);
}

unsigned long busy_loops(struct wl *w)
{
	char reply[64];

	return wl_cmd(w, reply, sizeof(reply), "busy") == 0 ? strtoul(reply + 3, NULL, 10) : 0;
}

/* A process tracing w (PTRACE_SEIZE only: w keeps running) until told. */
pid_t start_other_tracer(pid_t target, int *release_fd)
{
	int ready[2], release[2];
	char c = 0;

	if (pipe(ready) < 0 || pipe(release) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(release[1]);
		c = ptrace(PTRACE_SEIZE, target, NULL, NULL) == 0;
		if (write(ready[1], &c, 1) != 1 || read(release[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(ready[1]);
	close(release[0]);
	if (read(ready[0], &c, 1) != 1 || !c)
		CHECK(0, "the other tracer could not seize %d", (int)target);
	close(ready[0]);
	*release_fd = release[1];
	return pid;
}

static void on_alarm(int sig)
{
	static const char msg[] = "FAIL: the test hung (alarm)\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(1);
	_exit(1);
}

int attach_test_main(int argc, char **argv, const struct attach_case *cases, size_t n)
{
	signal(SIGPIPE, SIG_IGN);
	signal(SIGALRM, on_alarm);
	for (size_t i = 0; i < n; i++) {
		if (argc > 1 && strcmp(argv[1], cases[i].name))
			continue;
		int before = test_failures;
		alarm(240);
		fprintf(stderr, "%s:\n", cases[i].name);
		cases[i].fn();
		alarm(0);
		fprintf(stderr, "%s: %s\n", cases[i].name, test_failures == before ? "ok" : "FAILED");
	}
	return test_failures ? 1 : 0;
}
