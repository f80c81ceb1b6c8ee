// SPDX-License-Identifier: GPL-2.0-only
/* wpmig-ctl: global options, then one verb from the table. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build-config.h"
#include "ctl.h"
#include "basic/util.h"

static const struct verb_def *const verbs[] = {
	&verb_check, &verb_track, &verb_untrack, &verb_status, &verb_sessions,
	&verb_checkpoint, &verb_images, &verb_restore, &verb_migrate,
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: wpmig-ctl [--socket PATH] [--json] VERB [ARGS...]\n\nVerbs:\n");
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		fprintf(f, "  %s\n", verbs[i]->usage);
	fprintf(f, "\nThe socket is --socket, else $WPMIG_SOCKET, else %s.\n",
		WPMIG_DEFAULT_SOCKET);
}

int usage_error(const struct verb_def *v, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "wpmig-ctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	if (v)
		fprintf(stderr, "Usage: wpmig-ctl %s\n", v->usage);
	else
		usage(stderr);
	return EXIT_USAGE;
}

static const struct verb_def *find_verb(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		if (!strcmp(verbs[i]->name, name))
			return verbs[i];
	return NULL;
}

/* The verb's own options (anywhere after it), then its argument count. */
static int run_verb(struct ctl *c, const struct verb_def *v, int argc, char **argv)
{
	static const struct option none[] = { { 0 } };
	struct verb_opts o = { 0 };
	int opt;

	optind = 0; /* restart getopt on the verb's argv (argv[0] is the verb) */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", v->opts ? v->opts : none, NULL)) >= 0) {
		if (opt == '?' || opt == ':' || opt >= VERB_MAX_OPTS)
			return usage_error(v, opt == ':' ? "option %s needs a value"
							 : "unknown option '%s'", argv[optind - 1]);
		o.set[opt] = true;
		o.val[opt] = optarg;
	}
	int n = argc - optind;
	if (n < v->min_args || n > v->max_args)
		return usage_error(v, n < v->min_args ? "%s: missing arguments"
						      : "%s: too many arguments", v->name);
	return v->run(c, argv + optind, n, &o);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct ctl c = { .fd = -1, .tty = isatty(STDERR_FILENO) };
	const struct verb_def *v;
	int opt, r;

	c.socket = getenv("WPMIG_SOCKET");
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:hs:j", opts, NULL)) >= 0) {
		switch (opt) {
		case 's':
			if (!*optarg)
				return usage_error(NULL, "--socket needs a path, not an empty string");
			c.socket = optarg;
			break;
		case 'j': c.json = true; break;
		case 'h': usage(stdout); return EXIT_OK;
		case 'V': printf("wpmig-ctl %s\n", WPMIG_VERSION); return EXIT_OK;
		case ':': return usage_error(NULL, "option %s needs a value", argv[optind - 1]);
		default: return usage_error(NULL, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (!c.socket || !*c.socket) /* WPMIG_SOCKET= (empty): unset */
		c.socket = WPMIG_DEFAULT_SOCKET;
	if (optind >= argc)
		return usage_error(NULL, "no verb given");
	v = find_verb(argv[optind]);
	if (!v)
		return usage_error(NULL, "unknown verb '%s'", argv[optind]);
	r = run_verb(&c, v, argc - optind, argv + optind);
	if (c.fd >= 0)
		close(c.fd);
	return r;
}
