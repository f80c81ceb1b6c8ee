// SPDX-License-Identifier: GPL-2.0-only
#include "control/socket.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/util.h"

static int mkdir_parents(const char *path)
{
	_cleanup_free_ char *p = strdup(path);

	if (!p)
		return -ENOMEM;
	for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = 0;
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	return 0;
}

static int fill_addr(const char *path, struct sockaddr_un *sa)
{
	*sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	return 0;
}

/* Someone answers on path: another daemon.  A stale file is removed. */
static int clear_stale(const struct sockaddr_un *sa)
{
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		return -EADDRINUSE;
	if (errno == ENOENT)
		return 0;
	if (errno != ECONNREFUSED)
		return -errno;
	return unlink(sa->sun_path) < 0 && errno != ENOENT ? -errno : 0;
}

static int create_socket(const char *path, struct control_socket *s)
{
	struct sockaddr_un sa;
	_cleanup_close_ int fd = -1;
	int r;

	r = fill_addr(path, &sa);
	if (r == 0)
		r = mkdir_parents(path);
	if (r == 0)
		r = clear_stale(&sa);
	if (r == -EADDRINUSE)
		return log_error_errno(r, "Another wpmigd is listening on %s", path);
	if (r < 0)
		return log_error_errno(r, "Cannot prepare control socket %s: %m", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return log_error_errno(errno, "socket(AF_UNIX): %m");
	mode_t old = umask(0117);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0)
		return log_error_errno(errno, "Cannot bind control socket %s: %m", path);
	if (listen(fd, 128) < 0)
		return log_error_errno(errno, "Cannot listen on %s: %m", path);
	s->path = strdup(path);
	s->fd = TAKE_FD(fd);
	log_info("Listening on %s", path);
	return 0;
}

int control_socket_open(const char *path, struct control_socket *s)
{
	int n = sd_listen_fds(0);

	*s = (struct control_socket){ .fd = -1 };
	if (n < 0)
		return log_error_errno(n, "Cannot read the sockets passed by systemd: %m");
	if (n > 1)
		return log_error_errno(EINVAL, "Expected one socket from systemd, got %d", n);
	if (n == 0)
		return create_socket(path, s);
	if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) <= 0)
		return log_error_errno(EINVAL, "The socket systemd passed is not a listening "
					       "unix stream socket");
	s->fd = SD_LISTEN_FDS_START;
	s->activated = true;
	fcntl(s->fd, F_SETFD, FD_CLOEXEC);
	fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);
	log_info("Listening on the control socket passed by systemd");
	return 0;
}

void control_socket_set_group(struct control_socket *s, int64_t gid)
{
	gid_t want = gid < 0 ? getegid() : (gid_t)gid;
	struct stat st;

	if (!s->path)
		return; /* systemd's socket: SocketGroup= decides */
	if (stat(s->path, &st) == 0 && st.st_gid == want)
		return;
	if (chown(s->path, (uid_t)-1, want) < 0)
		log_warning_errno(errno, "Cannot set the group of %s: %m", s->path);
}

void control_socket_close(struct control_socket *s)
{
	closep(&s->fd);
	s->fd = -1;
	if (s->path && unlink(s->path) < 0 && errno != ENOENT)
		log_warning_errno(errno, "Cannot remove %s: %m", s->path);
	free(s->path);
	s->path = NULL;
}
