// SPDX-License-Identifier: GPL-2.0-only
/*
 * Targets that must be refused, with a reason naming them, and one that
 * must not (argv[1] is the case):
 *
 *   errors       no such PID, zombie, kernel thread, PID 1, self, already
 *                traced, io_uring fd: refused, with a reason; an allow-all
 *                seccomp filter: tracked and left clean
 *                naming the PID, the target unharmed
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attach-testlib.h"
#include "basic/util.h"

/* ---- errors ---- */

static void expect_refused(pid_t pid, int want, const char *words, const char *what)
{
	struct tracker *t = NULL;
	char why[256] = "";
	int r = tracker_attach(pid, NULL, &t, why, sizeof(why));

	CHECK(r == want, "%s (PID %d): got %d (%s), want %s; why: %s", what, (int)pid, r,
	      strerror(-r), strerror(-want), why);
	CHECK(why[0] && why_names_pid(why, pid), "%s: reason '%s' does not name PID %d", what, why,
	      (int)pid);
	CHECK(!words || strstr(why, words), "%s: reason '%s' does not say '%s'", what, why, words);
	fprintf(stderr, "  %-14s -> %s: %s\n", what, strerror(-r), why);
	if (r == 0)
		tracker_detach(t);
}

/* PIDs stay below pid_max: that one names no process, now or later. */
static pid_t free_pid(void)
{
	char *text = NULL;
	pid_t pid = 4194304;

	if (read_full_file("/proc/sys/kernel/pid_max", &text, NULL) == 0)
		pid = (pid_t)atoi(text);
	free(text);
	return pid;
}

static pid_t zombie(void)
{
	char states[8];
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	for (int i = 0; i < 1000; i++) {
		task_states(pid, states, sizeof(states));
		if (states[0] == 'Z')
			break;
		sleep_us(1000);
	}
	return pid;
}


static void refuse_traced(void)
{
	char why[256] = "", tracer_pid[16];
	struct tracker *t;
	int release = -1;
	struct wl w;

	if (start_selfcheck_target(&w, NULL) < 0)
		return;
	char *before = proc_fds(w.pid);
	pid_t tracer = start_other_tracer(w.pid, &release);
	expect_refused(w.pid, -EBUSY, "already traced", "traced");
	snprintf(tracer_pid, sizeof(tracer_pid), "%d", (int)tracer);
	tracker_attach(w.pid, NULL, &t, why, sizeof(why));
	CHECK(why_names_pid(why, tracer), "reason '%s' does not name the tracer %s", why, tracer_pid);
	close(release);
	waitpid(tracer, NULL, 0);
	check_clean(&w, "after the other tracer left");
	/* Once the other tracer is gone, attaching works. */
	t = attach_or_fail(w.pid, "after the other tracer left");
	tracker_detach(t);
	char *after = proc_fds(w.pid);
	CHECK(!strcmp(before, after), "fds differ:\n%s\n%s", before, after);
	free(before);
	free(after);
	wl_stop(&w);
}

/* Re-exec'd as "--under-seccomp PROGRAM ARGS...": allow-all filter, exec. */
static int exec_under_seccomp(char **argv)
{
	struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = { .len = 1, .filter = &allow };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) {
		printf("ERR seccomp: %s\n", strerror(errno));
		return 1;
	}
	execv(argv[0], argv);
	printf("ERR exec %s: %s\n", argv[0], strerror(errno));
	return 1;
}

/* Its filter allows what we inject: tracked, and left as found (the
 * filters that would hurt it are refused in test-seccomp.c). */
static void allow_seccomp(void)
{
	const char *bin = getenv("WPMIG_WORKLOAD");
	const char *args[] = { "--under-seccomp", bin ? bin : "./workload", "--anon", "4M",
			       "--selfcheck", NULL };
	char *saved = strdup(bin ? bin : "./workload");
	struct wl w;

	/* wl_start runs $WPMIG_WORKLOAD: point it at ourselves for one start. */
	setenv("WPMIG_WORKLOAD", "/proc/self/exe", 1);
	int r = wl_start(&w, args);
	setenv("WPMIG_WORKLOAD", saved, 1);
	free(saved);
	CHECK(r == 0, "seccomp workload start: %s", strerror(-r));
	if (r < 0)
		return;
	char *before = proc_fds(w.pid), why[256] = "";
	struct tracker *t = NULL;
	struct pass p;
	r = tracker_attach(w.pid, NULL, &t, why, sizeof(why));
	CHECK(r == 0, "attach under an allow-all seccomp filter: %s", why);
	if (r == 0) {
		CHECK(tracker_pass(t, 0, &p) == 0, "pass under seccomp");
		pass_free(&p);
		tracker_detach(t);
	}
	char *after = proc_fds(w.pid);
	CHECK(!strcmp(before, after), "fds differ:\n%s\n%s", before, after);
	CHECK(proc_has_uffd_wp(w.pid) == 0, "registration left under seccomp");
	check_clean(&w, "seccomp target after tracking");
	free(before);
	free(after);
	wl_stop(&w);
}

/* A child holding an io_uring fd: writes through its pins bypass write-protect. */
static void refuse_pinned(void)
{
	struct io_uring_params params = { 0 };
	struct tracker_opts allow = { .allow_pinned = true };
	struct tracker *t = NULL;
	char why[256];
	int go[2];

	int ring = (int)syscall(SYS_io_uring_setup, 4, &params);
	if (ring < 0) {
		fprintf(stderr, "  io_uring        -> not available here (%s): not checked\n",
			strerror(errno));
		return;
	}
	if (pipe(go) < 0)
		return;
	pid_t child = fork();
	if (child == 0) {
		char c;
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(go[1]);
		_exit(read(go[0], &c, 1) == 1 ? 0 : 4); /* blocked in read() till told */
	}
	close(ring);
	close(go[0]);
	expect_refused(child, -EPERM, "io_uring", "io_uring fd");
	int r = tracker_attach(child, &allow, &t, why, sizeof(why));
	CHECK(r == 0, "io_uring fd with allow_pinned: %s", why);
	if (r == 0) {
		/* Treated as always dirty: after a first pass, a final pass with
		 * nothing written still covers every page of every region. */
		struct pass p;
		CHECK(tracker_pass(t, 0, &p) == 0, "first pass");
		pass_free(&p);
		CHECK(tracker_pass(t, PASS_FINAL, &p) == 0, "final pass");
		uint64_t all = 0, covered = range_set_bytes(&p.data) + range_set_bytes(&p.zero);
		for (size_t i = 0; i < p.n_regions; i++)
			all += p.regions[i].end - p.regions[i].start;
		CHECK(covered == all, "allow_pinned final pass covers %llu of %llu bytes",
		      (unsigned long long)covered, (unsigned long long)all);
		pass_free(&p);
		tracker_detach(t);
	}
	int status = -1;
	CHECK(write(go[1], "x", 1) == 1 && waitpid(child, &status, 0) == child &&
	      WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "the io_uring child did not get its byte after attach/detach (status 0x%x)", status);
	close(go[1]);
}

static void case_errors(void)
{
	char *comm = NULL;

	expect_refused(free_pid(), -ESRCH, "no such process", "no such PID");
	pid_t z = zombie();
	expect_refused(z, -ESRCH, "zombie", "zombie");
	waitpid(z, NULL, 0);
	if (read_full_file("/proc/2/comm", &comm, NULL) == 0 && !strcmp(comm, "kthreadd\n"))
		expect_refused(2, -EINVAL, "kernel thread", "kthreadd");
	else
		fprintf(stderr, "  PID 2 is not kthreadd here: kernel thread not checked\n");
	free(comm);
	expect_refused(1, -EPERM, "init", "PID 1");
	expect_refused(getpid(), -EPERM, "itself", "self");
	expect_refused(0, -EINVAL, NULL, "PID 0");
	refuse_traced();
	allow_seccomp();
	refuse_pinned();
}

static const struct attach_case cases[] = {
	{ "errors", case_errors },
};

int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "--under-seccomp"))
		return exec_under_seccomp(argv + 2);
	return attach_test_main(argc, argv, cases, ARRAY_SIZE(cases));
}
