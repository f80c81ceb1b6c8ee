// SPDX-License-Identifier: GPL-2.0-only
/*
 * Run a program under a system call allow-list, as systemd's
 * SystemCallFilter= does for a unit:
 *
 *   seccomp-launch [--log] ALLOW_FILE PROGRAM [ARGS...]
 *
 * ALLOW_FILE holds one system call name a line (tests/ci/syscall-filter.py
 * writes it from the unit, its @groups expanded).  Anything else kills the
 * whole process with SIGSYS (systemd's action when SystemCallErrorNumber=
 * is unset); calls of another architecture too (SystemCallArchitectures=
 * native); no_new_privs is set (NoNewPrivileges=yes).  Names this
 * libseccomp does not know are skipped, as systemd skips them.
 *
 * --log: allow everything and log what the list would have refused
 * (SECCOMP_RET_LOG, to the kernel log): for finding what is missing.
 */
#include <errno.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(void)
{
	fprintf(stderr, "usage: seccomp-launch [--log] ALLOW_FILE PROGRAM [ARGS...]\n");
	exit(2);
}

static int add_list(scmp_filter_ctx ctx, const char *path)
{
	char line[128];
	unsigned n = 0;
	FILE *f = fopen(path, "re");

	if (!f) {
		fprintf(stderr, "seccomp-launch: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, " \t\r\n")] = '\0';
		if (!line[0] || line[0] == '#')
			continue;
		int nr = seccomp_syscall_resolve_name(line);
		if (nr == __NR_SCMP_ERROR)
			continue;
		int r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		if (r < 0) {
			fprintf(stderr, "seccomp-launch: %s: %s\n", line, strerror(-r));
			fclose(f);
			return -1;
		}
		n++;
	}
	fclose(f);
	if (n == 0) {
		fprintf(stderr, "seccomp-launch: %s allows nothing\n", path);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	bool log_only = argc > 1 && !strcmp(argv[1], "--log");
	scmp_filter_ctx ctx;
	int r;

	argv += 1 + log_only;
	argc -= 1 + log_only;
	if (argc < 2)
		usage();
	ctx = seccomp_init(log_only ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS);
	if (!ctx) {
		fprintf(stderr, "seccomp-launch: seccomp_init failed\n");
		return 1;
	}
	if (add_list(ctx, argv[0]) < 0)
		return 1;
	r = seccomp_load(ctx); /* sets no_new_privs (SCMP_FLTATR_CTL_NNP) */
	seccomp_release(ctx);
	if (r < 0) {
		fprintf(stderr, "seccomp-launch: cannot load the filter: %s\n", strerror(-r));
		return 1;
	}
	execv(argv[1], argv + 1);
	fprintf(stderr, "seccomp-launch: %s: %s\n", argv[1], strerror(errno));
	return 127;
}
