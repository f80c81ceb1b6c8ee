// SPDX-License-Identifier: GPL-2.0-only
/*
 * Checkpoints through wpmigd and wpmig-ctl, against real workloads:
 *
 *   kinds      full then incremental generations over every memory kind
 *              with writes, DONTNEED, MADV_REMOVE, new, moved and removed
 *              mappings between them; each --leave-stopped generation
 *              exported equals /proc/PID/mem byte for byte
 *   writer     a generation taken while a thread writes continuously
 *              equals the stopped process exactly
 *   restore    memory rolled back exactly, with the registers and with
 *              --memory-only; a layout mismatch is refused and changes
 *              nothing
 *   kill       the daemon SIGKILLed mid-checkpoint: earlier generations
 *              verify, no partial one, the target runs untouched
 *   enospc     a full filesystem mid-generation: clean error, previous
 *              generation intact, nothing partial left
 *   flip       verify names the region and page of a flipped byte
 *   bad        unknown PID, a kernel thread, a concurrent checkpoint
 *   responsive status answers within 50 ms during a 1 GiB checkpoint
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "wpmigd-harness.h"
#include "basic/util.h"
#include "track/maps.h"

struct ckpt {
	int rc;
	uint64_t generation, parent, pages, data_pages, zero_pages, copied_pages, bytes;
	double pause_ms, duration_ms;
	double steps_ms[4]; /* freeze, scan, copy, thaw */
	char err[512];
};

/* checkpoint PID --set SET [--leave-stopped], parsed from --json. */
static struct ckpt checkpoint(struct wpmigd *d, pid_t pid, const char *set, bool stop)
{
	char p[16], *out = NULL, *err = NULL;
	struct ckpt c = { 0 };

	snprintf(p, sizeof(p), "%d", (int)pid);
	c.rc = stop ? CTL(d, &out, &err, "--json", "checkpoint", p, "--set", set, "--leave-stopped")
		    : CTL(d, &out, &err, "--json", "checkpoint", p, "--set", set);
	json_object *o = c.rc == 0 ? json_tokener_parse(out) : NULL;
	c.generation = ju64(o, "generation");
	c.parent = ju64(o, "parent");
	c.pages = ju64(o, "pages");
	c.data_pages = ju64(o, "data_pages");
	c.zero_pages = ju64(o, "zero_pages");
	c.copied_pages = ju64(o, "copied_pages");
	c.bytes = ju64(o, "bytes");
	c.pause_ms = jdbl(o, "pause_ms");
	c.duration_ms = jdbl(o, "duration_ms");
	c.steps_ms[0] = jdbl(o, "freeze_ms");
	c.steps_ms[1] = jdbl(o, "scan_ms");
	c.steps_ms[2] = jdbl(o, "copy_ms");
	c.steps_ms[3] = jdbl(o, "thaw_ms");
	snprintf(c.err, sizeof(c.err), "%s", err ? err : "");
	json_object_put(o);
	free(out);
	free(err);
	return c;
}

static bool stopped(pid_t pid)
{
	char path[64], *text = NULL;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	bool t = read_full_file(path, &text, NULL) == 0 && strstr(text, "State:\tT");
	free(text);
	return t;
}

/* Export SET/GEN and compare with the (stopped) process: every writable
 * region exported, each file equal to /proc/PID/mem.  Returns bad pages. */
static uint64_t export_compare(struct wpmigd *d, const char *set, uint64_t gen, pid_t pid)
{
	char img[160], dir[256], path[512], page[4096], *buf = malloc(1 << 20);
	struct vma_list maps;
	uint64_t bad = 0, files = 0;

	snprintf(img, sizeof(img), "%s/%llu", set, (unsigned long long)gen);
	snprintf(dir, sizeof(dir), "%s/export-%s-%llu", d->dir, set, (unsigned long long)gen);
	CHECK(CTL(d, NULL, NULL, "images", "export", img, dir) == 0, "export %s", img);
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	int mem = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(mem >= 0 && maps_read(pid, &maps) == 0, "maps of %d", (int)pid);
	if (mem < 0)
		return 1;
	for (size_t i = 0; i < maps.n; i++) {
		const struct vma *v = &maps.v[i];
		if (!vma_is_image(v))
			continue;
		snprintf(path, sizeof(path), "%s/%08llx-%08llx.bin", dir, (unsigned long long)v->start,
			 (unsigned long long)v->end);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		struct stat st;
		CHECK(fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size == v->end - v->start,
		      "%s missing or of the wrong size", path);
		if (fd < 0)
			continue;
		files++;
		for (uint64_t a = v->start; a < v->end; a += sizeof(page)) {
			if (pread(mem, page, sizeof(page), (off_t)a) != sizeof(page))
				continue; /* unreadable in the process: not compared */
			if (pread(fd, buf, sizeof(page), (off_t)(a - v->start)) != sizeof(page) ||
			    memcmp(buf, page, sizeof(page))) {
				if (bad++ < 3)
					fprintf(stderr, "  %s: page %llx differs\n", img,
						(unsigned long long)a);
			}
		}
		close(fd);
	}
	vma_list_free(&maps);
	close(mem);
	free(buf);
	fprintf(stderr, "  %s: %llu regions exported, %llu pages differ\n", img,
		(unsigned long long)files, (unsigned long long)bad);
	return bad;
}

static void start_daemon(struct wpmigd *d)
{
	require_tracking();
	CHECK(wpmigd_start(d, "", NULL) == 0, "daemon start");
}

static void start_wl(struct wl *w, const char *const *args)
{
	int r = wl_start(w, args);
	if (r < 0)
		SKIP("cannot start the workload: %s", strerror(-r));
}

/* --leave-stopped checkpoint, export compare, SIGCONT. */
static struct ckpt stopped_checkpoint(struct wpmigd *d, struct wl *w, const char *set)
{
	struct ckpt c = checkpoint(d, w->pid, set, true);

	CHECK(c.rc == 0, "checkpoint: %s", c.err);
	CHECK(stopped(w->pid), "not stopped after --leave-stopped");
	if (c.rc == 0)
		CHECK(export_compare(d, set, c.generation, w->pid) == 0, "export differs");
	kill(w->pid, SIGCONT);
	return c;
}

static void test_kinds(void)
{
	static const char *const args[] = {
		"--anon", "32M", "--thp", "32M", "--memfd", "16M", "--shm", "8M", "--file", "8M",
		"--memfd-private", "8M", "--populate", "60", "--selfcheck", NULL };
	struct wpmigd d = { 0 };
	struct wl w = { 0 };
	char reply[256];

	start_daemon(&d);
	start_wl(&w, args);
	struct ckpt c1 = stopped_checkpoint(&d, &w, "kinds");
	CHECK(c1.generation == 1 && c1.parent == 0, "first is full gen 1: %llu/%llu",
	      (unsigned long long)c1.generation, (unsigned long long)c1.parent);

	const char *const changes[] = {
		"write anon 300 1", "poke memfd 200 2", "write thp 40 3", "dontneed thp 0 64",
		"remove memfd 10 20", "write file 30 4", "dontneed file 0 8",
		"write memfd-private 20 5", "mmap extra anon 4M", "mremap shm",
	};
	for (size_t i = 0; i < ARRAY_SIZE(changes); i++)
		CHECK(wl_cmd(&w, NULL, 0, "%s", changes[i]) == 0, "workload: %s", changes[i]);
	struct ckpt c2 = stopped_checkpoint(&d, &w, "kinds");
	CHECK(c2.generation == 2 && c2.parent == 1, "incremental gen 2 over 1");
	/* Data pages: the compare's own reads of /proc/PID/mem fault zero-filled
	 * pages into every hole (the shared zero page, or new zeroed pages on a
	 * kernel that does not map it: either way the next generation records
	 * them as zero, by PAGE_IS_PFNZERO or by content). */
	CHECK(c2.data_pages * 5 < c1.data_pages, "incremental %llu data pages, full %llu",
	      (unsigned long long)c2.data_pages, (unsigned long long)c1.data_pages);
	fprintf(stderr, "  full %llu pages (%llu data), incremental %llu pages (%llu data)\n",
		(unsigned long long)c1.pages, (unsigned long long)c1.data_pages,
		(unsigned long long)c2.pages, (unsigned long long)c2.data_pages);

	CHECK(wl_cmd(&w, NULL, 0, "writeall extra") == 0 && wl_cmd(&w, NULL, 0, "munmap extra") == 0 &&
	      wl_cmd(&w, NULL, 0, "mmap more memfd 2M") == 0, "workload: map changes");
	struct ckpt c3 = stopped_checkpoint(&d, &w, "kinds");
	CHECK(c3.generation == 3 && c3.parent == 2, "incremental gen 3 over 2");
	for (int g = 1; g <= 3; g++) {
		char img[32];
		snprintf(img, sizeof(img), "kinds/%d", g);
		CHECK(CTL(&d, NULL, NULL, "images", "verify", img) == 0, "verify %s", img);
	}
	CHECK(wl_cmd(&w, reply, sizeof(reply), "check") == 0, "self-check: %s", reply);
	char *fds = proc_fds(w.pid); /* after the last mmap: it opened a memfd */
	char p[16];
	snprintf(p, sizeof(p), "%d", (int)w.pid);
	CHECK(CTL(&d, NULL, NULL, "untrack", p) == 0, "untrack");
	CHECK(proc_has_uffd_wp(w.pid) == 0, "uw left");
	char *fds2 = proc_fds(w.pid);
	CHECK(!strcmp(fds, fds2), "fds differ");
	free(fds);
	free(fds2);
	wl_stop(&w);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit");
	wpmigd_cleanup(&d);
}

/* images list --json: data and zero pages of SET/GEN. */
static void listed_pages(struct wpmigd *d, const char *set, uint64_t gen, uint64_t *data,
			 uint64_t *zero)
{
	char *out = NULL;
	json_object *root, *sets, *gens;

	*data = *zero = UINT64_MAX;
	CHECK(CTL(d, &out, NULL, "--json", "images", "list") == 0, "images list");
	root = json_tokener_parse(out ? out : "");
	for (size_t i = 0; json_object_object_get_ex(root, "sets", &sets) &&
			   i < json_object_array_length(sets); i++) {
		json_object *s = json_object_array_get_idx(sets, i), *name;
		if (!json_object_object_get_ex(s, "name", &name) ||
		    strcmp(json_object_get_string(name), set) ||
		    !json_object_object_get_ex(s, "generations", &gens))
			continue;
		for (size_t k = 0; k < json_object_array_length(gens); k++) {
			json_object *g = json_object_array_get_idx(gens, k);
			if (ju64(g, "number") == gen) {
				*data = ju64(g, "data_pages");
				*zero = ju64(g, "zero_pages");
			}
		}
	}
	json_object_put(root);
	free(out);
}

/* The pause's steps add up to it, and status shows the last one so. */
static void check_pause_steps(struct wpmigd *d, pid_t pid, const struct ckpt *c)
{
	double sum = 0;
	char p[16], *out = NULL;
	json_object *o = NULL, *s = NULL, *lp = NULL, *v;

	for (int i = 0; i < 4; i++) {
		CHECK(c->steps_ms[i] > 0, "pause step %d is %.3f ms", i, c->steps_ms[i]);
		sum += c->steps_ms[i];
	}
	CHECK(sum > c->pause_ms - 0.01 && sum < c->pause_ms + 0.01,
	      "steps %.3f + %.3f + %.3f + %.3f != pause %.3f ms", c->steps_ms[0], c->steps_ms[1],
	      c->steps_ms[2], c->steps_ms[3], c->pause_ms);
	snprintf(p, sizeof(p), "%d", (int)pid);
	CHECK(CTL(d, &out, NULL, "--json", "status", p) == 0, "status %s", p);
	o = out ? json_tokener_parse(out) : NULL;
	if (json_object_object_get_ex(o, "sessions", &v))
		s = json_object_array_get_idx(v, 0);
	json_object_object_get_ex(s, "last_pause", &lp);
	CHECK(jdbl(lp, "pause_ms") == c->pause_ms && jdbl(lp, "freeze_ms") == c->steps_ms[0] &&
	      jdbl(lp, "thaw_ms") == c->steps_ms[3], "status last_pause: %s", out ? out : "");
	CHECK(jdbl(s, "max_pause_ms") >= c->pause_ms, "status max_pause_ms %.3f < %.3f",
	      jdbl(s, "max_pause_ms"), c->pause_ms);
	json_object_put(o);
	free(out);
}

static void test_writer(void)
{
	static const char *const args[] = { "--anon", "64M", "--memfd", "16M", "--populate", "50",
					    NULL };
	struct wpmigd d = { 0 };
	struct wl w = { 0 };

	start_daemon(&d);
	start_wl(&w, args);
	CHECK(wl_cmd(&w, NULL, 0, "writer start") == 0, "writer start");
	struct ckpt c1 = checkpoint(&d, w.pid, "writer", false);
	CHECK(c1.rc == 0, "checkpoint while writing: %s", c1.err);
	/* the result and the listing count the same pages; later passes
	 * copied some of them again */
	uint64_t data, zero;
	listed_pages(&d, "writer", c1.generation, &data, &zero);
	fprintf(stderr, "  gen 1: result %llu data %llu zero (%llu copied), listed %llu data %llu "
		"zero\n", (unsigned long long)c1.data_pages, (unsigned long long)c1.zero_pages,
		(unsigned long long)c1.copied_pages, (unsigned long long)data,
		(unsigned long long)zero);
	CHECK(c1.data_pages == data && c1.zero_pages == zero && c1.pages == data + zero,
	      "checkpoint result and images list disagree");
	CHECK(c1.copied_pages >= c1.pages, "copied %llu < held %llu",
	      (unsigned long long)c1.copied_pages, (unsigned long long)c1.pages);
	usleep(100000);
	struct ckpt c2 = stopped_checkpoint(&d, &w, "writer");
	fprintf(stderr, "  while writing: gen 2 %llu pages, pause %.2f ms\n",
		(unsigned long long)c2.pages, c2.pause_ms);
	check_pause_steps(&d, w.pid, &c2);
	char reply[64];
	CHECK(wl_cmd(&w, reply, sizeof(reply), "writer stop") == 0, "writer stop");
	CHECK(strtoull(reply + 3, NULL, 10) > 1000, "writer wrote only %s", reply + 3);
	wl_stop(&w);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit");
	wpmigd_cleanup(&d);
}

static void sums(struct wl *w, const char *const *names, size_t n, char out[][40])
{
	for (size_t i = 0; i < n; i++)
		CHECK(wl_cmd(w, out[i], 40, "sum %s", names[i]) == 0, "sum %s", names[i]);
}

static void test_restore(void)
{
	static const char *const args[] = { "--anon", "32M", "--memfd", "8M", "--file", "4M",
					    "--populate", "70", NULL };
	static const char *const names[] = { "anon", "memfd", "file" };
	char before[3][40], after[3][40], now[3][40], p[16], *err = NULL;
	struct wpmigd d = { 0 };
	struct wl w = { 0 };

	start_daemon(&d);
	start_wl(&w, args);
	snprintf(p, sizeof(p), "%d", (int)w.pid);
	sums(&w, names, 3, before);
	struct ckpt c1 = checkpoint(&d, w.pid, "r", false);
	CHECK(c1.rc == 0, "checkpoint: %s", c1.err);
	const char *const damage[] = { "write anon 500 1", "zero memfd 0 1024", "dontneed file 0 16",
				       "write file 50 2", "dontneed anon 100 200" };
	for (size_t i = 0; i < ARRAY_SIZE(damage); i++)
		CHECK(wl_cmd(&w, NULL, 0, "%s", damage[i]) == 0, "%s", damage[i]);
	char *out = NULL;
	int rc = CTL(&d, &out, &err, "--json", "restore", p, "r/1");
	CHECK(rc == 0, "restore: %s", err);
	free(err);
	/* ~1,800 pages differ: from 512 on the write-back is split between two
	 * threads (restore-write.c), so the sums below check that path too. */
	json_object *o = rc == 0 ? json_tokener_parse(out) : NULL;
	CHECK(ju64(o, "pages") >= 512, "restore wrote back %llu pages, expected >= 512",
	      (unsigned long long)ju64(o, "pages"));
	json_object_put(o);
	free(out);
	sums(&w, names, 3, after);
	for (int i = 0; i < 3; i++)
		CHECK(!strcmp(before[i], after[i]), "%s: %s before, %s after restore", names[i],
		      before[i], after[i]);

	/* Memory only: safe here, the process waits in the same read() as at
	 * the checkpoint; the output says what it risks. */
	for (size_t i = 0; i < ARRAY_SIZE(damage); i++)
		CHECK(wl_cmd(&w, NULL, 0, "%s", damage[i]) == 0, "%s", damage[i]);
	rc = CTL(&d, NULL, &err, "restore", p, "r/1", "--memory-only");
	CHECK(rc == 0 && strstr(err, "warning: memory only: every thread kept its registers"),
	      "restore --memory-only: %d %s", rc, err);
	free(err);
	sums(&w, names, 3, after);
	for (int i = 0; i < 3; i++)
		CHECK(!strcmp(before[i], after[i]), "%s: %s before, %s after --memory-only", names[i],
		      before[i], after[i]);

	/* A layout that no longer matches: refused, nothing written. */
	CHECK(wl_cmd(&w, NULL, 0, "mmap extra anon 1M") == 0, "mmap extra");
	struct ckpt c2 = checkpoint(&d, w.pid, "r", false);
	CHECK(c2.rc == 0 && c2.generation == 2, "checkpoint 2: %s", c2.err);
	CHECK(wl_cmd(&w, NULL, 0, "munmap extra") == 0 && wl_cmd(&w, NULL, 0, "write anon 100 9") == 0,
	      "change layout and content");
	sums(&w, names, 3, now);
	rc = CTL(&d, NULL, &err, "restore", p, "r/2");
	CHECK(rc == 1 && strstr(err, "differ from the checkpoint's") &&
	      strstr(err, "nothing was changed"), "layout mismatch not refused: %d %s", rc, err);
	free(err);
	sums(&w, names, 3, after);
	for (int i = 0; i < 3; i++)
		CHECK(!strcmp(now[i], after[i]), "%s changed by a refused restore", names[i]);
	wl_stop(&w);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit");
	wpmigd_cleanup(&d);
}

static int count_entries(const char *dir, const char *prefix)
{
	DIR *dd = opendir(dir);
	struct dirent *de;
	int n = 0;

	while (dd && (de = readdir(dd)))
		n += !strncmp(de->d_name, prefix, strlen(prefix));
	if (dd)
		closedir(dd);
	return n;
}

static void test_kill(void)
{
	static const char *const args[] = { "--anon", "768M", "--populate", "100", "--selfcheck", NULL };
	struct wpmigd d = { 0 };
	struct wl w = { 0 };
	char reply[256], *out = NULL;

	start_daemon(&d);
	start_wl(&w, args);
	struct ckpt c1 = checkpoint(&d, w.pid, "k", false);
	CHECK(c1.rc == 0, "first checkpoint: %s", c1.err);
	/* A full generation into another set takes long: kill the daemon in it. */
	char p[16];
	snprintf(p, sizeof(p), "%d", (int)w.pid);
	pid_t ctl = fork();
	if (ctl == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		dup2(null, 2);
		execl(getenv("WPMIG_CTL"), "wpmig-ctl", "--socket", d.sock, "checkpoint", p, "--set",
		      "k2", (char *)NULL);
		_exit(127);
	}
	usleep(250000);
	kill(d.pid, SIGKILL);
	waitpid(d.pid, NULL, 0);
	waitpid(ctl, NULL, 0);
	usleep(50000);
	CHECK(!stopped(w.pid), "target left stopped by a killed daemon");
	CHECK(proc_has_uffd_wp(w.pid) == 0, "registration left by a killed daemon");
	CHECK(wl_cmd(&w, reply, sizeof(reply), "check") == 0, "target self-check: %s", reply);
	/* A new daemon on the same state dir: k/1 verifies, k2 has nothing. */
	char state[192];
	snprintf(state, sizeof(state), "%s", d.state);
	const char *const argv[] = { wpmigd_exe(), "--control", d.sock, "--state-dir", state, NULL };
	unlink(d.sock);
	d.pid = spawn_logged(d.log, NULL, argv);
	for (int i = 0; i < 100 && access(d.sock, F_OK); i++)
		usleep(20000);
	CHECK(CTL(&d, NULL, NULL, "images", "verify", "k/1") == 0, "k/1 does not verify");
	/* The set may be listed, empty; no generation of it may be. */
	CHECK(CTL(&d, &out, NULL, "images", "list") == 0 &&
	      (!strstr(out, "k2 (pid") || strstr(out, "k2 (pid 0): 0 generations")),
	      "partial generation listed:\n%s", out);
	free(out);
	char dir[256];
	snprintf(dir, sizeof(dir), "%s/images/k2", state);
	CHECK(count_entries(dir, ".tmp") == 0, "temp files left in %s", dir);
	struct ckpt c2 = checkpoint(&d, w.pid, "k", false);
	CHECK(c2.rc == 0 && c2.generation == 2, "checkpoint after restart: %s", c2.err);
	wl_stop(&w);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit");
	wpmigd_cleanup(&d);
}

static void test_enospc(void)
{
	static const char *const args[] = { "--anon", "4M", "--populate", "100", NULL };
	struct wpmigd d = { 0 };
	struct wl w = { 0 };
	char *out = NULL, dir[256];

	start_daemon(&d);
	/* Move the daemon onto a 24 MiB tmpfs state dir. */
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon stop");
	if (mount("tmpfs", d.state, "tmpfs", 0, "size=24m") < 0) {
		wpmigd_cleanup(&d);
		SKIP("cannot mount a tmpfs: %s", strerror(errno));
	}
	const char *const argv[] = { wpmigd_exe(), "--control", d.sock, "--state-dir", d.state, NULL };
	d.pid = spawn_logged(d.log, NULL, argv);
	for (int i = 0; i < 100 && access(d.sock, F_OK); i++)
		usleep(20000);
	start_wl(&w, args);
	struct ckpt c1 = checkpoint(&d, w.pid, "full-disk", false);
	CHECK(c1.rc == 0, "small checkpoint: %s", c1.err);
	CHECK(wl_cmd(&w, NULL, 0, "mmap big anon 64M") == 0 && wl_cmd(&w, NULL, 0, "writeall big") == 0,
	      "workload grows");
	struct ckpt c2 = checkpoint(&d, w.pid, "full-disk", false);
	CHECK(c2.rc == 1 && (strstr(c2.err, "space") || strstr(c2.err, "ENOSPC")),
	      "full disk not reported: %d %s", c2.rc, c2.err);
	CHECK(CTL(&d, NULL, NULL, "images", "verify", "full-disk/1") == 0, "gen 1 damaged");
	CHECK(CTL(&d, &out, NULL, "images", "list") == 0 && !strstr(out, "\n  2 "),
	      "partial generation listed:\n%s", out);
	free(out);
	snprintf(dir, sizeof(dir), "%s/images/full-disk", d.state);
	CHECK(count_entries(dir, ".tmp") == 0, "temp files left in %s", dir);
	/* Space back: the next generation carries what the failed one had. */
	CHECK(wl_cmd(&w, NULL, 0, "munmap big") == 0, "munmap big");
	struct ckpt c3 = checkpoint(&d, w.pid, "full-disk", true);
	CHECK(c3.rc == 0 && c3.generation == 2, "checkpoint after ENOSPC: %s", c3.err);
	if (c3.rc == 0)
		CHECK(export_compare(&d, "full-disk", 2, w.pid) == 0, "export after ENOSPC differs");
	kill(w.pid, SIGCONT);
	wl_stop(&w);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit");
	umount2(d.state, MNT_DETACH);
	wpmigd_cleanup(&d);
}

static void test_flip(void)
{
	static const char *const args[] = { "--anon", "8M", "--populate", "100", NULL };
	struct wpmigd d = { 0 };
	struct wl w = { 0 };
	char dir[256], path[512], *out = NULL;
	struct dirent *de;

	start_daemon(&d);
	start_wl(&w, args);
	CHECK(checkpoint(&d, w.pid, "flip", false).rc == 0, "checkpoint");
	snprintf(dir, sizeof(dir), "%s/images/flip", d.state);
	DIR *dd = opendir(dir);
	path[0] = 0;
	while (dd && (de = readdir(dd)))
		if (de->d_name[0] != '.')
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
	if (dd)
		closedir(dd);
	int fd = open(path, O_RDWR);
	struct stat st;
	CHECK(fd >= 0 && fstat(fd, &st) == 0, "generation file %s", path);
	/* One byte in the first third: inside chunk data, not the index. */
	off_t off = st.st_size / 3;
	uint8_t b;
	CHECK(pread(fd, &b, 1, off) == 1, "read");
	b ^= 0x40;
	CHECK(pwrite(fd, &b, 1, off) == 1, "write");
	close(fd);
	int rc = CTL(&d, &out, NULL, "images", "verify", "flip/1");
	CHECK(rc == 1 && strstr(out, "BAD") && strstr(out, "region") && strstr(out, "page"),
	      "flipped byte not caught with region and page: %d\n%s", rc, out);
	fprintf(stderr, "  %s", out);
	free(out);
	wl_stop(&w);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit");
	wpmigd_cleanup(&d);
}

static void test_bad(void)
{
	static const char *const args[] = { "--anon", "512M", "--populate", "100", NULL };
	struct wpmigd d = { 0 };
	struct wl w = { 0 };
	char *err = NULL, p[16];

	start_daemon(&d);
	int rc = CTL(&d, NULL, &err, "checkpoint", "999999");
	CHECK(rc == 1 && strstr(err, "no such process"), "unknown pid: %d %s", rc, err);
	free(err);
	rc = CTL(&d, NULL, &err, "checkpoint", "2");
	CHECK(rc == 1 && strstr(err, "kernel thread"), "kthread: %d %s", rc, err);
	free(err);
	start_wl(&w, args);
	snprintf(p, sizeof(p), "%d", (int)w.pid);
	CHECK(CTL(&d, NULL, NULL, "track", p) == 0, "track");
	pid_t first = fork();
	if (first == 0) {
		execl(getenv("WPMIG_CTL"), "wpmig-ctl", "--socket", d.sock, "checkpoint", p, (char *)NULL);
		_exit(127);
	}
	usleep(100000);
	rc = CTL(&d, NULL, &err, "checkpoint", p);
	CHECK(rc == 1 && strstr(err, "CHECKPOINTING"), "second concurrent checkpoint: %d %s", rc, err);
	free(err);
	CHECK(wait_exit(first, 30000) == 0, "first checkpoint failed");
	CHECK(CTL(&d, NULL, NULL, "status") == 0, "daemon stopped serving");
	wl_stop(&w);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit");
	wpmigd_cleanup(&d);
}

static void test_responsive(void)
{
	static const char *const args[] = { "--anon", "1G", "--populate", "100", NULL };
	struct wpmigd d = { 0 };
	struct wl w = { 0 };
	char p[16];

	start_daemon(&d);
	start_wl(&w, args);
	snprintf(p, sizeof(p), "%d", (int)w.pid);
	pid_t c = fork();
	if (c == 0) {
		execl(getenv("WPMIG_CTL"), "wpmig-ctl", "--socket", d.sock, "checkpoint", p, (char *)NULL);
		_exit(127);
	}
	double worst = 0;
	int n = 0, fd = raw_connect(d.sock);
	while (waitpid(c, NULL, WNOHANG) == 0) {
		uint64_t t0 = now_ns();
		CHECK(raw_status(fd, 1000) == 0, "status failed during a checkpoint");
		double ms = ns_to_ms(now_ns() - t0);
		worst = ms > worst ? ms : worst;
		n++;
		usleep(10000);
	}
	close(fd);
	fprintf(stderr, "  %d status requests during a 1 GiB checkpoint, worst %.2f ms\n", n, worst);
	CHECK(n >= 5 && worst < 50, "status worst %.2f ms over %d", worst, n);
	wl_stop(&w);
	CHECK(wpmigd_stop(&d, 5000) == 0, "daemon exit");
	wpmigd_cleanup(&d);
}

int main(int argc, char **argv)
{
	static const struct subtest tests[] = {
		{ "kinds", test_kinds }, { "writer", test_writer }, { "restore", test_restore },
		{ "kill", test_kill }, { "enospc", test_enospc }, { "flip", test_flip },
		{ "bad", test_bad }, { "responsive", test_responsive },
	};

	return run_subtests(argc, argv, tests, ARRAY_SIZE(tests));
}
