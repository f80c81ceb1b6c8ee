// SPDX-License-Identifier: GPL-2.0-only
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "basic/util.h"
#include "track/reader.h"

int test_failures;

const char *test_bin(const char *env, const char *rel)
{
	char self[PATH_MAX], path[PATH_MAX + 64], *slash;
	const char *v = getenv(env);
	ssize_t n;

	if (v)
		return v;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return rel;
	self[n] = '\0';
	slash = strrchr(self, '/');
	if (!slash)
		return rel;
	*slash = '\0';
	snprintf(path, sizeof(path), "%s/%s", self, rel);
	/* From a program one folder down (tests/qemu/), the same path one up. */
	if (access(path, F_OK) < 0)
		snprintf(path, sizeof(path), "%s/../%s", self, rel);
	setenv(env, path, 0); /* kept there: the next call returns it */
	return getenv(env);
}

int wl_start(struct wl *w, const char *const *args)
{
	const char *bin = test_bin("WPMIG_WORKLOAD", "workload");
	int in[2], out[2];
	char line[256];
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
		return -errno;
	w->pid = fork();
	if (w->pid < 0)
		return -errno;
	if (w->pid == 0) {
		const char *argv[64] = { bin };
		size_t n = 1;
		for (; args && args[n - 1] && n < 63; n++)
			argv[n] = args[n - 1];
		argv[n] = NULL;
		dup2(in[0], 0);
		dup2(out[1], 1);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	w->in = fdopen(in[1], "w");
	w->out = fdopen(out[0], "r");
	setvbuf(w->in, NULL, _IOLBF, 0);
	if (!fgets(line, sizeof(line), w->out))
		return -EIO;
	if (strncmp(line, "READY", 5)) {
		fprintf(stderr, "workload: %s", line);
		return strstr(line, "Cannot allocate") ? -ENOMEM : -EIO;
	}
	return 0;
}

int wl_cmd(struct wl *w, char *reply, size_t len, const char *fmt, ...)
{
	char local[64];
	va_list ap;

	if (!reply) {
		reply = local;
		len = sizeof(local);
	}
	va_start(ap, fmt);
	vfprintf(w->in, fmt, ap);
	va_end(ap);
	fputc('\n', w->in);
	fflush(w->in);
	/* Replies may be long (page lists): read the whole line. */
	char *line = NULL;
	size_t cap = 0;
	if (getline(&line, &cap, w->out) <= 0) {
		free(line);
		return -EIO;
	}
	snprintf(reply, len, "%s", line);
	int ok = !strncmp(line, "OK", 2);
	free(line);
	return ok ? 0 : -EINVAL;
}

int wl_region(struct wl *w, const char *name, uint64_t *start, uint64_t *end)
{
	char *line = NULL;
	size_t cap = 0;
	int r = -ENOENT;

	fprintf(w->in, "regions\n");
	fflush(w->in);
	while (getline(&line, &cap, w->out) > 0) {
		char n[64], k[32];
		unsigned long a, b;

		if (!strncmp(line, "OK", 2))
			break;
		if (sscanf(line, "REGION %63s %31s %lx %lx", n, k, &a, &b) == 4 && !strcmp(n, name)) {
			*start = a;
			*end = b;
			r = 0;
		}
	}
	free(line);
	return r;
}

void wl_stop(struct wl *w)
{
	if (w->pid <= 0)
		return;
	fprintf(w->in, "quit\n");
	fclose(w->in);
	fclose(w->out);
	for (int i = 0; i < 200; i++) {
		if (waitpid(w->pid, NULL, WNOHANG) == w->pid) {
			w->pid = 0;
			return;
		}
		usleep(10000);
	}
	kill(w->pid, SIGKILL);
	waitpid(w->pid, NULL, 0);
	w->pid = 0;
}

struct fd_text {
	char *out;
	size_t len, cap;
};

static int append_fd(void *ud, const char *fd, const char *target)
{
	struct fd_text *t = ud;
	size_t need = strlen(fd) + strlen(target) + 3;

	if (t->len + need >= t->cap) {
		char *n = realloc(t->out, t->cap = (t->len + need) * 2);
		if (!n)
			return -ENOMEM;
		t->out = n;
	}
	t->len += (size_t)sprintf(t->out + t->len, "%s=%s\n", fd, target);
	return 0;
}

char *proc_fds(pid_t pid)
{
	struct fd_text t = { calloc(1, 4096), 0, 4096 };

	if (t.out)
		proc_fd_foreach(pid, append_fd, &t);
	return t.out;
}

int proc_has_uffd_wp(pid_t pid)
{
	char path[64];
	char *text;
	int found = 0;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	if (read_full_file(path, &text, NULL) < 0)
		return -1;
	for (char *l = strstr(text, "VmFlags:"); l; l = strstr(l + 1, "VmFlags:")) {
		char *e = strchr(l, '\n');
		size_t n = e ? (size_t)(e - l) : strlen(l);
		char save = l[n];
		l[n] = 0;
		if (strstr(l, " uw"))
			found = 1;
		l[n] = save;
	}
	free(text);
	return found;
}

uint64_t proc_anon_huge_kb(pid_t pid, uint64_t start)
{
	unsigned long long a, b, kb;
	char path[64], *text, *line, *save = NULL;
	uint64_t found = UINT64_MAX;
	bool in_vma = false;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	if (read_full_file(path, &text, NULL) < 0)
		return found;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (sscanf(line, "%llx-%llx ", &a, &b) == 2) {
			in_vma = a == start;
		} else if (in_vma && sscanf(line, "AnonHugePages: %llu", &kb) == 1) {
			found = kb;
			break;
		}
	}
	free(text);
	return found;
}

static int relayout(struct shadow *s, const struct pass *p)
{
	struct shadow_region *nr = calloc(p->n_regions ? p->n_regions : 1, sizeof(*nr));

	if (!nr)
		return -ENOMEM;
	for (size_t i = 0; i < p->n_regions; i++) {
		const struct pass_region *pr = &p->regions[i];
		nr[i] = (struct shadow_region){ pr->start, pr->end, calloc(1, pr->end - pr->start) };
		if (!nr[i].buf)
			return -ENOMEM;
		/* Carry content over by address from the previous layout. */
		for (size_t j = 0; j < s->n; j++) {
			uint64_t a = MAX(pr->start, s->r[j].start), b = MIN(pr->end, s->r[j].end);
			if (a < b)
				memcpy(nr[i].buf + (a - pr->start), s->r[j].buf + (a - s->r[j].start), b - a);
		}
	}
	shadow_free(s);
	s->r = nr;
	s->n = p->n_regions;
	return 0;
}

static uint8_t *shadow_at(const struct shadow *s, uint64_t addr)
{
	for (size_t i = 0; i < s->n; i++)
		if (addr >= s->r[i].start && addr < s->r[i].end)
			return s->r[i].buf + (addr - s->r[i].start);
	return NULL;
}

int shadow_apply(struct shadow *s, struct tracker *t, const struct pass *p)
{
	struct read_plan plan;
	uint64_t unreadable = 0;
	int r = relayout(s, p);

	if (r < 0)
		return r;
	for (size_t i = 0; i < p->zero.n; i++)
		for (uint64_t a = p->zero.r[i].start; a < p->zero.r[i].end; a += PAGE_SIZE_4K) {
			uint8_t *d = shadow_at(s, a);
			if (d)
				memset(d, 0, PAGE_SIZE_4K);
		}
	r = read_plan_build(p, 1 << 20, &plan);
	if (r < 0)
		return r;
	uint8_t *buf = malloc(1 << 20);
	for (size_t c = 0; r == 0 && c < plan.n_chunks; c++) {
		const struct chunk *ch = &plan.chunks[c];
		r = read_chunk(t, p, &plan, ch, buf, &unreadable);
		uint64_t off = 0;
		for (size_t k = 0; r == 0 && k < ch->n_segs; k++) {
			const struct range *g = &plan.segs[ch->first_seg + k];
			for (uint64_t a = g->start; a < g->end; a += PAGE_SIZE_4K, off += PAGE_SIZE_4K) {
				uint8_t *d = shadow_at(s, a);
				if (d)
					memcpy(d, buf + off, PAGE_SIZE_4K);
			}
		}
	}
	free(buf);
	read_plan_free(&plan);
	return r;
}

int shadow_compare(const struct shadow *s, pid_t pid, uint64_t *bad_pages)
{
	char path[64];
	uint8_t page[PAGE_SIZE_4K];
	int fd, printed = 0;

	*bad_pages = 0;
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (size_t i = 0; i < s->n; i++)
		for (uint64_t a = s->r[i].start; a < s->r[i].end; a += PAGE_SIZE_4K) {
			if (pread(fd, page, sizeof(page), (off_t)a) != (ssize_t)sizeof(page))
				continue; /* unreadable (guard, device): not compared */
			if (memcmp(page, s->r[i].buf + (a - s->r[i].start), sizeof(page))) {
				if (printed++ < 5)
					fprintf(stderr, "  mismatch at %llx (region %llx-%llx)\n",
						(unsigned long long)a, (unsigned long long)s->r[i].start,
						(unsigned long long)s->r[i].end);
				(*bad_pages)++;
			}
		}
	close(fd);
	return 0;
}

void shadow_free(struct shadow *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->r[i].buf);
	free(s->r);
	s->r = NULL;
	s->n = 0;
}

uint64_t missing_pages(const struct pass *p, uint64_t start, const uint64_t *pages, size_t n)
{
	uint64_t missing = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t a = start + pages[i] * PAGE_SIZE_4K;
		if (!range_set_contains(&p->data, a, a + PAGE_SIZE_4K) &&
		    !range_set_contains(&p->zero, a, a + PAGE_SIZE_4K))
			missing++;
	}
	return missing;
}
