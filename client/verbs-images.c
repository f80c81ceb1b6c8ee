// SPDX-License-Identifier: GPL-2.0-only
/* images list | show SET[/GEN] | verify SET[/GEN] | export SET/GEN DIR | rm SET[/GEN] */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"

static const struct {
	const char *name;
	Wpmig__ImagesOp op;
	int nargs;        /* after the sub-verb */
	bool gen_allowed, gen_required;
} subs[] = {
	{ "list", WPMIG__IMAGES_OP__IMAGES_LIST, 0, false, false },
	{ "show", WPMIG__IMAGES_OP__IMAGES_SHOW, 1, true, false },
	{ "verify", WPMIG__IMAGES_OP__IMAGES_VERIFY, 1, true, false },
	{ "export", WPMIG__IMAGES_OP__IMAGES_EXPORT, 2, true, true },
	{ "rm", WPMIG__IMAGES_OP__IMAGES_RM, 1, true, false },
};

enum { IM_PASSES };

static const struct option images_opts[] = {
	{ "passes", no_argument, NULL, IM_PASSES },
	{ 0 },
};

static void print_thread(const Wpmig__ImageThread *t)
{
	printf("    thread %-7d rip %012" PRIx64 " rsp %012" PRIx64 " fs %012" PRIx64
	       " sigmask %" PRIx64, t->tid, t->rip, t->rsp, t->fs_base, t->sigmask);
	if (t->syscall >= 0)
		printf(" in %s%s%" PRId64 "%s = %" PRId64 ": %s", t->syscall_name,
		       t->syscall_name[0] ? " (" : "", t->syscall, t->syscall_name[0] ? ")" : "",
		       t->syscall_result, t->resume);
	if (t->stop_signal)
		printf(", signal %u pending then", t->stop_signal);
	putchar('\n');
}

static void print_generation(const Wpmig__ImageGeneration *g, bool passes)
{
	char b[32], raw[32];

	if (g->error[0]) {
		printf("  %-6" PRIu64 " DAMAGED: %s\n", g->number, g->error);
		return;
	}
	printf("  %-6" PRIu64 " parent %-6" PRIu64 " %10" PRIu64 " data %10" PRIu64
	       " zero  %s of %s\n", g->number, g->parent, g->data_pages, g->zero_pages,
	       fmt_bytes(g->bytes_stored, b, sizeof(b)), fmt_bytes(g->raw_bytes, raw, sizeof(raw)));
	for (size_t i = 0; i < g->n_regions; i++)
		printf("    %012" PRIx64 "-%012" PRIx64 " %s %8" PRIu64 " pages %s\n",
		       g->regions[i]->start, g->regions[i]->end,
		       g->regions[i]->shared ? "s" : "p", g->regions[i]->data_pages,
		       g->regions[i]->path);
	for (size_t i = 0; i < g->n_backends; i++)
		printf("    QEMU RAM backend %-12s %s, %s, mapped at %" PRIx64 "\n",
		       g->backends[i]->id, g->backends[i]->type,
		       fmt_bytes(g->backends[i]->size, b, sizeof(b)), g->backends[i]->start);
	if (g->n_backends)
		printf("    QEMU device state %s\n", fmt_bytes(g->device_state_bytes, b, sizeof(b)));
	for (size_t i = 0; i < g->n_sections; i++)
		printf("    section %-16s type %u, %s\n", g->sections[i]->name, g->sections[i]->type,
		       fmt_bytes(g->sections[i]->length, b, sizeof(b)));
	for (size_t i = 0; i < g->n_threads; i++)
		print_thread(g->threads[i]);
	if (passes && g->n_passes)
		print_passes(g->passes, g->n_passes);
	else if (passes)
		printf("    no pass table (not a process checkpoint, or written before they were "
		       "stored)\n");
}

static int show_images(struct ctl *c, const Wpmig__Response *resp)
{
	const Wpmig__ImagesResult *r = resp->images;

	if (c->json) {
		json_print(pb_to_json(&r->base));
		return r->n_errors ? EXIT_FAIL : EXIT_OK;
	}
	for (size_t i = 0; i < r->n_sets; i++) {
		printf("%s (pid %d): %zu generations\n", r->sets[i]->name, r->sets[i]->pid,
		       r->sets[i]->n_generations);
		for (size_t k = 0; k < r->sets[i]->n_generations; k++)
			print_generation(r->sets[i]->generations[k],
					 c->passes && (r->sets[i]->generations[k]->n_regions ||
						       r->sets[i]->generations[k]->n_passes));
	}
	for (size_t i = 0; i < r->n_errors; i++)
		printf("BAD %s/%" PRIu64 " at %" PRIx64 ": %s\n", r->errors[i]->set,
		       r->errors[i]->generation, r->errors[i]->addr, r->errors[i]->what);
	if (r->pages_checked)
		printf("%" PRIu64 " pages checked, %zu errors\n", r->pages_checked, r->n_errors);
	if (r->files_written)
		printf("%" PRIu64 " files written\n", r->files_written);
	if (r->bytes_freed) {
		char b[32];
		printf("%s freed\n", fmt_bytes(r->bytes_freed, b, sizeof(b)));
	}
	return r->n_errors ? EXIT_FAIL : EXIT_OK;
}

/* The daemon writes the export: hand it an absolute directory. */
static char *absolute_dir(const char *dir)
{
	char cwd[PATH_MAX], *out;

	if (dir[0] == '/')
		return strdup(dir);
	if (!getcwd(cwd, sizeof(cwd)) || asprintf(&out, "%s/%s", cwd, dir) < 0)
		return NULL;
	return out;
}

static int run_images(struct ctl *c, char **args, int n, const struct verb_opts *o)
{
	Wpmig__Request req = WPMIG__REQUEST__INIT;
	Wpmig__ImagesRequest ir = WPMIG__IMAGES_REQUEST__INIT;
	char *set = NULL, *dir = NULL;
	size_t i;
	int r;

	for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		if (!strcmp(args[0], subs[i].name))
			break;
	if (i == sizeof(subs) / sizeof(subs[0]))
		return usage_error(&verb_images, "unknown images command '%s'", args[0]);
	if (n - 1 != subs[i].nargs)
		return usage_error(&verb_images, "images %s: wrong number of arguments", args[0]);
	ir.op = subs[i].op;
	if (n > 1 && (parse_set_gen(args[1], subs[i].gen_required, &set, &ir.generation) < 0 ||
		      (!subs[i].gen_allowed && ir.generation))) {
		free(set);
		return usage_error(&verb_images, "images %s: invalid image '%s'", args[0], args[1]);
	}
	if (o->set[IM_PASSES] && ir.op != WPMIG__IMAGES_OP__IMAGES_SHOW) {
		free(set);
		return usage_error(&verb_images, "--passes goes with images show");
	}
	c->passes = o->set[IM_PASSES];
	if (n > 2 && !(dir = absolute_dir(args[2]))) {
		free(set);
		return usage_error(&verb_images, "images export: invalid directory '%s'", args[2]);
	}
	ir.set = set ? set : (char *)"";
	ir.dir = dir ? dir : (char *)"";
	req.verb_case = WPMIG__REQUEST__VERB_IMAGES;
	req.images = &ir;
	r = ctl_run_request(c, &req, show_images);
	free(set);
	free(dir);
	return r;
}

const struct verb_def verb_images = {
	"images", 1, 3, images_opts,
	"images list | show SET[/GEN] [--passes] | verify SET[/GEN] | export SET/GEN DIR | "
	"rm SET[/GEN]",
	run_images,
};
