// SPDX-License-Identifier: GPL-2.0-only
#include "config.h"

#include "pipeline/checkpoint.h"
#include "pipeline/codec.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <grp.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>

#include "basic/log.h"
#include "basic/util.h"

struct load_ctx {
	struct config *c;
	const char *path;
	int error;
	bool seen[24]; /* by index in keys[] */
};

void config_init(struct config *c)
{
	*c = (struct config){
		.control = strdup(WPMIGD_DEFAULT_CONTROL),
		.state_dir = strdup(WPMIGD_DEFAULT_STATE_DIR),
		.workers = 2,
		.max_connections = 64,
		.max_sessions = 64,
		.max_requests = 16,
		.max_output = 4 << 20,
		.zstd_level = CODEC_DEFAULT_LEVEL,
		.log_level = LOG_INFO,
		.peer_cache = 64 << 20,
		.peer_zstd_level = CODEC_DEFAULT_LEVEL,
		.peer_timeout = 60,
		.peer_max_connections = 64, /* max_sessions: every session of one source */
		.stop_timeout = 20,
		.freeze_settle_ms = FREEZE_SETTLE_MS_DEFAULT,
	};
}

void config_free(struct config *c)
{
	free(c->control);
	free(c->state_dir);
	free(c->listen);
	free(c->control_group);
	free(c->peer_key_file);
	free(c->incoming_qmp_dir);
	*c = (struct config){ 0 };
}

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = *v ? strdup(v) : NULL;
}

int config_parse_log_level(const char *s)
{
	static const char *const names[] = {
		[LOG_ERR] = "error", [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
		[LOG_INFO] = "info", [LOG_DEBUG] = "debug",
	};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (names[i] && !strcasecmp(s, names[i]))
			return (int)i;
	return -EINVAL;
}

/* What a key takes, and the words that say so when a value is refused. */
enum key_kind { K_PATH, K_ADDR, K_STR, K_UINT, K_SIZE, K_LEVEL, K_LOG_LEVEL, K_BOOL, K_VERIFY };

struct key_def {
	const char *name;
	enum key_kind kind;
	size_t off;     /* in struct config */
	uint64_t lo, hi; /* K_UINT, K_SIZE */
	bool may_be_empty; /* K_PATH, K_ADDR: empty means none */
};

#define KEY(n, k, ...) { .name = #n, .kind = k, .off = offsetof(struct config, n), __VA_ARGS__ }
static const struct key_def keys[] = {
	KEY(control, K_PATH),
	KEY(state_dir, K_PATH),
	KEY(listen, K_ADDR, .may_be_empty = true),
	KEY(control_group, K_STR),
	KEY(peer_key_file, K_PATH, .may_be_empty = true),
	KEY(incoming_qmp_dir, K_PATH, .may_be_empty = true),
	KEY(max_connections, K_UINT, .lo = 1, .hi = 4096),
	KEY(max_sessions, K_UINT, .lo = 1, .hi = 4096),
	KEY(max_requests, K_UINT, .lo = 1, .hi = 1024),
	KEY(workers, K_UINT, .lo = 1, .hi = 64),
	KEY(max_output, K_SIZE, .lo = 65536, .hi = UINT64_MAX),
	KEY(zstd_level, K_LEVEL),
	KEY(peer_zstd_level, K_LEVEL),
	KEY(log_level, K_LOG_LEVEL),
	KEY(allow_pinned, K_BOOL),
	KEY(peer_cache, K_SIZE, .lo = 0, .hi = 4ULL << 30),
	KEY(peer_timeout, K_UINT, .lo = 1, .hi = 3600),
	KEY(peer_max_connections, K_UINT, .lo = 1, .hi = 1024),
	{ .name = "peer_verify", .kind = K_VERIFY,
	  .off = offsetof(struct config, peer_verify_pages) },
	KEY(max_bandwidth, K_SIZE, .lo = 0, .hi = UINT64_MAX),
	KEY(stop_timeout, K_UINT, .lo = 1, .hi = 3600),
	KEY(freeze_settle_ms, K_UINT, .lo = 0, .hi = 1000),
};
#undef KEY
_Static_assert(ARRAY_SIZE(keys) <= 24, "load_ctx.seen is too small");

static const struct key_def *find_key(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (!strcmp(keys[i].name, name))
			return &keys[i];
	return NULL;
}

static int parse_bool(const char *v, bool *ret)
{
	if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1"))
		*ret = true;
	else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0"))
		*ret = false;
	else
		return -EINVAL;
	return 0;
}

/* zstd levels: -7 .. 19, the number as parse_number() reads it. */
static int parse_level(const char *v, int *ret)
{
	bool neg = v[0] == '-';
	uint64_t n;

	if (parse_number(v + neg, neg ? 7 : 19, &n) < 0 || (neg && n == 0))
		return -EINVAL;
	*ret = neg ? -(int)n : (int)n;
	return 0;
}

static void expected(const struct key_def *k, char *why, size_t len)
{
	char hi[32];

	switch (k->kind) {
	case K_PATH:
		snprintf(why, len, "expected an absolute path%s", k->may_be_empty ? " or nothing" : "");
		break;
	case K_ADDR:
		snprintf(why, len, "expected HOST:PORT, [IPv6]:PORT, HOST or unix:/PATH, or nothing");
		break;
	case K_UINT:
		snprintf(why, len, "expected a decimal number from %llu to %llu (no sign, no 0x, "
			 "no leading zero)", (unsigned long long)k->lo, (unsigned long long)k->hi);
		break;
	case K_SIZE:
		if (k->hi == UINT64_MAX)
			snprintf(hi, sizeof(hi), "no limit");
		else
			snprintf(hi, sizeof(hi), "at most %lluG", (unsigned long long)(k->hi >> 30));
		snprintf(why, len, "expected a size: a decimal number (no sign, no 0x, no leading "
			 "zero) with an optional K, M, G or T suffix, at least %llu, %s",
			 (unsigned long long)k->lo, hi);
		break;
	case K_LEVEL:
		snprintf(why, len, "expected a zstd level from -7 to 19");
		break;
	case K_LOG_LEVEL:
		snprintf(why, len, "expected error, warning, notice, info or debug");
		break;
	case K_BOOL:
		snprintf(why, len, "expected yes or no");
		break;
	case K_VERIFY:
		snprintf(why, len, "expected payload or pages");
		break;
	case K_STR:
		snprintf(why, len, "unexpected value");
		break;
	}
}

/* Parse v for k into c: 0, or -EINVAL (the caller says what k expects). */
static int set_key(struct config *c, const struct key_def *k, const char *v)
{
	void *field = (char *)c + k->off;
	uint64_t n;
	int r;

	switch (k->kind) {
	case K_PATH:
		if (*v != '/' && (*v || !k->may_be_empty))
			return -EINVAL;
		set_str(field, v);
		return 0;
	case K_ADDR:
		if (*v && check_addr_syntax(v) < 0)
			return -EINVAL;
		set_str(field, v);
		return 0;
	case K_STR:
		set_str(field, v);
		return 0;
	case K_UINT:
		if (parse_number(v, k->hi, &n) < 0 || n < k->lo)
			return -EINVAL;
		*(unsigned *)field = (unsigned)n;
		return 0;
	case K_SIZE:
		if (parse_size(v, &n) < 0 || n < k->lo || n > k->hi)
			return -EINVAL;
		*(uint64_t *)field = n;
		return 0;
	case K_LEVEL:
		return parse_level(v, field);
	case K_LOG_LEVEL:
		r = config_parse_log_level(v);
		if (r < 0)
			return r;
		*(int *)field = r;
		return 0;
	case K_BOOL:
		return parse_bool(v, field);
	case K_VERIFY:
		/* "pages" decodes and checks every page on arrival; "payload"
		 * checks each chunk's payload sum (docs/protocol.md) */
		if (strcmp(v, "pages") && strcmp(v, "payload"))
			return -EINVAL;
		*(bool *)field = !strcmp(v, "pages");
		return 0;
	}
	return -EINVAL;
}

static int ini_cb(void *user, const char *section, const char *key, const char *value)
{
	struct load_ctx *ctx = user;
	const struct key_def *k;
	char why[256];

	if (*section && strcmp(section, "wpmigd")) {
		log_error("%s: unknown section [%s]", ctx->path, section);
		ctx->error = -EINVAL;
		return 1;
	}
	k = find_key(key);
	if (!k) {
		log_error("%s: unknown key '%s' (= '%s')", ctx->path, key, value);
		ctx->error = -EINVAL;
		return 1;
	}
	if (ctx->seen[k - keys]) {
		log_error("%s: %s = '%s': %s is set more than once; each key may appear once",
			  ctx->path, key, value, key);
		ctx->error = -EINVAL;
		return 1;
	}
	ctx->seen[k - keys] = true;
	if (set_key(ctx->c, k, value) < 0) {
		expected(k, why, sizeof(why));
		log_error("%s: bad value for %s: '%s': %s", ctx->path, key, value, why);
		ctx->error = -EINVAL;
	}
	return 1; /* go on: report every bad line at once */
}

/*
 * The file, opened without blocking (a FIFO) and checked to be a regular
 * file: a directory opens for reading too, and reads as an empty file
 * (defaults) with no error at all.
 */
static int open_file(const char *path, bool missing_ok, FILE **ret)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	struct stat st;

	*ret = NULL;
	if (fd < 0 && errno == ENOENT && missing_ok)
		return 0;
	if (fd < 0)
		return log_error_errno(errno, "Cannot open config file %s: %m", path);
	if (fstat(fd, &st) < 0)
		return log_error_errno(errno, "Cannot read config file %s: %m", path);
	if (!S_ISREG(st.st_mode))
		return log_error_errno(EINVAL, "Config file %s is not a regular file (%s)", path,
				       S_ISDIR(st.st_mode) ? "a directory" :
				       S_ISFIFO(st.st_mode) ? "a FIFO" : "a special file");
	*ret = fdopen(fd, "r");
	if (!*ret)
		return log_error_errno(errno, "Cannot read config file %s: %m", path);
	TAKE_FD(fd);
	return 0;
}

static int load_file(const char *path, bool missing_ok, struct config *c)
{
	struct load_ctx ctx = { .c = c, .path = path };
	FILE *f;
	int r;

	r = open_file(path, missing_ok, &f);
	if (r < 0 || !f)
		return r;
	c->from_file = true;
	r = ini_parse_file(f, ini_cb, &ctx);
	if (ferror(f) && !ctx.error) {
		log_error_errno(errno, "Cannot read config file %s: %m", path);
		ctx.error = -EIO;
	}
	fclose(f);
	if (r > 0 && !ctx.error)
		log_error("%s:%d: cannot parse this line", path, r);
	if (r != 0 || ctx.error)
		return -EINVAL;
	return 0;
}

static int apply_overrides(const struct config_overrides *o, struct config *c)
{
	if (o->control)
		set_str(&c->control, o->control);
	if (o->state_dir)
		set_str(&c->state_dir, o->state_dir);
	if (o->listen) {
		if (check_addr_syntax(o->listen) < 0)
			return log_error_errno(EINVAL, "--listen %s: expected HOST:PORT or unix:/PATH",
					       o->listen);
		set_str(&c->listen, o->listen);
	}
	c->log_level = MIN(LOG_DEBUG, c->log_level + o->verbose);
	return 0;
}

int config_load(const struct config_overrides *o, bool missing_ok, struct config *c)
{
	const char *path = o->config_file ? o->config_file : WPMIGD_DEFAULT_CONFIG;
	int r;

	config_init(c);
	r = load_file(path, missing_ok && !o->config_file, c);
	if (r == 0)
		r = apply_overrides(o, c);
	if (r == 0 && (!c->control || !c->state_dir))
		r = -ENOMEM;
	if (r < 0)
		config_free(c);
	return r;
}

static bool str_changed(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a && strcmp(a, b));
}

static void swap_str(char **a, char **b)
{
	char *t = *a;
	*a = *b;
	*b = t;
}

void config_reload_apply(struct config *cur, struct config *n)
{
	if (str_changed(cur->control, n->control) || str_changed(cur->state_dir, n->state_dir) ||
	    str_changed(cur->listen, n->listen) || cur->workers != n->workers)
		log_warning("control, state_dir, listen and workers change only on restart; "
			    "keeping the running values");
	swap_str(&cur->control_group, &n->control_group);
	swap_str(&cur->peer_key_file, &n->peer_key_file);
	swap_str(&cur->incoming_qmp_dir, &n->incoming_qmp_dir);
	cur->max_connections = n->max_connections;
	cur->max_sessions = n->max_sessions;
	cur->max_requests = n->max_requests;
	cur->max_output = n->max_output;
	cur->zstd_level = n->zstd_level;
	cur->log_level = n->log_level;
	cur->allow_pinned = n->allow_pinned;
	cur->peer_cache = n->peer_cache;
	cur->peer_zstd_level = n->peer_zstd_level;
	cur->peer_timeout = n->peer_timeout;
	cur->peer_verify_pages = n->peer_verify_pages;
	cur->max_bandwidth = n->max_bandwidth;
	cur->stop_timeout = n->stop_timeout;
	cur->freeze_settle_ms = n->freeze_settle_ms;
	cur->from_file |= n->from_file;
	if (cur->peer_max_connections != n->peer_max_connections)
		log_warning("peer_max_connections changes only on restart");
}

int config_group_gid(const struct config *c, gid_t *ret, bool *named)
{
	struct group g, *res = NULL;
	char buf[4096];
	uint64_t n;
	int r;

	*named = false;
	if (!c->control_group)
		return -ENOENT;
	r = getgrnam_r(c->control_group, &g, buf, sizeof(buf), &res);
	if (r == 0 && res) {
		*ret = res->gr_gid;
		*named = true;
		return 0;
	}
	if (parse_number(c->control_group, UINT32_MAX - 1, &n) < 0)
		return -ENOENT;
	*ret = (gid_t)n;
	r = getgrgid_r(*ret, &g, buf, sizeof(buf), &res);
	*named = r == 0 && res;
	return 0;
}
