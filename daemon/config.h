/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * wpmigd's settings: built-in defaults, then the config file (inih, flat
 * "key = value" lines, an optional [wpmigd] section), then the command
 * line.  SIGHUP re-reads the file and re-applies the same command line;
 * config_reload_apply() says what changed and what needs a restart.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "build-config.h"

#define WPMIGD_DEFAULT_CONTROL "/run/wpmigd/control.sock"
#define WPMIGD_DEFAULT_STATE_DIR "/var/lib/wpmig"
#define WPMIGD_DEFAULT_CONFIG WPMIG_SYSCONFDIR "/wpmig/wpmigd.conf"

struct config {
	/* fixed for the daemon's lifetime */
	char *control;
	char *state_dir;
	char *listen; /* HOST:PORT or unix:PATH, or NULL */
	unsigned workers;
	/* re-read on SIGHUP */
	char *control_group; /* a group allowed besides root, or NULL */
	char *peer_key_file;
	char *incoming_qmp_dir;   /* QMP sockets a migration may write into */
	unsigned max_connections;
	unsigned max_sessions;
	unsigned max_requests; /* in flight per connection */
	uint64_t max_output;   /* queued reply bytes per connection */
	int zstd_level;
	int log_level; /* LOG_ERR .. LOG_DEBUG */
	bool allow_pinned;
	/* the peer protocol (docs/protocol.md) */
	uint64_t peer_cache;      /* bytes of delta cache per connection; 0: no delta */
	int peer_zstd_level;      /* pages sent to a peer (docs/protocol.md) */
	unsigned peer_timeout;    /* seconds without progress before a link fails */
	unsigned peer_max_connections;
	bool peer_verify_pages;   /* receiver: decode every page on arrival */
	uint64_t max_bandwidth;   /* bytes per second a source sends; 0: unlimited */
	unsigned stop_timeout;    /* seconds a stop may take before we exit anyway */
	unsigned freeze_settle_ms; /* checkpoint: wait for woken threads before a freeze; 0: no */
	bool from_file;           /* a config file was read (not only defaults) */
};

/* What the command line set; it wins over the file, also after SIGHUP. */
struct config_overrides {
	const char *config_file;
	const char *control, *state_dir, *listen;
	int verbose; /* each -v raises the log level once */
};

void config_init(struct config *c);
void config_free(struct config *c);
/*
 * Defaults, file, overrides.  missing_ok: the default file may be missing
 * (at start-up; on a reload only if it was missing then too).  A file
 * given with --config must exist; neither may be anything but a regular
 * file.
 */
int config_load(const struct config_overrides *o, bool missing_ok, struct config *c);
/* Take the settings that may change at runtime from new into cur; log
 * the ones that would need a restart. */
void config_reload_apply(struct config *cur, struct config *newc);
int config_parse_log_level(const char *s);
/* gid of the control group, by name or number; -ENOENT for a name that
 * does not exist.  *named: the gid has a group entry. */
int config_group_gid(const struct config *c, gid_t *ret, bool *named);
