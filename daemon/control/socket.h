/* SPDX-License-Identifier: GPL-2.0-only */
/* The control socket's listening fd: passed by systemd, or our own. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct control_socket {
	int fd;
	char *path;     /* ours: the file to remove at exit */
	bool activated; /* from sd_listen_fds(): systemd owns the file */
};

/* Exactly one socket passed by the service manager: check and use it.
 * None: create path's directory and socket (0660), replacing a stale
 * socket, refusing one another daemon still answers on. */
int control_socket_open(const char *path, struct control_socket *s);
/* Group owner of our own socket file (-1: root). */
void control_socket_set_group(struct control_socket *s, int64_t gid);
/* Close the fd if still held and remove our socket file. */
void control_socket_close(struct control_socket *s);
