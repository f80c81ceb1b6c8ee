// SPDX-License-Identifier: GPL-2.0-only
#include "config.h"

#include "pipeline/codec.h"

#include <errno.h>
#include <fcntl.h>
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
		.peer_max_connections = 8,
		.stop_timeout = 20,
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

int config_check_addr(const char *addr)
{
	const char *colon;
	uint64_t port;

	if (!strncmp(addr, "unix:", 5))
		return addr[5] == '/' && strlen(addr + 5) < 108 ? 0 : -EINVAL;
	colon = strrchr(addr, ':');
	if (!*addr || colon == addr)
		return -EINVAL;
	/* HOST alone, [V6] or a bare IPv6 address: the default peer port */
	if (!colon || addr[strlen(addr) - 1] == ']' || (addr[0] != '[' && strchr(addr, ':') != colon))
		return 0;
	if (parse_u64(colon + 1, &port) < 0 || port == 0 || port > 65535)
		return -EINVAL;
	return 0;
}

static int parse_uint(const char *v, unsigned lo, unsigned hi, unsigned *ret)
{
	uint64_t n;

	if (parse_u64(v, &n) < 0 || n < lo || n > hi)
		return -EINVAL;
	*ret = (unsigned)n;
	return 0;
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

static int parse_level(const char *v, int *ret)
{
	char *end;
	long n = strtol(v, &end, 10);

	if (!*v || *end || n < -7 || n > 19)
		return -EINVAL;
	*ret = (int)n;
	return 0;
}

/* peer_verify: "pages" decodes and checks every page on arrival;
 * "payload" checks each chunk's payload sum (docs/protocol.md). */
static int parse_verify(const char *v, bool *pages)
{
	if (strcmp(v, "pages") && strcmp(v, "payload"))
		return -EINVAL;
	*pages = !strcmp(v, "pages");
	return 0;
}

static int set_key(struct config *c, const char *k, const char *v)
{
	int r;

	if (!strcmp(k, "control"))
		return *v == '/' ? (set_str(&c->control, v), 0) : -EINVAL;
	if (!strcmp(k, "state_dir"))
		return *v == '/' ? (set_str(&c->state_dir, v), 0) : -EINVAL;
	if (!strcmp(k, "listen"))
		return !*v || config_check_addr(v) == 0 ? (set_str(&c->listen, v), 0) : -EINVAL;
	if (!strcmp(k, "control_group"))
		return set_str(&c->control_group, v), 0;
	if (!strcmp(k, "peer_key_file"))
		return !*v || *v == '/' ? (set_str(&c->peer_key_file, v), 0) : -EINVAL;
	if (!strcmp(k, "incoming_qmp_dir"))
		return !*v || *v == '/' ? (set_str(&c->incoming_qmp_dir, v), 0) : -EINVAL;
	if (!strcmp(k, "max_connections"))
		return parse_uint(v, 1, 4096, &c->max_connections);
	if (!strcmp(k, "max_sessions"))
		return parse_uint(v, 1, 4096, &c->max_sessions);
	if (!strcmp(k, "max_requests"))
		return parse_uint(v, 1, 1024, &c->max_requests);
	if (!strcmp(k, "workers"))
		return parse_uint(v, 1, 64, &c->workers);
	if (!strcmp(k, "max_output"))
		return parse_size(v, &c->max_output) < 0 || c->max_output < 65536 ? -EINVAL : 0;
	if (!strcmp(k, "zstd_level"))
		return parse_level(v, &c->zstd_level);
	if (!strcmp(k, "peer_zstd_level"))
		return parse_level(v, &c->peer_zstd_level);
	if (!strcmp(k, "log_level"))
		return (r = config_parse_log_level(v)) < 0 ? r : (c->log_level = r, 0);
	if (!strcmp(k, "allow_pinned"))
		return parse_bool(v, &c->allow_pinned);
	if (!strcmp(k, "peer_cache"))
		return parse_size(v, &c->peer_cache) < 0 || c->peer_cache > (4ULL << 30) ? -EINVAL : 0;
	if (!strcmp(k, "peer_timeout"))
		return parse_uint(v, 1, 3600, &c->peer_timeout);
	if (!strcmp(k, "peer_max_connections"))
		return parse_uint(v, 1, 1024, &c->peer_max_connections);
	if (!strcmp(k, "peer_verify"))
		return parse_verify(v, &c->peer_verify_pages);
	if (!strcmp(k, "max_bandwidth"))
		return parse_size(v, &c->max_bandwidth);
	if (!strcmp(k, "stop_timeout"))
		return parse_uint(v, 1, 3600, &c->stop_timeout);
	return -ENOKEY;
}

static int ini_cb(void *user, const char *section, const char *key, const char *value)
{
	struct load_ctx *ctx = user;
	int r;

	if (*section && strcmp(section, "wpmigd")) {
		log_error("%s: unknown section [%s]", ctx->path, section);
		ctx->error = -EINVAL;
		return 1;
	}
	r = set_key(ctx->c, key, value);
	if (r == -ENOKEY)
		log_error("%s: unknown key '%s'", ctx->path, key);
	else if (r < 0)
		log_error("%s: bad value for %s: '%s'", ctx->path, key, value);
	if (r < 0)
		ctx->error = -EINVAL;
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
		if (config_check_addr(o->listen) < 0)
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
	cur->from_file |= n->from_file;
	if (cur->peer_max_connections != n->peer_max_connections)
		log_warning("peer_max_connections changes only on restart");
}

int config_group_gid(const struct config *c, gid_t *ret)
{
	struct group g, *res = NULL;
	char buf[4096];
	int r;

	if (!c->control_group)
		return -ENOENT;
	r = getgrnam_r(c->control_group, &g, buf, sizeof(buf), &res);
	if (r != 0 || !res) {
		uint64_t n;
		if (parse_u64(c->control_group, &n) == 0 && n < UINT32_MAX)
			return *ret = (gid_t)n, 0;
		return -ENOENT;
	}
	*ret = res->gr_gid;
	return 0;
}
