// SPDX-License-Identifier: GPL-2.0-only
#include "build-config.h"
#include "daemon.h"

#include <errno.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/util.h"
#include "pipeline/pipeline.h"
#include "store/store.h"
#include "track/freeze.h"

static void on_control_changed(void *userdata)
{
	daemon_notify_status(userdata);
}

/* The PID a request names (int64 on the wire); false when it has none. */
static bool request_pid(const Wpmig__Request *msg, int64_t *pid)
{
	switch (msg->verb_case) {
	case WPMIG__REQUEST__VERB_TRACK: *pid = msg->track->pid; return true;
	case WPMIG__REQUEST__VERB_UNTRACK: *pid = msg->untrack->pid; return true;
	case WPMIG__REQUEST__VERB_STATUS: *pid = msg->status->pid; return true;
	case WPMIG__REQUEST__VERB_CHECKPOINT: *pid = msg->checkpoint->pid; return true;
	case WPMIG__REQUEST__VERB_RESTORE: *pid = msg->restore->pid; return true;
	default: return false;
	}
}

static void on_dispatch(void *userdata, struct request *req, const Wpmig__Request *msg)
{
	struct daemon *d = userdata;
	const struct verb *v = NULL;
	int64_t pid = 0;
	bool has_pid = request_pid(msg, &pid);

	for (size_t i = 0; i < d->n_verbs && !v; i++)
		if (d->verbs[i].verb == msg->verb_case)
			v = &d->verbs[i];
	if (!v) {
		request_fail(req, -EOPNOTSUPP, "unknown request (verb %d)", (int)msg->verb_case);
		return;
	}
	log_debug("request %u: %s", request_id(req), v->name);
	/* Every handler then takes it as a pid_t: nothing is cut off. */
	if (has_pid && (pid < 0 || pid > INT_MAX)) {
		request_fail(req, -EINVAL, "invalid pid %lld: a PID is 1 to %d", (long long)pid,
			     INT_MAX);
		return;
	}
	if (d->stopping) {
		request_fail(req, -ESHUTDOWN, "wpmigd is shutting down");
		return;
	}
	v->handler(d, req, msg);
}

static const struct control_ops control_ops = {
	.dispatch = on_dispatch,
	.changed = on_control_changed,
};

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	struct session *s, *next;

	if (d->stopping) {
		log_notice("Still stopping: %u sessions left", d->sessions.n);
		return;
	}
	log_info("Got %s: stopping (within stop_timeout=%us)", strsignal((int)sig),
		 d->cfg.stop_timeout);
	d->stopping = true;
	sd_notify(0, "STOPPING=1");
	if (daemon_stop_deadline_start(d) < 0)
		log_warning("Cannot start the stop watchdog: a stuck job may hold the stop");
	control_stop_accepting(d->control);
	daemon_peer_stop(d);
	/* Queued jobs end now with -ECANCELED, running ones are asked to. */
	job_pool_cancel_all(d->jobs);
	for (s = TAILQ_FIRST(&d->sessions.head); s; s = next) {
		next = TAILQ_NEXT(s, link);
		if (s->job)
			log_info("pid %d: waiting for its %s job to stop", (int)s->pid,
				 job_name(s->job));
		daemon_session_settle(d, s);
	}
	daemon_notify_status(d);
	daemon_maybe_finish(d);
}

static void apply_limits(struct daemon *d)
{
	struct control_limits l = {
		.max_connections = d->cfg.max_connections,
		.max_requests = d->cfg.max_requests,
		.max_output = d->cfg.max_output,
	};
	bool named;
	int r = config_group_gid(&d->cfg, &l.group, &named);

	if (r == 0)
		l.has_group = true;
	if (r < 0 && d->cfg.control_group)
		log_warning("control_group = '%s': no such group: only root may connect",
			    d->cfg.control_group);
	else if (r == 0 && !named)
		log_warning("control_group = '%s': no group has gid %u; processes with that gid "
			    "may connect", d->cfg.control_group, (unsigned)l.group);
	log_set_max_level(d->cfg.log_level);
	control_set_limits(d->control, &l);
}

static void on_reload_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	struct config n;

	sd_notify(0, "RELOADING=1");
	/* The file was there at start-up: gone now is an error, not defaults. */
	if (config_load(&d->ovr, !d->cfg.from_file, &n) < 0) {
		log_error("Reload failed: keeping the running configuration");
	} else {
		config_reload_apply(&d->cfg, &n);
		config_free(&n);
		apply_limits(d);
		daemon_peer_reload(d);
		log_info("Reloaded the configuration (log level %d, max_connections %u, "
			 "max_sessions %u)", d->cfg.log_level, d->cfg.max_connections,
			 d->cfg.max_sessions);
		log_debug("Debug logging is on");
	}
	sd_notify(0, "READY=1");
	daemon_notify_status(d);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	sd_notify(0, "WATCHDOG=1");
}

/* Only with WATCHDOG_USEC: an idle daemon must not wake up otherwise. */
static int setup_watchdog(struct daemon *d)
{
	uint64_t usec = 0;
	int r = sd_watchdog_enabled(0, &usec);

	if (r < 0)
		log_warning_errno(r, "Ignoring WATCHDOG_USEC: %m");
	if (r <= 0)
		return 0;
	struct timeval tv = { (time_t)(usec / 2 / 1000000), (suseconds_t)(usec / 2 % 1000000) };
	d->watchdog = event_new(d->base, -1, EV_PERSIST, on_watchdog, d);
	if (!d->watchdog || event_add(d->watchdog, &tv) < 0)
		return -ENOMEM;
	log_debug("Watchdog: pinging every %llu us", (unsigned long long)usec / 2);
	return 0;
}

static int setup_signals(struct daemon *d)
{
	int r;

	signal(SIGPIPE, SIG_IGN);
	r = freeze_quiet_stops();
	if (r < 0)
		log_warning_errno(-r, "every stop of a frozen process will wake the main thread: %m");
	d->sig_term = evsignal_new(d->base, SIGTERM, on_stop_signal, d);
	d->sig_int = evsignal_new(d->base, SIGINT, on_stop_signal, d);
	d->sig_hup = evsignal_new(d->base, SIGHUP, on_reload_signal, d);
	if (!d->sig_term || !d->sig_int || !d->sig_hup || event_add(d->sig_term, NULL) < 0 ||
	    event_add(d->sig_int, NULL) < 0 || event_add(d->sig_hup, NULL) < 0)
		return -ENOMEM;
	return 0;
}

/* One daemon per state directory. */
static int lock_state_dir(struct daemon *d)
{
	_cleanup_free_ char *path = NULL;
	struct stat st;

	if (mkdir(d->cfg.state_dir, 0700) < 0 && errno != EEXIST)
		return log_error_errno(errno, "Cannot create state directory %s: %m",
				       d->cfg.state_dir);
	if (asprintf(&path, "%s/wpmigd.lock", d->cfg.state_dir) < 0)
		return -ENOMEM;
	d->state_lock_fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	if (d->state_lock_fd < 0)
		return log_error_errno(errno, "Cannot open %s: %m", path);
	if (fstat(d->state_lock_fd, &st) < 0 || !S_ISREG(st.st_mode))
		return log_error_errno(EINVAL, "%s is not a regular file", path);
	if (flock(d->state_lock_fd, LOCK_EX | LOCK_NB) < 0)
		return log_error_errno(errno, "Another wpmigd uses state directory %s (%m)",
				       d->cfg.state_dir);
	return 0;
}

/* $WPMIGD_DEBUG_JOB_STUCK=NAME:MS (tests only): jobs named NAME sleep MS
 * ms deaf to cancellation, like a call stuck on a hung file system. */
static void debug_job_stuck(struct daemon *d)
{
	const char *v = getenv("WPMIGD_DEBUG_JOB_STUCK"), *colon = v ? strchr(v, ':') : NULL;

	if (!colon || (size_t)(colon - v) >= sizeof(d->debug_job_stuck))
		return;
	snprintf(d->debug_job_stuck, sizeof(d->debug_job_stuck), "%.*s", (int)(colon - v), v);
	d->debug_job_stuck_ms = (unsigned)strtoul(colon + 1, NULL, 10);
}

static void on_session_exit(struct session *s, void *userdata)
{
	daemon_session_settle(userdata, s);
}

int daemon_init(struct daemon *d, const struct config_overrides *ovr, const struct verb *verbs,
		size_t n_verbs)
{
	const char *delay = getenv("WPMIGD_DEBUG_JOB_DELAY_MS");
	const char *rmem = getenv("WPMIGD_DEBUG_RESTORE_MEM_MAX");
	int r;

	*d = (struct daemon){ .ovr = *ovr, .verbs = verbs, .n_verbs = n_verbs, .state_lock_fd = -1,
			      .started_ns = now_ns() };
	r = config_load(ovr, true, &d->cfg);
	if (r < 0)
		return r;
	log_set_max_level(d->cfg.log_level);
	if (delay)
		d->debug_job_delay_ms = (unsigned)strtoul(delay, NULL, 10);
	debug_job_stuck(d);
	if (rmem)
		parse_size(rmem, &d->debug_restore_mem_max);
	r = lock_state_dir(d);
	if (r < 0)
		return r;
	pthread_mutex_init(&d->store_lock, NULL);
	pthread_mutex_init(&d->pipeline_lock, NULL);
	r = store_open(d->cfg.state_dir, &d->store);
	if (r < 0)
		return log_error_errno(r, "Cannot open the image store in %s: %m", d->cfg.state_dir);
	/* Before the base exists: workers activate its events. */
	if (evthread_use_pthreads() < 0 || !(d->base = event_base_new()))
		return log_error_errno(ENOMEM, "Cannot create the event loop");
	session_list_init(&d->sessions, d->base, on_session_exit, d);
	d->jobs = job_pool_new(d->base, d->cfg.workers);
	if (!d->jobs)
		return -ENOMEM;
	r = setup_signals(d);
	/* Everything that can refuse the configuration before the control
	 * socket: a client that connects has a daemon that stays. */
	if (r == 0)
		r = daemon_peer_init(d);
	if (r == 0)
		r = control_open(d->base, d->cfg.control, &control_ops, d, &d->control);
	if (r < 0)
		return r;
	apply_limits(d);
	bool realtime;
	if (!freeze_priority_allowed(&realtime))
		log_notice("Freezes run at this daemon's priority: raising it needs RLIMIT_NICE 40 "
			   "(LimitNICE=-20) or CAP_SYS_NICE; pauses get longer on busy CPUs");
	log_debug("Freezes run %s", realtime ? "at SCHED_FIFO 1" : "without a realtime policy "
		  "(RLIMIT_RTPRIO 1 and no RestrictRealtime= allow it; pauses of processes with "
		  "busy threads get longer)");
	return setup_watchdog(d);
}

int daemon_pipeline(struct daemon *d, struct pipeline **ret)
{
	int r = 0;

	pthread_mutex_lock(&d->pipeline_lock);
	if (!d->pipeline) {
		struct pipeline_opts o = { .zstd_level = d->cfg.zstd_level };
		r = pipeline_new(&o, &d->pipeline);
	}
	*ret = d->pipeline;
	pthread_mutex_unlock(&d->pipeline_lock);
	return r;
}

int daemon_run(struct daemon *d)
{
	sd_notify(0, "READY=1");
	daemon_notify_status(d);
	log_info("wpmigd %s ready (pid %d)", WPMIG_VERSION, (int)getpid());
	if (event_base_dispatch(d->base) < 0)
		return log_error_errno(EIO, "The event loop failed");
	log_info("Stopped");
	return 0;
}

void daemon_done(struct daemon *d)
{
	/* Connections first: closing one refreshes STATUS=, which reads jobs. */
	control_free(d->control);
	d->control = NULL;
	/* Its workers write into the store: before the store goes. */
	daemon_peer_done(d);
	/* Normally empty: shutdown detaches everything before the loop ends. */
	job_pool_free(d->jobs);
	d->jobs = NULL;
	while (!TAILQ_EMPTY(&d->sessions.head)) {
		struct session *s = TAILQ_FIRST(&d->sessions.head);
		tracker_detach(s->tracker);
		s->tracker = NULL;
		s->job = NULL;
		session_free(s);
	}
	struct event *evs[] = { d->sig_term, d->sig_int, d->sig_hup, d->watchdog };
	for (size_t i = 0; i < ARRAY_SIZE(evs); i++)
		if (evs[i])
			event_free(evs[i]);
	if (d->base)
		event_base_free(d->base);
	pipeline_free(d->pipeline);
	store_close(d->store);
	closep(&d->state_lock_fd);
	/* Everything above is inside the stop's bound. */
	daemon_stop_deadline_end(d);
	config_free(&d->cfg);
}
