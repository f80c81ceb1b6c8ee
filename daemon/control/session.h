/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * One session per tracked PID, with an explicit state.  Every change goes
 * through session_enter_state(), which checks it against the transition
 * table and logs "pid N: OLD -> NEW".
 *
 * To add a state: a value in enum session_state, its name in
 * state_names[] and its allowed next states in transitions[] (session.c).
 *
 * Ownership: s->tracker is used by the loop only while s->job is NULL;
 * while a job runs on the session, the job alone touches the tracker.
 */
#pragma once

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "control.pb-c.h"
#include "track/tracker.h"

enum session_state {
	SESSION_ATTACHING,     /* attach job queued or running */
	SESSION_TRACKING,      /* attached, idle */
	SESSION_CHECKPOINTING, /* a checkpoint job holds the tracker */
	SESSION_RESTORING,     /* a restore job writes the target's memory */
	SESSION_DETACHING,     /* detach job queued or running */
	SESSION_DETACHED,      /* terminal: about to be freed */
	SESSION_FAILED,        /* terminal unless a tracker remains to detach */
	_SESSION_STATE_MAX,
};

struct job;
struct peer_link;
struct session_list;

struct session {
	struct session_list *list;
	pid_t pid;
	char comm[32];
	char *set; /* image set of its checkpoints, NULL until one is named */
	enum session_state state;
	uint64_t created_ns, state_ns;
	int pidfd;
	struct event *exit_ev;
	bool exited;              /* the target is gone: end the session */
	struct tracker *tracker;  /* NULL before the attach and after the detach */
	struct job *job;          /* the one job working on this session */
	struct tracker_info info; /* refreshed while no job runs */
	uint64_t generation;      /* last generation written */
	char *dest;               /* peer it went to (NULL: the local store) */
	struct peer_link *peer_link; /* to a peer, kept between checkpoints */
	double dirty_rate;        /* written pages per second between passes */
	uint64_t last_pass_ns;
	Wpmig__PauseSteps last_pause; /* of the last checkpoint, as status shows it */
	double max_pause_ms;      /* the longest of this session's checkpoints */
	/* A QEMU guest (checkpoint --qmp): the RAM backends' mappings the
	 * tracker is limited to; empty for a process. */
	struct range_set qemu_ram;
	TAILQ_ENTRY(session) link;
};

struct session_list {
	struct event_base *base;
	TAILQ_HEAD(, session) head;
	unsigned n;
	/* Loop thread: the target of s exited (s->exited is set). */
	void (*on_exit)(struct session *s, void *userdata);
	void *userdata;
};

const char *session_state_name(enum session_state st);
/* -EINVAL (logged) when the transition is not in the table. */
int session_enter_state(struct session *s, enum session_state st);

void session_list_init(struct session_list *l, struct event_base *base,
		       void (*on_exit)(struct session *, void *), void *userdata);
/* A new ATTACHING session; watches the target's exit through a pidfd.
 * -ESRCH when pid does not exist. */
int session_new(struct session_list *l, pid_t pid, struct session **ret);
struct session *session_find(struct session_list *l, pid_t pid);
/* Unlink and free; the tracker must be detached and no job running. */
void session_free(struct session *s);

/* Take the tracker's counters now, if no job holds it. */
void session_refresh_info(struct session *s);
/* After a pass: written pages since the previous pass at now_ns. */
void session_account_pass(struct session *s, uint64_t written_pages, uint64_t now);
/* Strings point into s: use before s changes. */
void session_to_info(const struct session *s, Wpmig__SessionInfo *info, Wpmig__LinkInfo *link);
