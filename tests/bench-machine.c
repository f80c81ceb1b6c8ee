// SPDX-License-Identifier: GPL-2.0-only
/*
 * The machine, and the references every other figure is read against,
 * measured in the same run (medians of several repetitions):
 *
 *   facts     cores, CPU, kernel, THP setting, whether a read fault maps
 *             the shared zero page (the PFN it mapped, looked up in
 *             /proc/kpageflags: needs root), the cost of a plain page fault
 *             (first write to a fresh anonymous page)
 *   memcpy    1 GiB in 4 MiB pieces
 *   readv     process_vm_readv from another process: 1024 iovecs of 4 KiB
 *             per call, and one page per call
 *   zstd      one thread, the level in use (--level, default the daemon's
 *             -1), 1 MiB chunks of mixed pages (a third each zero, text,
 *             random) and of random pages
 *   tcp       one stream over loopback TCP
 *
 *   bench-machine [--quick] [--reps N] [--level L] [--mib N]
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include "bench-report.h"
#include "bench.h"
#include "pagegen.h"
#include "basic/util.h"

#define MiB (1ULL << 20)
#define SECTION "Machine and references"
#define MAX_REPS 15
#define KPF_ZERO_PAGE 24

struct opts {
	unsigned reps, mib;
	int level;
	bool quick;
};

static void print3(const char *what, double *v, unsigned n, const char *unit)
{
	double s[MAX_REPS] = { 0 };

	memcpy(s, v, n * sizeof(*v));
	double med = median(s, (int)n);
	printf("  %-52s %9.3f %-5s (min %.3f, max %.3f)\n", what, med, unit, s[0], s[n - 1]);
}

static void row(const char *id, const char *what, const char *unit, double *v, unsigned n,
		const char *note)
{
	print3(what, v, n, unit);
	brep_row(&(struct brep_row){ .id = id, .section = SECTION, .what = what, .unit = unit,
				     .v = v, .n = n, .note = note });
}

static char *first_line(const char *path)
{
	char *text = NULL;

	if (read_full_file(path, &text, NULL) < 0)
		return strdup("?");
	text[strcspn(text, "\n")] = 0;
	return text;
}

static char *cpu_model(void)
{
	char *text = NULL, *p, *m;

	if (read_full_file("/proc/cpuinfo", &text, NULL) < 0 || !(p = strstr(text, "model name")) ||
	    !(p = strchr(p, ':'))) {
		free(text);
		return strdup("?");
	}
	p += 2;
	m = strndup(p, strcspn(p, "\n"));
	free(text);
	return m;
}

/* What a read fault on fresh anonymous memory mapped: the zero page, a page
 * of its own, or (without root) unknown. */
static const char *zero_page(char *detail, size_t len)
{
	uint8_t *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t ent = 0, flags = 0;
	const char *res = "unknown";
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int kf = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);

	snprintf(detail, len, "needs root (/proc/kpageflags)");
	if (m != MAP_FAILED && pm >= 0 && kf >= 0) {
		*(volatile uint8_t *)m; /* the read fault */
		if (pread(pm, &ent, 8, (off_t)((uintptr_t)m / 4096 * 8)) == 8) {
			uint64_t pfn = ent & ((1ULL << 55) - 1);
			if (!(ent >> 63)) {
				res = "no";
				snprintf(detail, len, "nothing mapped after the read");
			} else if (pfn == 0) {
				snprintf(detail, len, "PFN hidden (not root?)");
			} else if (pread(kf, &flags, 8, (off_t)(pfn * 8)) == 8) {
				bool zero = flags >> KPF_ZERO_PAGE & 1;
				res = zero ? "yes" : "no";
				snprintf(detail, len, "%s (PFN %#llx, kpageflags %#llx)",
					 zero ? "the zero page" : "a page of its own",
					 (unsigned long long)pfn, (unsigned long long)flags);
			}
		}
	}
	if (pm >= 0)
		close(pm);
	if (kf >= 0)
		close(kf);
	if (m != MAP_FAILED)
		munmap(m, 4096);
	return res;
}

/* First write to each page of fresh anonymous memory: ns per page. */
static double fault_ns(uint64_t len, bool write)
{
	uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	volatile uint64_t sink = 0;

	if (m == MAP_FAILED || madvise(m, len, MADV_NOHUGEPAGE) < 0)
		return -1;
	uint64_t t0 = now_ns();
	for (uint64_t o = 0; o < len; o += 4096) {
		if (write)
			*(volatile uint8_t *)(m + o) = 1;
		else
			sink += *(volatile uint8_t *)(m + o);
	}
	double ns = (double)(now_ns() - t0) / (double)(len / 4096);
	munmap(m, len);
	return ns + 0 * (double)sink;
}

static void facts(const struct opts *o)
{
	struct utsname u;
	char detail[160], *model = cpu_model();
	char *thp = first_line("/sys/kernel/mm/transparent_hugepage/enabled");
	char *defrag = first_line("/sys/kernel/mm/transparent_hugepage/defrag");
	char *cmdline = first_line("/proc/cmdline");
	const char *zp = zero_page(detail, sizeof(detail));
	double wf[MAX_REPS] = { 0 }, rf[MAX_REPS] = { 0 };

	uname(&u);
	printf("machine: %ld cores (%s), kernel %s, THP %s (defrag %s), %.1f GiB\n",
	       sysconf(_SC_NPROCESSORS_ONLN), model, u.release, thp, defrag,
	       (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE) / (1 << 30));
	printf("  read fault maps the zero page: %s: %s%s\n", zp, detail,
	       strstr(cmdline, "pvm_no_zero_page=1") ? "; kernel command line has pvm_no_zero_page=1" : "");
	brep_fact("cores", "%ld", sysconf(_SC_NPROCESSORS_ONLN));
	brep_fact("cpu", "%s", model);
	brep_fact("kernel", "%s", u.release);
	brep_fact("thp", "%s", thp);
	brep_fact("thp_defrag", "%s", defrag);
	brep_fact("mem_gib", "%.1f",
		  (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE) / (1 << 30));
	brep_fact("zero_page", "%s", zp);
	brep_fact("zero_page_detail", "%s%s", detail,
		  strstr(cmdline, "pvm_no_zero_page=1") ? "; kernel command line: pvm_no_zero_page=1" : "");
	for (unsigned i = 0; i < o->reps; i++) {
		wf[i] = fault_ns((o->quick ? 16 : 256) * MiB, true) / 1e3;
		rf[i] = fault_ns((o->quick ? 16 : 256) * MiB, false) / 1e3;
	}
	row("machine.fault.write", "page fault: first write to an anonymous page", "us", wf, o->reps,
	    "the cost of a plain page fault on this machine");
	row("machine.fault.read", "page fault: first read of an anonymous page", "us", rf, o->reps,
	    NULL);
	free(model);
	free(thp);
	free(defrag);
	free(cmdline);
}

static void *populated(uint64_t len)
{
	uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	if (m == MAP_FAILED)
		return NULL;
	memset(m, 0x5a, len);
	return m;
}

static void bench_memcpy(const struct opts *o)
{
	uint64_t len = (uint64_t)o->mib * MiB, chunk = 4 * MiB;
	uint8_t *src = populated(len), *dst = populated(chunk);
	double v[MAX_REPS] = { 0 };

	if (!src || !dst)
		return;
	for (unsigned i = 0; i < o->reps; i++) {
		uint64_t t0 = now_ns();
		for (uint64_t off = 0; off < len; off += chunk)
			memcpy(dst, src + off, chunk);
		__asm__ volatile("" ::"r"(dst) : "memory");
		v[i] = (double)len / (double)(now_ns() - t0);
	}
	row("ref.memcpy", "memcpy in 4 MiB pieces", "GB/s", v, o->reps, NULL);
	munmap(src, len);
	munmap(dst, chunk);
}

/* A child holding len populated bytes at *addr until killed. */
static pid_t holder(uint64_t len, uint64_t *addr)
{
	int p[2];
	pid_t pid;

	if (pipe(p) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		uint8_t *m = populated(len);
		uint64_t a = (uint64_t)(uintptr_t)m;
		if (write(p[1], &a, 8) != 8)
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	if (pid < 0 || read(p[0], addr, 8) != 8 || !*addr) {
		close(p[0]);
		return -1;
	}
	close(p[0]);
	return pid;
}

static double readv_gbs(pid_t pid, uint64_t base, uint64_t len, uint8_t *buf, unsigned per_call)
{
	struct iovec l[1024], r[1024];
	uint64_t t0 = now_ns();

	for (uint64_t off = 0; off < len; off += (uint64_t)per_call * 4096) {
		for (unsigned k = 0; k < per_call; k++) {
			l[k] = (struct iovec){ buf + (uint64_t)k * 4096, 4096 };
			r[k] = (struct iovec){ (void *)(uintptr_t)(base + off + (uint64_t)k * 4096), 4096 };
		}
		if (process_vm_readv(pid, l, per_call, r, per_call, 0) != (ssize_t)per_call * 4096)
			return 0;
	}
	return (double)len / (double)(now_ns() - t0);
}

static void bench_readv(const struct opts *o)
{
	uint64_t len = (uint64_t)o->mib * MiB, base = 0;
	uint8_t *buf = populated(4 * MiB);
	double b[MAX_REPS] = { 0 }, one[MAX_REPS] = { 0 };
	pid_t pid = holder(len, &base);

	if (pid < 0 || !buf) {
		fprintf(stderr, "readv: no holder process\n");
		return;
	}
	for (unsigned i = 0; i < o->reps; i++) {
		b[i] = readv_gbs(pid, base, len, buf, 1024);
		one[i] = readv_gbs(pid, base, len / 4, buf, 1);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	row("ref.readv.batched", "process_vm_readv, 1024 pages per call", "GB/s", b, o->reps, NULL);
	row("ref.readv.page", "process_vm_readv, one page per call", "GB/s", one, o->reps, NULL);
	munmap(buf, 4 * MiB);
}

/* The workload's pages: kind by page (tests/workload.c fill_page), or all random. */
static void fill(uint8_t *buf, uint64_t len, bool random)
{
	for (uint64_t o = 0, i = 1; o < len; o += 4096, i++) {
		uint64_t s = i * 0x9E3779B97F4A7C15ULL + 1;
		pg_fill(buf + o, random ? PG_RANDOM : (int)(pg_rand(&s) % 3), &s);
	}
}

static double zstd_gbs(const uint8_t *buf, uint64_t len, int level)
{
	size_t cap = ZSTD_compressBound(MiB);
	void *out = malloc(cap);
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	uint64_t t0 = now_ns(), total = 0;

	ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level);
	for (uint64_t o = 0; o < len; o += MiB)
		total += ZSTD_compress2(cc, out, cap, buf + o, MiB);
	double gbs = (double)len / (double)(now_ns() - t0);
	ZSTD_freeCCtx(cc);
	free(out);
	return gbs + 0 * (double)total;
}

static void bench_zstd(const struct opts *o)
{
	uint64_t len = MIN((uint64_t)o->mib, 256ULL) * MiB;
	uint8_t *buf = populated(len);
	double m[MAX_REPS] = { 0 }, r[MAX_REPS] = { 0 };
	char what[96], id[32];

	if (!buf)
		return;
	fill(buf, len, false);
	for (unsigned i = 0; i < o->reps; i++)
		m[i] = zstd_gbs(buf, len, o->level);
	fill(buf, len, true);
	for (unsigned i = 0; i < o->reps; i++)
		r[i] = zstd_gbs(buf, len, o->level);
	snprintf(what, sizeof(what), "zstd level %d, one thread, mixed pages", o->level);
	snprintf(id, sizeof(id), "ref.zstd.mixed");
	row(id, what, "GB/s", m, o->reps, "1 MiB chunks: a third each zero, text-like, random pages");
	snprintf(what, sizeof(what), "zstd level %d, one thread, random pages", o->level);
	row("ref.zstd.random", what, "GB/s", r, o->reps, NULL);
	munmap(buf, len);
}

struct tcp_rx {
	int fd;
	uint64_t got;
};

static void *tcp_reader(void *arg)
{
	struct tcp_rx *rx = arg;
	uint8_t *buf = malloc(MiB);
	ssize_t n;

	while ((n = read(rx->fd, buf, MiB)) > 0)
		rx->got += (uint64_t)n;
	free(buf);
	return NULL;
}

/* One stream over 127.0.0.1, writer on this thread, reader on another. */
static double tcp_gbs(uint64_t len)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), c, one = 1;
	struct tcp_rx rx = { -1, 0 };
	pthread_t th;
	uint8_t *buf = populated(MiB);
	double gbs = 0;

	if (ls < 0 || !buf || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &al) < 0)
		goto out;
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c, (struct sockaddr *)&a, sizeof(a)) < 0 || (rx.fd = accept(ls, NULL, NULL)) < 0) {
		close(c);
		goto out;
	}
	pthread_create(&th, NULL, tcp_reader, &rx);
	uint64_t t0 = now_ns(), sent = 0;
	while (sent < len) {
		ssize_t n = write(c, buf, MiB);
		if (n <= 0)
			break;
		sent += (uint64_t)n;
	}
	shutdown(c, SHUT_WR);
	pthread_join(th, NULL);
	gbs = rx.got == len ? (double)len / (double)(now_ns() - t0) : 0;
	close(c);
	close(rx.fd);
out:
	if (ls >= 0)
		close(ls);
	if (buf)
		munmap(buf, MiB);
	return gbs;
}

static void bench_tcp(const struct opts *o)
{
	double v[MAX_REPS] = { 0 };

	for (unsigned i = 0; i < o->reps; i++)
		v[i] = tcp_gbs((uint64_t)o->mib * MiB * 2);
	row("ref.tcp", "loopback TCP, one stream", "GB/s", v, o->reps, NULL);
}

int main(int argc, char **argv)
{
	struct opts o = { .reps = 5, .mib = 1024, .level = -1 };

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			o.quick = true;
			o.reps = 1;
			o.mib = 64;
		} else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
			int n = atoi(argv[++i]); /* MIN, MAX: arguments evaluated twice */
			o.reps = (unsigned)MIN(MAX(n, 1), MAX_REPS);
		} else if (!strcmp(argv[i], "--level") && i + 1 < argc) {
			o.level = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--mib") && i + 1 < argc) {
			int n = atoi(argv[++i]);
			o.mib = (unsigned)MAX(n, 16);
		} else {
			fprintf(stderr, "usage: bench-machine [--quick] [--reps N] [--level L] [--mib N]\n");
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	facts(&o);
	printf("references (median of %u):\n", o.reps);
	bench_memcpy(&o);
	bench_readv(&o);
	bench_zstd(&o);
	bench_tcp(&o);
	return 0;
}
