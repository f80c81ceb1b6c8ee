// SPDX-License-Identifier: GPL-2.0-only
#include "control/session.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/util.h"
#include "peer/link.h"

static const char *const state_names[_SESSION_STATE_MAX] = {
	[SESSION_ATTACHING] = "ATTACHING",
	[SESSION_TRACKING] = "TRACKING",
	[SESSION_CHECKPOINTING] = "CHECKPOINTING",
	[SESSION_RESTORING] = "RESTORING",
	[SESSION_DETACHING] = "DETACHING",
	[SESSION_DETACHED] = "DETACHED",
	[SESSION_FAILED] = "FAILED",
};

#define S(x) (1u << SESSION_##x)
static const unsigned transitions[_SESSION_STATE_MAX] = {
	[SESSION_ATTACHING] = S(TRACKING) | S(DETACHING) | S(FAILED),
	[SESSION_TRACKING] = S(CHECKPOINTING) | S(RESTORING) | S(DETACHING),
	[SESSION_CHECKPOINTING] = S(TRACKING) | S(DETACHING) | S(FAILED),
	[SESSION_RESTORING] = S(TRACKING) | S(DETACHING) | S(FAILED),
	[SESSION_DETACHING] = S(DETACHED),
	[SESSION_DETACHED] = 0,
	[SESSION_FAILED] = S(DETACHING),
};
#undef S

const char *session_state_name(enum session_state st)
{
	return st < _SESSION_STATE_MAX && state_names[st] ? state_names[st] : "?";
}

int session_enter_state(struct session *s, enum session_state st)
{
	if (st >= _SESSION_STATE_MAX || !(transitions[s->state] & (1u << st)))
		return log_error_errno(EINVAL, "pid %d: refusing %s -> %s", (int)s->pid,
				       session_state_name(s->state), session_state_name(st));
	log_info("pid %d: %s -> %s", (int)s->pid, session_state_name(s->state),
		 session_state_name(st));
	s->state = st;
	s->state_ns = now_ns();
	return 0;
}

void session_list_init(struct session_list *l, struct event_base *base,
		       void (*on_exit)(struct session *, void *), void *userdata)
{
	*l = (struct session_list){ .base = base, .on_exit = on_exit, .userdata = userdata };
	TAILQ_INIT(&l->head);
}

static void on_target_exit(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	if (s->exited)
		return;
	s->exited = true;
	event_del(s->exit_ev);
	log_info("pid %d: process exited", (int)s->pid);
	s->list->on_exit(s, s->list->userdata);
}

static void read_comm(pid_t pid, char *buf, size_t len)
{
	char path[64];
	_cleanup_free_ char *text = NULL;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	buf[0] = 0;
	if (read_full_file(path, &text, NULL) == 0) {
		text[strcspn(text, "\n")] = 0;
		snprintf(buf, len, "%s", text);
	}
}

int session_new(struct session_list *l, pid_t pid, struct session **ret)
{
	struct session *s;
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);

	if (pidfd < 0)
		return -errno;
	s = calloc(1, sizeof(*s));
	if (!s) {
		close(pidfd);
		return -ENOMEM;
	}
	*s = (struct session){ .list = l, .pid = pid, .pidfd = pidfd,
			       .state = SESSION_ATTACHING, .created_ns = now_ns() };
	s->state_ns = s->created_ns;
	wpmig__pause_steps__init(&s->last_pause);
	read_comm(pid, s->comm, sizeof(s->comm));
	/* A pidfd polls readable once the process has exited. */
	s->exit_ev = event_new(l->base, pidfd, EV_READ | EV_PERSIST, on_target_exit, s);
	if (!s->exit_ev || event_add(s->exit_ev, NULL) < 0) {
		if (s->exit_ev)
			event_free(s->exit_ev);
		close(pidfd);
		free(s);
		return -ENOMEM;
	}
	TAILQ_INSERT_TAIL(&l->head, s, link);
	l->n++;
	log_info("pid %d (%s): new session, %s", (int)pid, s->comm, state_names[s->state]);
	*ret = s;
	return 0;
}

struct session *session_find(struct session_list *l, pid_t pid)
{
	struct session *s;

	TAILQ_FOREACH(s, &l->head, link)
		if (s->pid == pid)
			return s;
	return NULL;
}

void session_free(struct session *s)
{
	if (!s)
		return;
	if (s->tracker || s->job)
		log_error("pid %d: freeing a session that still has a %s", (int)s->pid,
			  s->job ? "job" : "tracker");
	TAILQ_REMOVE(&s->list->head, s, link);
	s->list->n--;
	event_free(s->exit_ev);
	close(s->pidfd);
	peer_link_free(s->peer_link);
	free(s->dest);
	free(s->set);
	range_set_free(&s->qemu_ram);
	free(s);
}

void session_refresh_info(struct session *s)
{
	if (s->tracker && !s->job)
		tracker_get_info(s->tracker, &s->info);
}

void session_account_pass(struct session *s, uint64_t written_pages, uint64_t now)
{
	if (s->last_pass_ns && now > s->last_pass_ns)
		s->dirty_rate = (double)written_pages * 1e9 / (double)(now - s->last_pass_ns);
	s->last_pass_ns = now;
}

void session_to_info(const struct session *s, Wpmig__SessionInfo *info, Wpmig__LinkInfo *link)
{
	const struct tracker_info *ti = &s->info;

	wpmig__session_info__init(info);
	wpmig__link_info__init(link);
	info->pid = s->pid;
	info->comm = (char *)s->comm;
	info->set = s->set ? s->set : (char *)"";
	info->state = (char *)session_state_name(s->state);
	info->state_ms = (now_ns() - s->state_ns) / 1000000;
	info->tracked_bytes = ti->registered_bytes;
	info->untracked_bytes = ti->untracked_bytes;
	info->passes = ti->passes;
	info->dirty_rate = s->dirty_rate;
	info->last_scan_ms = ns_to_ms(ti->last_scan_ns);
	info->last_written_pages = ti->last_written_pages;
	info->events_remove = ti->events_remove;
	info->events_unmap = ti->events_unmap;
	info->events_remap = ti->events_remap;
	info->events_fork = ti->events_fork;
	info->attach_ms = ns_to_ms(ti->attach_ns);
	info->generation = s->generation;
	info->last_pause = (Wpmig__PauseSteps *)&s->last_pause;
	info->max_pause_ms = s->max_pause_ms;
	link->peer = (char *)"";
	if (s->peer_link) {
		peer_link_info(s->peer_link, link);
		link->role = (char *)"source";
	}
	info->link = link;
}
