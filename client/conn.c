// SPDX-License-Identifier: GPL-2.0-only
/* One request over the control socket, progress frames until the answer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl.h"
#include "frame.h"

#define CLIENT_MAX_FRAME (16u << 20) /* an images listing can be large */

static const uint16_t reply_types[] = { FRAME_CTL_RESPONSE, FRAME_CTL_PROGRESS };
static const struct frame_limits reply_limits = {
	.max_length = CLIENT_MAX_FRAME, .types = reply_types, .n_types = 2,
};

int ctl_connect(struct ctl *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(c->socket) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, c->socket);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	c->fd = fd;
	return 0;
}

static int fail(struct ctl *c, const char *what, int r, const char *why)
{
	progress_clear(c);
	fprintf(stderr, "wpmig-ctl: %s wpmigd at %s: %s\n", what, c->socket,
		why ? why : strerror(-r));
	return -1;
}

/* Frames until the Response to id: progress is shown on the way. */
static int read_response(struct ctl *c, uint32_t id, Wpmig__Response **ret)
{
	for (;;) {
		struct frame_header h;
		uint8_t *payload;
		const char *why = NULL;
		int r = frame_read_fd(c->fd, &reply_limits, &h, &payload, &why);

		if (r < 0)
			return fail(c, r == -EPIPE ? "connection closed by" : "bad answer from", r,
				    r == -EPIPE ? "no answer" : why);
		if (h.type == FRAME_CTL_PROGRESS) {
			Wpmig__Progress *p = wpmig__progress__unpack(NULL, h.length, payload);
			if (p && p->id == id)
				progress_show(c, p);
			if (p)
				wpmig__progress__free_unpacked(p, NULL);
			free(payload);
			continue;
		}
		*ret = wpmig__response__unpack(NULL, h.length, payload);
		free(payload);
		if (!*ret)
			return fail(c, "undecodable answer from", -EBADMSG, NULL);
		/* id 0: refused before the request was read (permission, limits) */
		if ((*ret)->id == id || (*ret)->id == 0)
			return 0;
		wpmig__response__free_unpacked(*ret, NULL);
		*ret = NULL;
	}
}

int ctl_call(struct ctl *c, Wpmig__Request *req, Wpmig__Response **ret)
{
	int r;

	*ret = NULL;
	if (c->fd < 0) {
		r = ctl_connect(c);
		if (r < 0)
			return fail(c, "cannot connect to", r, NULL);
	}
	req->id = (uint32_t)getpid();
	if (req->id == 0)
		req->id = 1;
	r = frame_write_fd(c->fd, FRAME_CTL_REQUEST, &req->base);
	/* A refusal may already be waiting even though the write failed. */
	if (r < 0 && r != -EPIPE && r != -ECONNRESET)
		return fail(c, "cannot send to", r, NULL);
	r = read_response(c, req->id, ret);
	progress_clear(c);
	return r;
}

int ctl_response_status(struct ctl *c, const Wpmig__Response *resp)
{
	if (resp->error >= 0)
		return EXIT_OK;
	if (c->json) {
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "error", json_object_new_int(resp->error));
		json_object_object_add(o, "message", json_object_new_string(resp->message));
		json_print(o);
	}
	fprintf(stderr, "wpmig-ctl: %s\n", resp->message[0] ? resp->message
							    : strerror(-resp->error));
	return EXIT_FAIL;
}

int ctl_run_request(struct ctl *c, Wpmig__Request *req,
		    int (*show)(struct ctl *, const Wpmig__Response *))
{
	Wpmig__Response *resp;
	int r;

	if (ctl_call(c, req, &resp) < 0)
		return EXIT_FAIL;
	r = ctl_response_status(c, resp);
	if (r == EXIT_OK)
		r = show(c, resp);
	wpmig__response__free_unpacked(resp, NULL);
	return r;
}
