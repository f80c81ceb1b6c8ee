// SPDX-License-Identifier: GPL-2.0-only
/*
 * The everyday ways to snapshot a process's memory, for bench-scale to put
 * beside a wpmig checkpoint of the same process: gcore (gdb) and CRIU's
 * dump --leave-running (a criu >= 4.0 on PATH: Debian 12's 3.17 fails on
 * this kernel's vDSO).  How long each kept the process from running is
 * measured by the process itself (the workload's ticker: a thread waking
 * every millisecond); CRIU's own account is read from its stats-dump.
 */
#include "bench-snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/util.h"

/* Bytes of the regular files under dir (not recursive) whose name starts with prefix. */
static uint64_t dir_bytes(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	uint64_t sum = 0;

	while (d && (e = readdir(d))) {
		struct stat st;
		if (strncmp(e->d_name, prefix, strlen(prefix)) ||
		    fstatat(dirfd(d), e->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
			continue;
		sum += (uint64_t)st.st_size;
	}
	if (d)
		closedir(d);
	return sum;
}

static void rm_dir(const char *dir)
{
	char *cmd = xstrdup_printf("rm -rf '%s'", dir);

	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	free(cmd);
}

/* Run the workload's ticker around cmd: the longest stall it saw, in ms. */
static int stalled(struct wl *w, const char *cmd, const char *log, double *stall_ms, double *wall_ms)
{
	char reply[64], *full = xstrdup_printf("%s >>'%s' 2>&1", cmd, log);
	int rc;

	if (wl_cmd(w, NULL, 0, "ticker start") < 0) {
		free(full);
		return -EIO;
	}
	uint64_t t0 = now_ns();
	rc = system(full);
	*wall_ms = ns_to_ms(now_ns() - t0);
	free(full);
	if (wl_cmd(w, reply, sizeof(reply), "ticker stop") < 0)
		return -EIO;
	*stall_ms = strtod(reply + 3, NULL) / 1e3;
	return rc == 0 ? 0 : -ECHILD;
}

int snap_gcore(struct wl *w, const char *dir, struct snap *out)
{
	char *prefix = xstrdup_printf("%s/core", dir), *log = xstrdup_printf("%s/gcore.log", dir);
	char *cmd = xstrdup_printf("gcore -o '%s' %d", prefix, (int)w->pid);
	int r = stalled(w, cmd, log, &out->stall_ms, &out->wall_ms);

	out->bytes = dir_bytes(dir, "core.");
	if (r < 0)
		snprintf(out->why, sizeof(out->why), "gcore failed (see %s)", log);
	else
		unlink(log);
	char *rm = xstrdup_printf("rm -f '%s'.*", prefix);
	if (system(rm) != 0)
		fprintf(stderr, "cannot remove %s.*\n", prefix);
	free(rm);
	free(prefix);
	free(log);
	free(cmd);
	return r;
}

/* "Version: 4.2" from criu --version: 0 when >= 4.0, else why not in why. */
int snap_criu_usable(char *why, size_t len)
{
	FILE *f = popen("criu --version 2>/dev/null", "r");
	char line[128];
	int major = -1, minor = 0;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Version: %d.%d", &major, &minor) >= 1)
			break;
	if (f)
		pclose(f);
	if (major < 0) {
		snprintf(why, len, "no criu on PATH (docs/performance.md: build v4.2 from source)");
		return -ENOENT;
	}
	if (major < 4) {
		snprintf(why, len, "criu %d.%d on PATH fails on this kernel's vDSO; needs >= 4.0 "
			 "(docs/performance.md)", major, minor);
		return -EPROTONOSUPPORT;
	}
	snprintf(why, len, "criu %d.%d", major, minor);
	return 0;
}

/* The first "Error" line of a CRIU log, into line. */
static const char *first_error(const char *dir, const char *name, char *line, size_t len)
{
	char *path = xstrdup_printf("%s/%s", dir, name), *text = NULL, *e;

	snprintf(line, len, "no %s", name);
	if (read_full_file(path, &text, NULL) == 0) {
		snprintf(line, len, "see its log");
		for (e = text; (e = strstr(e, "Error")); e++) {
			size_t n = strcspn(e, "\n");
			if (memmem(e, n, "RLIMIT_NOFILE", 13)) /* harmless, logged as an error */
				continue;
			snprintf(line, len, "%.*s", (int)MIN(n, len - 1), e);
			break;
		}
	}
	free(text);
	free(path);
	return line;
}

static uint64_t varint(const uint8_t **p, const uint8_t *end)
{
	uint64_t v = 0;

	for (int shift = 0; *p < end && shift < 64; shift += 7) {
		uint8_t b = *(*p)++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			break;
	}
	return v;
}

/*
 * frozen_time (us) of stats-dump: two magics, a u32 size, then a
 * stats_entry whose field 1 is the dump_stats_entry (images/stats.proto).
 */
static int criu_frozen_us(const char *dir, uint64_t *us)
{
	char *path = xstrdup_printf("%s/stats-dump", dir), *text = NULL;
	size_t len = 0;
	int r = read_full_file(path, &text, &len);

	free(path);
	if (r < 0)
		return r;
	r = -EBADMSG;
	if (len > 12) {
		const uint8_t *p = (const uint8_t *)text + 12, *end = (const uint8_t *)text + len;
		uint32_t n;
		memcpy(&n, text + 8, 4);
		if (n <= len - 12)
			end = p + n;
		while (p < end) {
			uint64_t key = varint(&p, end);
			if ((key & 7) != 2)
				break;
			uint64_t l = varint(&p, end);
			const uint8_t *q = p, *qe = p + MIN(l, (uint64_t)(end - p));
			p = qe;
			if (key >> 3 != 1)
				continue;
			while (q < qe) { /* dump_stats_entry: varints only */
				uint64_t k = varint(&q, qe), v = varint(&q, qe);
				if (k >> 3 == 2) {
					*us = v;
					r = 0;
				}
			}
		}
	}
	free(text);
	return r;
}

int snap_criu(struct wl *w, const char *dir, struct snap *out)
{
	char *img = xstrdup_printf("%s/criu", dir), *log = xstrdup_printf("%s/criu.log", dir);
	/* --file-locks: a process may hold a lock it inherited (flock(1) around
	 * the benchmark leaves its locked fd open in its children). */
	char *cmd = xstrdup_printf("mkdir -p '%s' && criu dump -t %d -D '%s' --leave-running "
				   "--shell-job --file-locks -o dump.log -v2", img, (int)w->pid, img);
	uint64_t us = 0;
	int r = stalled(w, cmd, log, &out->stall_ms, &out->wall_ms);

	out->bytes = dir_bytes(img, "pages-");
	if (r == 0 && criu_frozen_us(img, &us) == 0)
		out->own_ms = (double)us / 1e3;
	char err[200];
	if (r < 0)
		snprintf(out->why, sizeof(out->why), "criu dump failed: %s",
			 first_error(img, "dump.log", err, sizeof(err)));
	rm_dir(img);
	unlink(log);
	free(img);
	free(log);
	free(cmd);
	return r;
}

int snap_criu_incremental(struct wl *w, const char *dir, char *why, size_t len)
{
	char *img = xstrdup_printf("%s/criu-pre", dir);
	char *cmd = xstrdup_printf("mkdir -p '%s' && criu pre-dump -t %d -D '%s' --shell-job "
				   "--file-locks --track-mem -o pre-dump.log -v2 >/dev/null 2>&1", img,
				   (int)w->pid, img);
	int r = system(cmd) == 0 ? 0 : -ENOTSUP;

	char err[200];
	if (r < 0)
		snprintf(why, len, "criu pre-dump --track-mem failed: %s",
			 first_error(img, "pre-dump.log", err, sizeof(err)));
	else
		snprintf(why, len, "criu pre-dump --track-mem worked");
	(void)w;
	rm_dir(img);
	free(img);
	free(cmd);
	return r;
}
