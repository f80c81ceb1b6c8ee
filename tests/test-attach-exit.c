// SPDX-License-Identifier: GPL-2.0-only
/*
 * Targets and tracers that die at the wrong moment, one case per run
 * (argv[1]):
 *
 *   exit-race    short-lived targets attached as they start and exit:
 *                a clean error or success, no hang, no stuck process
 *   tracer-death a process that attaches, scans, freezes and detaches in a
 *                loop is SIGKILLed at random moments; the target must run on
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attach-testlib.h"
#include "basic/util.h"
#include "track/freeze.h"
#include "track/target.h"

static uint64_t rng = 0x2545F4914F6CDD1DULL;

static uint64_t rnd(uint64_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng % n;
}

static uint64_t region_sum(struct wl *w, const char *name)
{
	char reply[64];

	if (wl_cmd(w, reply, sizeof(reply), "sum %s", name) < 0)
		return 0;
	return strtoull(reply + 3, NULL, 16);
}

/* ---- exit-race ---- */

enum { EXIT_NOW, EXIT_SPIN, EXIT_THREADED, EXIT_SLEEP, EXIT_EXEC, EXEC_LIVE, EXIT_VARIANTS };

static const char *const variant_names[] = { "exit", "spin+exit", "thread+exit", "sleep+exit",
					     "exec true", "exec sleep" };


static void *spin_forever(void *arg)
{
	for (;;)
		__asm__ volatile("" ::: "memory");
	return arg;
}

static void short_lived(int variant, uint64_t delay_us)
{
	pthread_t th;
	uint64_t end = now_ns() + delay_us * 1000;

	switch (variant) {
	case EXIT_SPIN:
		while (now_ns() < end)
			;
		break;
	case EXIT_THREADED:
		pthread_create(&th, NULL, spin_forever, NULL);
		while (now_ns() < end)
			;
		break;
	case EXIT_SLEEP:
		sleep_us(delay_us);
		break;
	case EXIT_EXEC:
		execl("/bin/true", "true", (char *)NULL);
		_exit(3);
	case EXEC_LIVE: /* a new program that lives on while we attach */
		execl("/bin/sleep", "sleep", "0.03", (char *)NULL);
		_exit(3);
	}
	_exit(0);
}

struct race_report {
	int status;
	char stuck_state; /* 0 unless the child had to be killed */
};

/*
 * The real parent of the short-lived targets: it must see each exit
 * (a tracer that reaps a traced child and detaches wrong leaves it
 * waiting), with a deadline.  Commands: variant byte + delay; replies:
 * the child's pid, then a race_report.
 */
static void race_parent(int cmd_fd, int rep_fd)
{
	struct { int variant; uint32_t delay_us; } cmd;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	while (read(cmd_fd, &cmd, sizeof(cmd)) == sizeof(cmd)) {
		struct race_report rep = { 0 };
		pid_t child = fork();

		if (child == 0)
			short_lived(cmd.variant, cmd.delay_us);
		if (write(rep_fd, &child, sizeof(child)) != sizeof(child))
			_exit(1);
		for (int i = 0; i < 5000; i++) {
			if (waitpid(child, &rep.status, WNOHANG) == child)
				break;
			if (i == 4999) {
				char s[8];
				task_states(child, s, sizeof(s));
				rep.stuck_state = s[0] ? s[0] : '?';
				kill(child, SIGKILL);
				waitpid(child, &rep.status, 0);
			}
			sleep_us(1000);
		}
		if (write(rep_fd, &rep, sizeof(rep)) != sizeof(rep))
			_exit(1);
	}
	_exit(0);
}

static void case_exit_race(void)
{
	enum { TRIALS = 500 };
	unsigned ok[EXIT_VARIANTS] = { 0 }, refused[EXIT_VARIANTS] = { 0 }, n_err[8] = { 0 };
	int errs[8] = { 0 }, cmd[2], rep[2];
	size_t n_kinds = 0;

	if (pipe(cmd) < 0 || pipe(rep) < 0)
		return;
	pid_t helper = fork();
	if (helper == 0) {
		close(cmd[1]);
		close(rep[0]);
		race_parent(cmd[0], rep[1]);
	}
	close(cmd[0]);
	close(rep[1]);
	for (unsigned i = 0; i < TRIALS; i++) {
		struct { int variant; uint32_t delay_us; } c = { (int)(i % EXIT_VARIANTS),
								 (uint32_t)rnd(1500) };
		struct race_report report;
		struct tracker *t = NULL;
		char why[256] = "";
		pid_t child;

		if (write(cmd[1], &c, sizeof(c)) != sizeof(c) ||
		    read(rep[0], &child, sizeof(child)) != sizeof(child)) {
			CHECK(0, "race helper died");
			break;
		}
		int r = tracker_attach(child, NULL, &t, why, sizeof(why));
		if (r == 0) {
			struct pass p;
			if (tracker_pass(t, 0, &p) == 0)
				pass_free(&p);
			tracker_detach(t);
			ok[c.variant]++;
		} else {
			CHECK(why[0] && why_names_pid(why, child), "attach to %d failed (%s) with a "
			      "reason not naming it: '%s'", (int)child, strerror(-r), why);
			/* Only an exit may stop the attach: anything else is
			 * a wrong reason given to the user, or a live process
			 * refused (an exec moved its vDSO under us). */
			CHECK(r == -ESRCH, "trial %u (%s, %u us): attach refused with %s: %s", i,
			      variant_names[c.variant], c.delay_us, strerror(-r), why);
			refused[c.variant]++;
			size_t k = 0;
			while (k < n_kinds && errs[k] != r)
				k++;
			if (k == n_kinds && n_kinds < ARRAY_SIZE(errs))
				errs[n_kinds++] = r;
			if (k < ARRAY_SIZE(errs))
				n_err[k]++;
		}
		if (read(rep[0], &report, sizeof(report)) != sizeof(report)) {
			CHECK(0, "race helper died");
			break;
		}
		CHECK(!report.stuck_state, "trial %u (%s): the target was still there after 5 s, "
		      "state %c", i, variant_names[c.variant], report.stuck_state);
		CHECK(WIFEXITED(report.status) && WEXITSTATUS(report.status) == 0,
		      "trial %u (%s, %u us): the target ended with status 0x%x (%s %d) after "
		      "attach %s", i, variant_names[c.variant], c.delay_us, report.status,
		      WIFSIGNALED(report.status) ? "signal" : "exit",
		      WIFSIGNALED(report.status) ? WTERMSIG(report.status) : WEXITSTATUS(report.status),
		      r == 0 ? "succeeded" : why);
	}
	close(cmd[1]);
	waitpid(helper, NULL, 0);
	close(rep[0]);
	fprintf(stderr, "  %d races:", TRIALS);
	for (int v = 0; v < EXIT_VARIANTS; v++)
		fprintf(stderr, " %s %u ok/%u refused;", variant_names[v], ok[v], refused[v]);
	fprintf(stderr, "\n  refusals:");
	for (size_t k = 0; k < n_kinds; k++)
		fprintf(stderr, " %s x%u;", strerror(-errs[k]), n_err[k]);
	fprintf(stderr, "\n");
}

/* ---- tracer-death ---- */

enum { PH_START, PH_ATTACH, PH_PASS, PH_FREEZE, PH_FINAL, PH_THAW, PH_DETACH, PH_N };

static const char *const phase_names[] = { "start", "attach", "pass", "freeze", "final-pass",
					   "thaw", "detach" };

/* A checkpoint's final pass: freeze, scan, thaw. */
static void daemon_freeze(pid_t target, struct tracker *t, atomic_int *phase)
{
	struct freeze f;
	struct pass p;

	atomic_store(phase, PH_FREEZE);
	if (freeze_process(target, &f) < 0)
		return;
	atomic_store(phase, PH_FINAL);
	if (tracker_pass(t, PASS_FINAL, &p) == 0)
		pass_free(&p);
	atomic_store(phase, PH_THAW);
	thaw_process(&f, false);
}

/*
 * The "daemon", phase published: the tracker's whole cycle forever, or
 * (freeze_only) one attach and then checkpoint after checkpoint, so that
 * kills land in the freeze too.
 */
static void daemon_loop(pid_t target, atomic_int *phase, bool freeze_only)
{
	struct tracker *t = NULL;
	char why[256];
	struct pass p;

	for (;;) {
		atomic_store(phase, PH_ATTACH);
		if (tracker_attach(target, NULL, &t, why, sizeof(why)) < 0)
			_exit(2);
		atomic_store(phase, PH_PASS);
		if (tracker_pass(t, 0, &p) == 0)
			pass_free(&p);
		while (freeze_only)
			daemon_freeze(target, t, phase);
		daemon_freeze(target, t, phase);
		atomic_store(phase, PH_DETACH);
		tracker_detach(t);
	}
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && (p[n] == '\n' || !p[n]))
			return true;
	return false;
}

/* Lines of a not in b; *uffd counts those that are userfaultfds. */
static int lines_missing(const char *a, const char *b, int *uffd)
{
	char *copy = strdup(a), *save = NULL;
	int n = 0;

	for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		if (!has_line(b, l)) {
			n++;
			*uffd += !!strstr(l, "=anon_inode:[userfaultfd]");
		}
	free(copy);
	return n;
}

/* Only a userfaultfd may have been added: created, not yet closed. */
static bool only_uffd_added(const char *before, const char *after)
{
	int added_uffd = 0, removed_uffd = 0;
	int added = lines_missing(after, before, &added_uffd);
	int removed = lines_missing(before, after, &removed_uffd);

	return added == 1 && added_uffd == 1 && removed == 0;
}

struct death_tally {
	unsigned kills[PH_N], target_killed[PH_N], uffd_left[PH_N], wp_left[PH_N];
};

/*
 * Is pid on its way out?  A tracer dying with PTRACE_O_EXITKILL set sends
 * SIGKILL before it can be reaped, so by then the target has it pending or
 * is exiting already -- but for the instant between taking the signal and
 * marking itself exiting: look three times, a millisecond apart.
 */
static bool dying(pid_t pid)
{
	for (int i = 0; i < 3; i++) {
		char path[64], *text = NULL;
		unsigned long long pend = 0;

		if (task_exiting(pid, pid))
			return true;
		snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
		if (read_full_file(path, &text, NULL) < 0)
			return true;
		for (char *p = text; (p = strstr(p, "Pnd:")); p += 4)
			pend |= strtoull(p + 4, NULL, 16);
		free(text);
		if (pend & (1ULL << (SIGKILL - 1)))
			return true;
		sleep_us(1000);
	}
	return false;
}

/* After the daemon died: the target runs, unstopped, unregistered, intact. */
static bool target_after_death(struct wl *w, const char *fds_before, uint64_t sum, int ph,
			       unsigned iter, struct death_tally *tally)
{
	char states[64];
	int status;

	if (dying(w->pid) && waitpid(w->pid, &status, 0) == w->pid) {
		w->pid = 0;
		/* PTRACE_O_EXITKILL, set while the registers are ours. */
		CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && ph == PH_ATTACH,
		      "iteration %u: the target died (status 0x%x) after the daemon was killed in "
		      "%s", iter, status, phase_names[ph]);
		tally->target_killed[ph]++;
		fclose(w->in);
		fclose(w->out);
		return false;
	}
	CHECK(wait_states(w->pid, RUNNING_STATES, 1000, states, sizeof(states)),
	      "iteration %u: target left in states %s after the daemon died in %s", iter, states,
	      phase_names[ph]);
	CHECK(proc_has_uffd_wp(w->pid) == 0, "iteration %u: uffd-wp left after the daemon died in %s",
	      iter, phase_names[ph]);
	tally->wp_left[ph] += wp_pages(w->pid) > 0;
	char *after = proc_fds(w->pid);
	if (strcmp(fds_before, after)) {
		CHECK(only_uffd_added(fds_before, after), "iteration %u: fds after the daemon died "
		      "in %s:\nbefore:\n%s\nafter:\n%s", iter, phase_names[ph], fds_before, after);
		tally->uffd_left[ph]++;
	}
	free(after);
	struct selfcheck c;
	CHECK(selfcheck(w, &c), "iteration %u: self-check after the daemon died in %s: %s", iter,
	      phase_names[ph], c.line);
	CHECK(region_sum(w, "anon") == sum, "iteration %u: memory changed after the daemon died "
	      "in %s", iter, phase_names[ph]);
	return true;
}

static void case_tracer_death(void)
{
	enum { ITERATIONS = 300 };
	atomic_int *phase = mmap(NULL, sizeof(*phase), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct death_tally tally = { 0 };
	bool alive = false;
	char *fds = NULL;
	uint64_t sum = 0;
	struct wl w;

	if (phase == MAP_FAILED)
		return;
	for (unsigned i = 0; i < ITERATIONS && !test_failures; i++) {
		if (!alive) {
			if (start_selfcheck_target(&w, NULL) < 0)
				break;
			sum = region_sum(&w, "anon");
			alive = true;
		}
		free(fds);
		fds = proc_fds(w.pid);
		atomic_store(phase, PH_START);
		pid_t daemon = fork();
		bool freeze_only = i % 3 == 2;
		if (daemon == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			daemon_loop(w.pid, phase, freeze_only);
		}
		/* Some kills fall into the first attach, some into freezes. */
		sleep_us(freeze_only ? 3000 + rnd(10000) : rnd(2) ? rnd(12000) : 300 + rnd(2500));
		kill(daemon, SIGKILL);
		int status;
		waitpid(daemon, &status, 0);
		int ph = atomic_load(phase); /* the step it died in */
		CHECK(WIFSIGNALED(status), "the daemon exited by itself (status 0x%x)", status);
		tally.kills[ph]++;
		alive = target_after_death(&w, fds, sum, ph, i, &tally);
	}
	fprintf(stderr, "  daemon SIGKILLed %d times; by phase: kills / target killed (EXITKILL) / "
		"target kept a uffd fd / pages left write-protected\n", ITERATIONS);
	for (int ph = 0; ph < PH_N; ph++)
		fprintf(stderr, "    %-10s %4u / %u / %u / %u\n", phase_names[ph], tally.kills[ph],
			tally.target_killed[ph], tally.uffd_left[ph], tally.wp_left[ph]);
	if (alive) {
		/* Whatever was left behind does not stop the next attach. */
		struct tracker *t = attach_or_fail(w.pid, "after the daemon deaths");
		if (t) {
			one_pass(t, 0, "after the daemon deaths");
			tracker_detach(t);
		}
		check_clean(&w, "at the end");
		wl_stop(&w);
	}
	free(fds);
	munmap(phase, sizeof(*phase));
}

static const struct attach_case cases[] = {
	{ "exit-race", case_exit_race },
	{ "tracer-death", case_tracer_death },
};

int main(int argc, char **argv)
{
	rng ^= (uint64_t)getpid() << 20 ^ now_ns();
	return attach_test_main(argc, argv, cases, ARRAY_SIZE(cases));
}
