// SPDX-License-Identifier: GPL-2.0-only
/* images list | show SET[/GEN] | verify SET[/GEN] | export SET/GEN DIR | rm SET */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verbs.h"
#include "basic/log.h"
#include "basic/util.h"
#include "store/store.h"
#include "track/regions.h"

struct img_set {
	char *name;
	struct store_gen_info *gens;
	size_t n_gens;
	struct pass_region *regions; /* show: of the shown generation */
	size_t n_regions;
	uint64_t regions_of;
};

struct img_bad {
	uint64_t generation, addr;
	char what[160];
};

struct img_job {
	struct daemon *d;
	struct request *req;
	struct job *job;
	Wpmig__ImagesOp op;
	char *set, *dir;
	uint64_t generation;
	struct img_set *sets;
	size_t n_sets;
	struct img_bad *bad;
	size_t n_bad;
	uint64_t pages, files;
	char why[256];
};

static void img_free(struct img_job *c)
{
	for (size_t i = 0; i < c->n_sets; i++) {
		free(c->sets[i].name);
		free(c->sets[i].gens);
		regions_free(c->sets[i].regions, c->sets[i].n_regions);
	}
	free(c->sets);
	free(c->bad);
	free(c->set);
	free(c->dir);
	free(c);
}

static int add_set(struct img_job *c, const char *name)
{
	struct img_set *n = reallocarray(c->sets, c->n_sets + 1, sizeof(*n));

	if (!n)
		return -ENOMEM;
	c->sets = n;
	n = &c->sets[c->n_sets];
	*n = (struct img_set){ .name = strdup(name) };
	if (!n->name)
		return -ENOMEM;
	c->n_sets++;
	pthread_mutex_lock(&c->d->store_lock);
	int r = store_list_generations(c->d->store, name, &n->gens, &n->n_gens);
	pthread_mutex_unlock(&c->d->store_lock);
	return r;
}

static int open_image(struct img_job *c, struct store_image **img)
{
	pthread_mutex_lock(&c->d->store_lock);
	int r = store_image_open(c->d->store, c->set, c->generation, img);
	pthread_mutex_unlock(&c->d->store_lock);
	if (r < 0)
		snprintf(c->why, sizeof(c->why), "%s/%llu: %s", c->set,
			 (unsigned long long)c->generation,
			 r == -ENOENT ? "no such image" : r == -EBADMSG ? "damaged" : strerror(-r));
	return r;
}

static int do_show(struct img_job *c)
{
	struct store_image *img;
	size_t n;
	int r = add_set(c, c->set);

	if (r < 0)
		return r == -ENOENT ? (snprintf(c->why, sizeof(c->why), "no set %s", c->set), r) : r;
	r = open_image(c, &img);
	if (r < 0)
		return r;
	struct img_set *s = &c->sets[0];
	const struct pass_region *reg = store_image_regions(img, &n);
	s->regions = calloc(n ? n : 1, sizeof(*s->regions));
	for (size_t i = 0; s->regions && i < n; i++) {
		s->regions[i] = reg[i];
		s->regions[i].path = strdup(reg[i].path ? reg[i].path : "");
		s->n_regions++;
	}
	s->regions_of = store_image_info(img)->generation;
	store_image_close(img);
	return s->regions ? 0 : -ENOMEM;
}

static void on_bad(void *ud, const struct store_bad *b)
{
	struct img_job *c = ud;
	struct img_bad *n = reallocarray(c->bad, c->n_bad + 1, sizeof(*n));

	if (!n)
		return;
	c->bad = n;
	n = &c->bad[c->n_bad++];
	n->generation = b->generation;
	n->addr = b->addr;
	if (b->region_end)
		snprintf(n->what, sizeof(n->what), "%s in region %llx-%llx, page %llx", b->what,
			 (unsigned long long)b->region_start, (unsigned long long)b->region_end,
			 (unsigned long long)b->addr);
	else
		snprintf(n->what, sizeof(n->what), "%s at file offset %llu", b->what,
			 (unsigned long long)b->file_offset);
}

static void on_store_progress(void *ud, uint64_t done, uint64_t total)
{
	struct img_job *c = ud;
	struct job_progress p = { .done = done, .total = total };

	snprintf(p.phase, sizeof(p.phase), "%s", c->op == WPMIG__IMAGES_OP__IMAGES_VERIFY
						      ? "verify" : "export");
	c->pages = done;
	job_post_progress(c->job, &p);
}

static int do_verify_export(struct img_job *c)
{
	struct store_progress prog = { on_store_progress, c };
	struct store_image *img;
	uint64_t n_bad = 0;
	int r = open_image(c, &img);

	if (r < 0)
		return r;
	if (c->op == WPMIG__IMAGES_OP__IMAGES_VERIFY) {
		r = store_image_verify(img, on_bad, c, &prog, &n_bad);
		if (r == -EBADMSG)
			r = 0; /* reported in the result; the client exits 1 */
	} else {
		size_t n;
		store_image_regions(img, &n);
		r = store_image_export(img, c->dir, &prog);
		c->files = r == 0 ? n : 0;
		if (r < 0)
			snprintf(c->why, sizeof(c->why), "export to %s: %s", c->dir, strerror(-r));
	}
	store_image_close(img);
	return r;
}

static int img_run(struct job *j, void *userdata)
{
	struct img_job *c = userdata;
	char **names = NULL;
	size_t n = 0;
	int r = 0;

	c->job = j;
	switch (c->op) {
	case WPMIG__IMAGES_OP__IMAGES_LIST:
		pthread_mutex_lock(&c->d->store_lock);
		r = store_list_sets(c->d->store, &names, &n);
		pthread_mutex_unlock(&c->d->store_lock);
		for (size_t i = 0; r == 0 && i < n; i++)
			r = add_set(c, names[i]);
		store_names_free(names, n);
		return r;
	case WPMIG__IMAGES_OP__IMAGES_SHOW:
		return do_show(c);
	case WPMIG__IMAGES_OP__IMAGES_VERIFY:
	case WPMIG__IMAGES_OP__IMAGES_EXPORT:
		return do_verify_export(c);
	case WPMIG__IMAGES_OP__IMAGES_RM:
		pthread_mutex_lock(&c->d->store_lock);
		r = c->generation ? store_rm_generation(c->d->store, c->set, c->generation)
				  : store_rm_set(c->d->store, c->set);
		pthread_mutex_unlock(&c->d->store_lock);
		if (r < 0)
			snprintf(c->why, sizeof(c->why), "rm %s: %s", c->set,
				 r == -EBUSY ? "a checkpoint is writing it, or only the newest "
					       "generation can be removed" :
				 r == -ENOENT ? "no such set" : strerror(-r));
		return r;
	default:
		return -EINVAL;
	}
}

static void fill_generation(Wpmig__ImageGeneration *g, const struct store_gen_info *i)
{
	wpmig__image_generation__init(g);
	g->number = i->generation;
	g->parent = i->full ? 0 : i->parent;
	g->created_unix_ms = (uint64_t)(i->created_ns / 1000000);
	g->data_pages = i->live_data_pages;
	g->zero_pages = i->live_zero_pages;
	g->bytes_stored = i->disk_bytes;
	g->raw_bytes = i->live_data_pages * PAGE_SIZE_4K;
}

static void reply(struct img_job *c)
{
	Wpmig__Response resp = WPMIG__RESPONSE__INIT;
	Wpmig__ImagesResult ir = WPMIG__IMAGES_RESULT__INIT;
	size_t ngen = 0, nreg = 0;

	for (size_t i = 0; i < c->n_sets; i++) {
		ngen += c->sets[i].n_gens;
		nreg += c->sets[i].n_regions;
	}
	Wpmig__ImageSet *sets = calloc(c->n_sets + 1, sizeof(*sets)), **setp = calloc(c->n_sets + 1, sizeof(*setp));
	Wpmig__ImageGeneration *gens = calloc(ngen + 1, sizeof(*gens)), **genp = calloc(ngen + 1, sizeof(*genp));
	Wpmig__ImageRegion *regs = calloc(nreg + 1, sizeof(*regs)), **regp = calloc(nreg + 1, sizeof(*regp));
	Wpmig__VerifyError *errs = calloc(c->n_bad + 1, sizeof(*errs)), **errp = calloc(c->n_bad + 1, sizeof(*errp));

	if (!sets || !setp || !gens || !genp || !regs || !regp || !errs || !errp) {
		request_fail(c->req, -ENOMEM, "out of memory");
		goto out;
	}
	size_t g = 0, rg = 0;
	for (size_t i = 0; i < c->n_sets; i++) {
		const struct img_set *s = &c->sets[i];
		wpmig__image_set__init(&sets[i]);
		sets[i].name = s->name;
		sets[i].pid = s->n_gens ? s->gens[s->n_gens - 1].pid : 0;
		sets[i].generations = &genp[g];
		for (size_t k = 0; k < s->n_gens; k++, g++) {
			fill_generation(&gens[g], &s->gens[k]);
			genp[g] = &gens[g];
			sets[i].n_generations++;
			if (s->gens[k].generation != s->regions_of)
				continue;
			gens[g].regions = &regp[rg];
			for (size_t m = 0; m < s->n_regions; m++, rg++) {
				wpmig__image_region__init(&regs[rg]);
				regs[rg].start = s->regions[m].start;
				regs[rg].end = s->regions[m].end;
				regs[rg].path = s->regions[m].path;
				regs[rg].prot = s->regions[m].prot;
				regs[rg].shared = s->regions[m].shared;
				regp[rg] = &regs[rg];
				gens[g].n_regions++;
			}
		}
		setp[i] = &sets[i];
	}
	for (size_t i = 0; i < c->n_bad; i++) {
		wpmig__verify_error__init(&errs[i]);
		errs[i].set = c->set;
		errs[i].generation = c->bad[i].generation;
		errs[i].addr = c->bad[i].addr;
		errs[i].what = c->bad[i].what;
		errp[i] = &errs[i];
	}
	ir.n_sets = c->n_sets;
	ir.sets = setp;
	ir.n_errors = c->n_bad;
	ir.errors = errp;
	ir.pages_checked = c->op == WPMIG__IMAGES_OP__IMAGES_VERIFY ? c->pages : 0;
	ir.files_written = c->files;
	resp.result_case = WPMIG__RESPONSE__RESULT_IMAGES;
	resp.images = &ir;
	request_reply(c->req, &resp);
out:
	free(sets); free(setp); free(gens); free(genp);
	free(regs); free(regp); free(errs); free(errp);
}

static void img_progress(struct job *j, const struct job_progress *p, void *userdata)
{
	daemon_forward_progress(((struct img_job *)userdata)->req, p);
}

static void img_done(struct job *j, int r, void *userdata)
{
	struct img_job *c = userdata;

	if (r < 0)
		request_fail(c->req, r, "images: %s", c->why[0] ? c->why : strerror(-r));
	else
		reply(c);
	img_free(c);
}

static const struct job_ops img_ops = { "images", img_run, img_done, img_progress };

void cmd_images(struct daemon *d, struct request *req, const Wpmig__Request *msg)
{
	const Wpmig__ImagesRequest *m = msg->images;
	struct img_job *c = calloc(1, sizeof(*c));
	int r;

	if (!c) {
		request_fail(req, -ENOMEM, "out of memory");
		return;
	}
	*c = (struct img_job){ .d = d, .req = req, .op = m->op, .generation = m->generation,
			       .set = strdup(m->set ? m->set : ""),
			       .dir = strdup(m->dir ? m->dir : "") };
	if (!c->set || !c->dir) {
		img_free(c);
		request_fail(req, -ENOMEM, "out of memory");
		return;
	}
	if (m->op != WPMIG__IMAGES_OP__IMAGES_LIST && !store_set_name_valid(c->set)) {
		request_fail(req, -EINVAL, "invalid set name \"%s\"", c->set);
		img_free(c);
		return;
	}
	if (m->op == WPMIG__IMAGES_OP__IMAGES_EXPORT && c->dir[0] != '/') {
		request_fail(req, -EINVAL, "export needs an absolute directory");
		img_free(c);
		return;
	}
	r = job_submit(d->jobs, &img_ops, c, NULL);
	if (r < 0) {
		request_fail(req, r, "images: %s", strerror(-r));
		img_free(c);
	}
}
