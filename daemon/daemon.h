/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * wpmigd's top-level state: the event loop, settings, the control socket,
 * the worker pool and the sessions; signals, systemd notification and
 * the end of a session's jobs.  Verb handlers live in cmd-*.c and are
 * listed in verbs.c.
 */
#pragma once

#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "basic/job.h"
#include "control/control.h"
#include "control/session.h"
#include "peer/auth.h"
#include "peer/cache.h"
#include "qemu/target.h"

struct store;
struct stop_deadline;
struct pipeline;
struct peer_server;
struct qemu_targets;
struct migration;
struct daemon;

/*
 * A verb the control socket serves.  Its handler runs on the loop thread
 * with the decoded request (freed when it returns) and answers req exactly
 * once, at once or later, with request_reply() or request_fail(); it may
 * send request_progress().  The table is verbs.c's, handed in by main.c.
 */
typedef void (*verb_handler)(struct daemon *d, struct request *req, const Wpmig__Request *msg);
struct verb {
	Wpmig__Request__VerbCase verb;
	const char *name;
	verb_handler handler;
};

struct daemon {
	struct event_base *base;
	struct config cfg;
	struct config_overrides ovr;
	struct control *control;
	struct job_pool *jobs;
	struct session_list sessions;
	struct store *store;        /* the local image store under state_dir */
	pthread_mutex_t store_lock; /* store calls from job threads, one at a time */
	struct pipeline *pipeline;  /* read/encode workers, made on first use */
	pthread_mutex_t pipeline_lock;
	struct peer_key peer_key;   /* from peer_key_file; empty: no peer protocol */
	struct peer_server *peer;   /* the peer port (listen), or NULL */
	struct pcache_budget peer_cache_budget; /* peer_cache: the delta caches of the
						   sessions' links, together */
	struct qemu_targets *targets; /* migrations received (incoming_qmp_dir) */
	struct migration *migrations; /* migrations sent (cmd-migrate.c), for status */
	const struct verb *verbs;   /* what the control socket serves */
	size_t n_verbs;
	struct event *sig_term, *sig_int, *sig_hup, *watchdog;
	int state_lock_fd;
	uint64_t started_ns;
	unsigned debug_job_delay_ms; /* $WPMIGD_DEBUG_JOB_DELAY_MS, tests only */
	char debug_job_stuck[32];     /* $WPMIGD_DEBUG_JOB_STUCK=NAME:MS, tests only */
	unsigned debug_job_stuck_ms;
	struct stop_deadline *stop_deadline; /* the stop's watchdog (daemon-stop.c) */
	uint64_t debug_restore_mem_max; /* $WPMIGD_DEBUG_RESTORE_MEM_MAX, tests only */
	bool stopping;
};

int daemon_init(struct daemon *d, const struct config_overrides *ovr, const struct verb *verbs,
		size_t n_verbs);
/* Serve until SIGTERM/SIGINT and a clean shutdown; 0 or negative errno. */
int daemon_run(struct daemon *d);
void daemon_done(struct daemon *d);


/*
 * Call on the loop when a job on session s has finished (after clearing
 * s->job and leaving the job's state): a session whose target exited, or
 * any session while the daemon stops, goes on to DETACHING.
 */
void daemon_session_settle(struct daemon *d, struct session *s);
/*
 * Attach pid in a new session (answering req on failure); once TRACKING,
 * then() runs on the loop and owns req and userdata.  When then() will not
 * run (the attach failed, the target exited, the daemon stops) userdata is
 * given to drop() instead, exactly once; on a negative return neither runs
 * and userdata stays the caller's.
 */
typedef void (*session_attached_fn)(struct daemon *d, struct session *s, struct request *req,
				    void *userdata);
int daemon_session_attach(struct daemon *d, struct request *req, pid_t pid,
			  session_attached_fn then, void (*drop)(void *userdata), void *userdata);
/* The same, tracking only the mappings overlapping only (a QEMU guest's RAM
 * backends; kept in s->qemu_ram). */
int daemon_session_attach_only(struct daemon *d, struct request *req, pid_t pid,
			       const struct range_set *only, session_attached_fn then,
			       void (*drop)(void *userdata), void *userdata);
/* Worker side: the shared pipeline, made on first use. */
int daemon_pipeline(struct daemon *d, struct pipeline **ret);

/* Start DETACHING s (its tracker is detached on a worker) and answer req
 * (may be NULL) with the final SessionInfo once DETACHED. */
void daemon_session_detach(struct daemon *d, struct session *s, struct request *req);
/*
 * Loop, s idle: if its target ran exec() (its tracked mm is gone, the PID
 * lives on), log it and end s at once: true, and s is freed.  The session
 * ends rather than follows the new program: nothing of the old image
 * applies to it; a checkpoint after it attaches afresh (a full generation).
 */
bool daemon_session_execd(struct daemon *d, struct session *s);
/* Free s (no tracker, no job) and see whether a shutdown is complete. */
void daemon_session_end(struct daemon *d, struct session *s);
/* Whether a checkpoint of s into set, at peer (NULL: the local store), may
 * be an increment over s's last generation: only over what this session
 * wrote to the same set in the same place.  Process and VM checkpoints. */
bool daemon_session_continues(const struct session *s, const char *set, const char *peer);
/* A job's progress() callback hands its report to the client this way. */
void daemon_forward_progress(struct request *req, const struct job_progress *p);
/* Worker side, at the start of a job's run(): the test-only delay. */
int daemon_job_delay(const struct daemon *d, struct job *j);
/*
 * daemon-stop.c: once stopping, exit after stop_timeout seconds even if a
 * job is stuck (the kernel then releases what it held); end: the daemon
 * finished in time.
 */
int daemon_stop_deadline_start(struct daemon *d);
void daemon_stop_deadline_end(struct daemon *d);
/* Refresh the STATUS= line systemd shows. */
void daemon_notify_status(struct daemon *d);
/* While stopping: once no session and no job is left, end the loop. */
void daemon_maybe_finish(struct daemon *d);

/* daemon-peer.c: the key, the peer port, and a session's link to a peer. */
int daemon_peer_init(struct daemon *d);
void daemon_peer_reload(struct daemon *d);
void daemon_peer_stop(struct daemon *d);
void daemon_peer_done(struct daemon *d);
/* Loop: s->link to addr (a new one if s had a link elsewhere). */
int daemon_peer_link(struct daemon *d, struct session *s, const char *addr);

/* status: QEMU migrations sent (cmd-migrate.c) and received (qemu/target.c);
 * the buffer holds the strings, fill it on the loop and use it at once. */
struct migrations_buf {
	Wpmig__MigrationInfo info[32], *ptrs[32];
	struct qemu_target_info targets[16];
};
size_t daemon_migrations_info(struct daemon *d, struct migrations_buf *b);
