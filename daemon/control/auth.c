// SPDX-License-Identifier: GPL-2.0-only
/*
 * Who may use the control socket: root, or a member of the configured
 * group, running in our PID namespace (a PID it sends must mean the same
 * process to us).  Credentials come from the socket, as they were at
 * connect(): SO_PEERCRED and SO_PEERGROUPS, never from /proc/PID/status
 * of a PID that may have been reused since.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "basic/util.h"
#include "control/control.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5 */
#endif

static int peer_in_group(int fd, gid_t group, gid_t primary)
{
	socklen_t len = 64 * sizeof(gid_t);
	_cleanup_free_ gid_t *g = NULL;

	if (primary == group)
		return 1;
	for (int tries = 0; tries < 2; tries++) {
		free(g);
		g = malloc(len);
		if (!g)
			return -ENOMEM;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) == 0) {
			for (size_t i = 0; i < len / sizeof(gid_t); i++)
				if (g[i] == group)
					return 1;
			return 0;
		}
		if (errno != ERANGE)
			return -errno;
	}
	return -ERANGE;
}

static int same_pid_ns(pid_t pid)
{
	char path[64];
	struct stat ours, theirs;

	snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pid);
	if (stat("/proc/self/ns/pid", &ours) < 0 || stat(path, &theirs) < 0)
		return -errno;
	return ours.st_ino == theirs.st_ino && ours.st_dev == theirs.st_dev;
}

/* The PID namespace of the peer, read from /proc/PID while its pidfd
 * proves PID still names the same process. */
static int check_pid_ns(int fd, pid_t pid, char *why, size_t why_len)
{
	socklen_t len = sizeof(int);
	_cleanup_close_ int pidfd = -1;
	int r;

	if (pid <= 0) {
		snprintf(why, why_len, "the client's PID namespace is not visible to wpmigd");
		return -EPERM;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0)
		pidfd = -1; /* older kernel: /proc alone */
	r = same_pid_ns(pid);
	/* EPERM (no CAP_KILL over that user) still means it is alive */
	if (r >= 0 && pidfd >= 0 && syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) < 0 &&
	    errno == ESRCH)
		r = -ESRCH;
	if (r < 0) {
		snprintf(why, why_len, "cannot read the PID namespace of client %d: %s", (int)pid,
			 strerror(-r));
		return -EPERM;
	}
	if (r == 0) {
		snprintf(why, why_len, "the client runs in another PID namespace; "
					"PIDs it sends would name other processes");
		return -EPERM;
	}
	return 0;
}

int control_auth_peer(int fd, const struct control_limits *l, struct peer_cred *cred,
		      char *why, size_t why_len)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);
	int r;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0) {
		snprintf(why, why_len, "cannot read the client's credentials: %s", strerror(errno));
		return -EACCES;
	}
	*cred = (struct peer_cred){ .pid = uc.pid, .uid = uc.uid, .gid = uc.gid };
	if (uc.uid != 0) {
		r = l->has_group ? peer_in_group(fd, l->group, uc.gid) : 0;
		if (r <= 0) {
			snprintf(why, why_len,
				 "permission denied: uid %u is not root%s", (unsigned)uc.uid,
				 l->has_group ? " and not in the control group" : " (no control_group is configured)");
			return -EACCES;
		}
	}
	return check_pid_ns(fd, uc.pid, why, why_len);
}
