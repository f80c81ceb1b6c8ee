// SPDX-License-Identifier: GPL-2.0-only
#include "peer-harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "basic/util.h"

/* Key files made by this process, removed with their directories at exit. */
static char made_keys[8][192];

static void remove_keys(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(made_keys) && made_keys[i][0]; i++) {
		unlink(made_keys[i]);
		*strrchr(made_keys[i], '/') = '\0';
		rmdir(made_keys[i]);
	}
}

static void remember_key(const char *path)
{
	for (size_t i = 0; i < ARRAY_SIZE(made_keys); i++) {
		if (made_keys[i][0])
			continue;
		if (i == 0)
			atexit(remove_keys);
		snprintf(made_keys[i], sizeof(made_keys[i]), "%s", path);
		return;
	}
}

int pk_make(char *buf, size_t len)
{
	char dir[] = "/tmp/wpmig-key.XXXXXX";
	uint8_t key[32];
	FILE *f;
	int fd;

	if (!mkdtemp(dir))
		return -errno;
	snprintf(buf, len, "%s/peer.key", dir);
	remember_key(buf);
	fd = open(buf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f)
		return -errno;
	if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
		fclose(f);
		return -EIO;
	}
	for (size_t i = 0; i < sizeof(key); i++)
		fprintf(f, "%02x", key[i]);
	fputc('\n', f);
	return fclose(f) == 0 ? 0 : -errno;
}

static int write_conf(struct pd *p)
{
	FILE *f = fopen(p->d.conf, "we");

	if (!f)
		return -errno;
	if (p->key[0])
		fprintf(f, "peer_key_file = %s\n", p->key);
	if (p->listen[0])
		fprintf(f, "listen = %s\n", p->listen);
	fputs(p->extra, f);
	fputc('\n', f);
	return fclose(f) == 0 ? 0 : -errno;
}

/* What a daemon that did not start said (its directory goes with cleanup). */
static void tell_start_failure(struct pd *p, const char *exe, const char *what)
{
	char *log = NULL;

	read_full_file(p->d.log, &log, NULL);
	fprintf(stderr, "%s %s; its log:\n%s", exe, what, log ? log : "(none)\n");
	free(log);
}

static int spawn(struct pd *p)
{
	const char *argv[16];
	int n = 0;

	if (p->netns[0]) {
		argv[n++] = "ip";
		argv[n++] = "netns";
		argv[n++] = "exec";
		argv[n++] = p->netns;
	}
	if (p->cpus[0]) {
		argv[n++] = "taskset";
		argv[n++] = "-c";
		argv[n++] = p->cpus;
	}
	const char *exe = argv[n++] = wpmigd_exe();
	argv[n++] = "--config";
	argv[n++] = p->d.conf;
	argv[n++] = "--control";
	argv[n++] = p->d.sock;
	argv[n++] = "--state-dir";
	argv[n++] = p->d.state;
	argv[n] = NULL;
	p->d.pid = spawn_logged(p->d.log, NULL, argv);
	if (p->d.pid < 0) {
		int e = errno;
		fprintf(stderr, "cannot run %s: %s\n", exe, strerror(e));
		return -e;
	}
	int r = wpmigd_wait_started(&p->d);

	if (r < 0)
		tell_start_failure(p, exe, r == -ECHILD ? "exited at start"
						    : "did not open its control socket within 30 s");
	return r;
}

int pd_start(struct pd *p, const char *key, const char *listen, const char *extra,
	     const char *netns)
{
	snprintf(p->d.dir, sizeof(p->d.dir), "/tmp/wpmig-peer.XXXXXX");
	if (!mkdtemp(p->d.dir))
		return -errno;
	snprintf(p->d.sock, sizeof(p->d.sock), "%s/control.sock", p->d.dir);
	snprintf(p->d.state, sizeof(p->d.state), "%s/state", p->d.dir);
	snprintf(p->d.conf, sizeof(p->d.conf), "%s/wpmigd.conf", p->d.dir);
	snprintf(p->d.log, sizeof(p->d.log), "%s/wpmigd.log", p->d.dir);
	snprintf(p->key, sizeof(p->key), "%s", key ? key : "");
	snprintf(p->listen, sizeof(p->listen), "%s", listen ? listen : "");
	snprintf(p->extra, sizeof(p->extra), "%s", extra ? extra : "");
	snprintf(p->netns, sizeof(p->netns), "%s", netns ? netns : "");
	int r = write_conf(p);
	return r < 0 ? r : spawn(p);
}

int pd_start_on(struct pd *p, const char *key, const char *listen, const char *extra,
		const char *cpus)
{
	snprintf(p->cpus, sizeof(p->cpus), "%s", cpus ? cpus : "");
	return pd_start(p, key, listen, extra, NULL);
}

int pd_restart(struct pd *p)
{
	if (p->d.pid > 0) {
		kill(p->d.pid, SIGKILL);
		waitpid(p->d.pid, NULL, 0);
		p->d.pid = 0;
	}
	return spawn(p);
}

void pd_cleanup(struct pd *p)
{
	if (p->d.pid > 0 && wpmigd_stop(&p->d, 10000) != 0)
		fprintf(stderr, "daemon %s did not stop cleanly; log %s\n", p->d.dir, p->d.log);
	wpmigd_cleanup(&p->d);
}

int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

int pd_checkpoint(struct pd *src, pid_t pid, const char *peer, const char *set,
		  bool leave_stopped, const char *more, struct ckres *res)
{
	const char *argv[16] = { "--json", "checkpoint" };
	char spid[16], *out = NULL, *err = NULL, extra[256] = "";
	int n = 2;

	snprintf(spid, sizeof(spid), "%d", (int)pid);
	argv[n++] = spid;
	if (peer) {
		argv[n++] = "--peer";
		argv[n++] = peer;
	}
	argv[n++] = "--set";
	argv[n++] = set;
	if (leave_stopped)
		argv[n++] = "--leave-stopped";
	if (more) {
		snprintf(extra, sizeof(extra), "%s", more);
		for (char *t = strtok(extra, " "); t && n < 15; t = strtok(NULL, " "))
			argv[n++] = t;
	}
	argv[n] = NULL;
	*res = (struct ckres){ 0 };
	res->rc = ctl_run(src->d.sock, &out, &err, argv);
	json_object *o = res->rc == 0 ? json_tokener_parse(out) : NULL;
	res->generation = ju64(o, "generation");
	res->parent = ju64(o, "parent");
	res->bytes = ju64(o, "bytes");
	res->raw_bytes = ju64(o, "raw_bytes");
	res->data_pages = ju64(o, "data_pages");
	res->pages = ju64(o, "pages");
	json_object *v;
	if (o && json_object_object_get_ex(o, "duration_ms", &v))
		res->duration_ms = json_object_get_double(v);
	if (o && json_object_object_get_ex(o, "pass_rows", &v))
		snprintf(res->pass_rows, sizeof(res->pass_rows), "%s",
			 json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
	snprintf(res->err, sizeof(res->err), "%s%s", err ? err : "", res->rc ? out : "");
	json_object_put(o);
	free(out);
	free(err);
	return res->rc;
}

int pd_generations(struct pd *p, const char *set, uint64_t *gens, int max)
{
	char *out = NULL;
	int n = 0;
	json_object *root, *sets, *g;

	if (CTL(&p->d, &out, NULL, "--json", "images", "list") != 0) {
		free(out);
		return -EIO;
	}
	root = json_tokener_parse(out);
	free(out);
	if (root && json_object_object_get_ex(root, "sets", &sets)) {
		for (size_t i = 0; i < json_object_array_length(sets); i++) {
			json_object *s = json_object_array_get_idx(sets, i), *name;
			if (!json_object_object_get_ex(s, "name", &name) ||
			    strcmp(json_object_get_string(name), set) ||
			    !json_object_object_get_ex(s, "generations", &g))
				continue;
			for (size_t k = 0; k < json_object_array_length(g) && n < max; k++)
				gens[n++] = ju64(json_object_array_get_idx(g, k), "number");
		}
	}
	json_object_put(root);
	return n;
}

int pd_verify(struct pd *p, const char *set, uint64_t gen)
{
	char arg[256];
	char *err = NULL;
	int rc;

	snprintf(arg, sizeof(arg), "%s/%llu", set, (unsigned long long)gen);
	rc = CTL(&p->d, NULL, &err, "images", "verify", arg);
	if (rc)
		fprintf(stderr, "verify %s: %s\n", arg, err);
	free(err);
	return rc;
}

/* Mismatching pages of one exported region file against the process. */
static long compare_file(const char *path, const char *name, int mem)
{
	unsigned long start, end;
	long bad = 0;
	uint8_t a[4096], b[4096];
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || sscanf(name, "%lx-%lx.bin", &start, &end) != 2) {
		if (fd >= 0)
			close(fd);
		return -EINVAL;
	}
	for (unsigned long a0 = start; a0 < end; a0 += 4096) {
		if (pread(fd, a, 4096, (off_t)(a0 - start)) != 4096 ||
		    pread(mem, b, 4096, (off_t)a0) != 4096 || memcmp(a, b, 4096)) {
			if (bad++ < 3)
				fprintf(stderr, "page %#lx differs in %s\n", a0, name);
		}
	}
	close(fd);
	return bad;
}

long pd_compare(struct pd *p, const char *set, uint64_t gen, pid_t pid)
{
	char arg[256], dir[256], path[600], memp[64];
	long bad = 0, files = 0;
	struct dirent *de;
	DIR *dd;
	int mem;

	snprintf(arg, sizeof(arg), "%s/%llu", set, (unsigned long long)gen);
	snprintf(dir, sizeof(dir), "%s/export-%s-%llu", p->d.dir, set, (unsigned long long)gen);
	if (CTL(&p->d, NULL, NULL, "images", "export", arg, dir) != 0)
		return -EIO;
	snprintf(memp, sizeof(memp), "/proc/%d/mem", (int)pid);
	mem = open(memp, O_RDONLY | O_CLOEXEC);
	dd = opendir(dir);
	if (mem < 0 || !dd) {
		if (mem >= 0)
			close(mem);
		return -errno;
	}
	while ((de = readdir(dd))) {
		if (!strstr(de->d_name, ".bin"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		long r = compare_file(path, de->d_name, mem);
		bad += r < 0 ? 1 : r;
		files++;
		unlink(path);
	}
	closedir(dd);
	close(mem);
	rmdir(dir);
	return files ? bad : -ENOENT;
}

long pd_rss(struct pd *p)
{
	return p->d.pid > 0 ? proc_rss_kib(p->d.pid) : -1;
}

long pd_hwm(struct pd *p)
{
	char path[64], *text = NULL, *at;
	long kib = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)p->d.pid);
	if (p->d.pid > 0 && read_full_file(path, &text, NULL) == 0 && (at = strstr(text, "VmHWM:")))
		kib = strtol(at + 6, NULL, 10);
	free(text);
	return kib;
}

int proxy_start(struct proxy *x, const char *listen, const char *target, const char *mode)
{
	const char *argv[] = { test_bin("WPMIG_PROXY", "peer-proxy"), listen, target, mode, NULL };
	char dir[] = "/tmp/wpmig-proxy.XXXXXX";

	if (!mkdtemp(dir))
		return -errno;
	snprintf(x->log, sizeof(x->log), "%s/proxy.log", dir);
	x->pid = spawn_logged(x->log, NULL, argv);
	if (x->pid < 0)
		return -errno;
	/* It prints "LISTENING" once bound. */
	for (int i = 0; i < 300; i++) {
		char *text = NULL;
		bool up = read_full_file(x->log, &text, NULL) == 0 && strstr(text, "LISTENING");
		free(text);
		if (up)
			return 0;
		if (waitpid(x->pid, NULL, WNOHANG) == x->pid)
			return -ECHILD;
		usleep(10000);
	}
	return -ETIMEDOUT;
}

void proxy_stop(struct proxy *x)
{
	char *dir;

	if (x->pid > 0) {
		kill(x->pid, SIGTERM);
		wait_exit(x->pid, 2000);
		x->pid = 0;
	}
	if (!x->log[0] || getenv("WPMIG_KEEP_TEST_DIR"))
		return;
	unlink(x->log);
	dir = strdup(x->log);
	*strrchr(dir, '/') = 0;
	rmdir(dir);
	free(dir);
}
