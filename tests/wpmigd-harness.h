/* SPDX-License-Identifier: GPL-2.0-only */
/* A private wpmigd (own socket, state dir, config, log) and wpmig-ctl runs. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <sys/types.h>

#include "harness.h"

struct wpmigd {
	pid_t pid;
	char dir[128];
	char sock[192], state[192], conf[192], log[192];
	const char *conf_arg; /* set before start: --config this instead of conf */
};

/*
 * The daemon to run: $WPMIGD (built by meson), or $WPMIG_DAEMON_WRAPPER
 * when set: a program given the daemon's arguments that runs the daemon
 * itself, in the same process (tests/ci: under valgrind, under the unit's
 * syscall filter).  Start every wpmigd of a test with it.
 */
const char *wpmigd_exe(void);
/* Temp dir, config file with config_text, daemon started and answering.
 * env: NULL-terminated "NAME=VALUE" list added to the daemon's env. */
int wpmigd_start(struct wpmigd *d, const char *config_text, const char *const *env);
/* Rewrite the config file (for SIGHUP tests). */
int wpmigd_write_config(struct wpmigd *d, const char *config_text);
/* After spawning d->pid: 0 once its control socket answers, -ECHILD when it
 * exited (reaped), -ETIMEDOUT after 30 s (a loaded machine is slow). */
int wpmigd_wait_started(struct wpmigd *d);
/* SIGTERM and wait up to timeout_ms: its exit code (see wait_exit). */
int wpmigd_stop(struct wpmigd *d, int timeout_ms);
void wpmigd_cleanup(struct wpmigd *d);
bool wpmigd_log_has(const struct wpmigd *d, const char *needle);
bool wpmigd_wait_log(const struct wpmigd *d, const char *needle, int timeout_ms);
/* VmRSS of a process in KiB. */
long proc_rss_kib(pid_t pid);
/*
 * Whether the daemon's memory figures (RSS and its growth) are its own and
 * to be judged: not when it is built with AddressSanitizer (shadow memory,
 * quarantine; tests/ci/sanitize.sh) nor when $WPMIG_DAEMON_FIGURES is
 * "unjudged" (tests/ci/valgrind.sh: memcheck's own memory).  Print the
 * figure always; check it only when this is true.
 */
bool daemon_memory_judged(void);

/* Runs wpmig-ctl --socket SOCK ARGS... (sock may be NULL: no --socket);
 * returns its exit code; out/err get its output (free them). */
int ctl_run(const char *sock, char **out, char **err, const char *const *args);
/* From now on a wpmig-ctl run longer than s seconds is killed (SIGALRM:
 * exit code 142), so a daemon that never answers fails a test, not hangs
 * it; 0: no limit (the default). */
void ctl_set_timeout(unsigned s);
#define CTL(d, out, err, ...) ctl_run((d)->sock, out, err, (const char *const[]){ __VA_ARGS__, NULL })

/* Raw control connection: connect, one request, one response (ms budget). */
int raw_connect(const char *sock);
/* status over an open fd; 0 when answered without error. */
int raw_status(int fd, int timeout_ms);
/* Read one Response frame within timeout_ms: error and message. */
int raw_read_response(int fd, int timeout_ms, int *error, char *msg, size_t len);

/* fork + exec argv[0] (PATH searched) with stdout and stderr appended
 * to log and env ("NAME=VALUE", NULL-terminated, may be NULL) added. */
pid_t spawn_logged(const char *log, const char *const *env, const char *const *argv);
/* Wait up to ms for pid: its exit code, 128+signal, or -1 (then killed). */
int wait_exit(pid_t pid, int ms);

/* main() of a test binary: run the named subtest (or all). */
struct subtest {
	const char *name;
	void (*fn)(void);
};
int run_subtests(int argc, char **argv, const struct subtest *t, size_t n);

/* Exit 77 when this kernel or user cannot track (probe table). */
void require_tracking(void);
char *xstrdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A member of a wpmig-ctl --json answer; 0 when o or the member is absent. */
uint64_t ju64(json_object *o, const char *key);
double jdbl(json_object *o, const char *key);
