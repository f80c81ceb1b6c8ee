/* SPDX-License-Identifier: GPL-2.0-only */
/* wpmig-ctl: shared state, the verb table types and helpers. */
#pragma once

#include <getopt.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "control.pb-c.h"

#define WPMIG_DEFAULT_SOCKET "/run/wpmigd/control.sock"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

struct ctl {
	const char *socket;
	bool json;
	bool passes;       /* checkpoint, images show: print the per-pass table */
	bool tty;          /* stderr is a terminal: redraw a progress line */
	int fd;
	char last_phase[32];
	bool progress_shown;
};

#define VERB_MAX_OPTS 8

/* Options a verb was given, by index in its option table. */
struct verb_opts {
	const char *val[VERB_MAX_OPTS];
	bool set[VERB_MAX_OPTS];
};

struct verb_def {
	const char *name;
	int min_args, max_args; /* positional arguments after the verb */
	const struct option *opts; /* .val = index in verb_opts; may be NULL */
	const char *usage;
	int (*run)(struct ctl *c, char **args, int n, const struct verb_opts *o);
};

/* main.c */
int usage_error(const struct verb_def *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* conn.c: send req, show progress, get the response.  Transport errors
 * are printed (naming the socket) and give -1; *ret is then NULL. */
int ctl_call(struct ctl *c, Wpmig__Request *req, Wpmig__Response **ret);
/* 0 when it connected; else a negative errno, nothing printed. */
int ctl_connect(struct ctl *c);
/* ctl_call, then show() on success: the exit status. */
int ctl_run_request(struct ctl *c, Wpmig__Request *req,
		    int (*show)(struct ctl *, const Wpmig__Response *));
/* Prints resp's error (JSON or human); EXIT_FAIL, or EXIT_OK if none. */
int ctl_response_status(struct ctl *c, const Wpmig__Response *resp);

/* output.c */
void progress_show(struct ctl *c, const Wpmig__Progress *p);
void progress_clear(struct ctl *c);
/* Every field of a protobuf message, by its .proto name. */
struct json_object *pb_to_json(const ProtobufCMessage *m);
void json_print(struct json_object *o); /* and put it */
const char *fmt_bytes(uint64_t n, char *buf, size_t len);
void print_passes(Wpmig__PassInfo *const *rows, size_t n);

/* args.c: value checks; -EINVAL when malformed. */
/* 1..INT_MAX, into a request's pid field */
int parse_pid_arg(const char *s, int64_t *ret);
int check_set_name(const char *s);
int parse_set_gen(const char *s, bool gen_required, char **set, uint64_t *gen);
int check_addr(const char *s);
int parse_rate(const char *s, uint64_t *ret);

/* verbs-*.c: the table entries */
extern const struct verb_def verb_check, verb_track, verb_untrack, verb_status, verb_sessions;
extern const struct verb_def verb_checkpoint, verb_restore, verb_images, verb_migrate;
