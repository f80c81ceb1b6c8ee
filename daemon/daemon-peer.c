// SPDX-License-Identifier: GPL-2.0-only
/*
 * The daemon's side of the peer protocol: the pre-shared key (refused if
 * anyone but us may read it), the peer port when `listen` is set, and the
 * link a session keeps to the peer it streams to.
 */
#include <errno.h>
#include <string.h>
#include <sys/sysinfo.h>

#include "daemon.h"
#include "basic/log.h"
#include "basic/util.h"
#include "peer/io.h"
#include "peer/link.h"
#include "peer/server.h"
#include "peer/wire.h"

#define PEER_WINDOW (16u << 20) /* unacknowledged bytes: docs/protocol.md */

static int load_key(const struct config *cfg, struct peer_key *k)
{
	char why[512];
	int r;

	if (!cfg->peer_key_file)
		return 0;
	r = peer_key_load(cfg->peer_key_file, k, why, sizeof(why));
	if (r < 0)
		return log_error_errno(r, "peer_key_file = %s: %s", cfg->peer_key_file, why);
	return 0;
}

static uint32_t cache_slots(const struct config *cfg)
{
	return (uint32_t)MIN(cfg->peer_cache / PAGE_SIZE_4K, (uint64_t)PEER_MAX_CACHE_SLOTS);
}

int daemon_peer_init(struct daemon *d)
{
	struct peer_server_opts o = {
		.listen = d->cfg.listen, .key = &d->peer_key, .cache_slots = cache_slots(&d->cfg),
		.window = PEER_WINDOW, .max_connections = d->cfg.peer_max_connections,
		.timeout_ms = MIN(d->cfg.peer_timeout, 30u) * 1000, .workers = MIN(get_nprocs(), 8),
		.zstd_level = d->cfg.zstd_level, .store = d->store, .store_lock = &d->store_lock,
		.verify_pages = d->cfg.peer_verify_pages,
		.targets = &qemu_target_ops,
	};
	char why[256];
	int r = load_key(&d->cfg, &d->peer_key);

	if (r < 0)
		return r;
	pcache_budget_set(&d->peer_cache_budget, cache_slots(&d->cfg));
	r = qemu_targets_new(d->cfg.incoming_qmp_dir, &d->targets);
	if (r < 0)
		return r;
	o.targets_ud = d->targets;
	if (!d->cfg.listen)
		return 0;
	/* The address first: a listen that cannot work is the first thing to fix. */
	r = peer_addr_resolve(d->cfg.listen, true, &(struct sockaddr_storage){ 0 },
			      &(socklen_t){ 0 }, why, sizeof(why));
	if (r < 0)
		return log_error_errno(r, "listen = %s: %s", d->cfg.listen, why);
	if (!d->peer_key.bytes)
		return log_error_errno(ENOKEY, "listen = %s needs peer_key_file: refusing to accept "
				       "unauthenticated peers", d->cfg.listen);
	return peer_server_open(d->base, &o, &d->peer);
}

void daemon_peer_reload(struct daemon *d)
{
	struct peer_key k = { 0 };

	pcache_budget_set(&d->peer_cache_budget, cache_slots(&d->cfg));
	if (d->peer)
		peer_server_set_verify(d->peer, d->cfg.peer_verify_pages);
	if (d->targets)
		qemu_targets_set_dir(d->targets, d->cfg.incoming_qmp_dir);
	if (load_key(&d->cfg, &k) < 0) {
		log_error("Keeping the previous peer key");
		return;
	}
	if (!k.bytes && d->peer) {
		log_error("peer_key_file removed while listening: keeping the previous key");
		return;
	}
	peer_key_free(&d->peer_key);
	d->peer_key = k;
	if (d->peer && peer_server_set_key(d->peer, &k) < 0)
		log_error("Cannot take the new peer key");
}

void daemon_peer_stop(struct daemon *d)
{
	peer_server_stop(d->peer);
}

void daemon_peer_done(struct daemon *d)
{
	peer_server_free(d->peer);
	d->peer = NULL;
	qemu_targets_free(d->targets);
	d->targets = NULL;
	peer_key_free(&d->peer_key);
}

int daemon_peer_link(struct daemon *d, struct session *s, const char *addr)
{
	struct peer_link_opts o = {
		.addr = addr, .key = &d->peer_key, .cache_slots = cache_slots(&d->cfg),
		.cache_budget = &d->peer_cache_budget,
		.window = PEER_WINDOW, .timeout_ms = d->cfg.peer_timeout * 1000,
	};

	if (!d->peer_key.bytes)
		return -ENOKEY;
	if (s->peer_link && !strcmp(peer_link_addr(s->peer_link), addr))
		return 0;
	peer_link_free(s->peer_link);
	s->peer_link = NULL;
	return peer_link_new(d->base, &o, &s->peer_link);
}
