// SPDX-License-Identifier: GPL-2.0-only
/* images list | show SET[/GEN] | verify SET[/GEN] | export SET/GEN DIR | rm SET[/GEN] */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verbs.h"
#include "basic/log.h"
#include "basic/util.h"
#include "pipeline/passes.h"
#include "qemu/checkpoint.h"
#include "store/store.h"
#include "track/regions.h"
#include "track/threads.h"

struct img_set {
	char *name;
	struct store_gen_info *gens;
	size_t n_gens;
	struct pass_region *regions; /* show: of the shown generation */
	uint64_t *region_data;       /* and the data pages it holds in each */
	size_t n_regions;
	uint64_t regions_of;
	struct store_section sections[SECTION_MAX_COUNT]; /* show */
	size_t n_sections;
	struct thread_states threads; /* show: its "threads" section */
	struct qemu_ram vm;           /* show: a QEMU guest's backends ("qemu-ram") */
	uint64_t vmstate_bytes;       /* show: its device state ("vmstate") */
	struct pass_row passes[PASSES_MAX]; /* show: its "passes" section */
	uint32_t n_passes;
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
	uint64_t pages, files, freed;
	char why[320];
};

static void img_free(struct img_job *c)
{
	for (size_t i = 0; i < c->n_sets; i++) {
		free(c->sets[i].name);
		free(c->sets[i].gens);
		free(c->sets[i].region_data);
		regions_free(c->sets[i].regions, c->sets[i].n_regions);
		threads_free(&c->sets[i].threads);
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

/* The image, or why not: naming the generation at fault (the newest when
 * none was named, or a parent the one named needs) and what is wrong. */
static int open_image(struct img_job *c, struct store_image **img)
{
	struct store_err e;
	char asked[48] = "", at[64] = "";

	pthread_mutex_lock(&c->d->store_lock);
	int r = store_image_open_err(c->d->store, c->set, c->generation, img, &e);
	pthread_mutex_unlock(&c->d->store_lock);
	if (r == 0)
		return 0;
	if (c->generation)
		snprintf(asked, sizeof(asked), "/%llu", (unsigned long long)c->generation);
	if (e.generation && e.generation != c->generation)
		snprintf(at, sizeof(at), "%s %s/%llu: ", c->generation ? "its parent" :
			 "the newest generation,", c->set, (unsigned long long)e.generation);
	if (r == -ENOENT && !e.generation)
		snprintf(c->why, sizeof(c->why), "%s%s: no such image", c->set, asked);
	else if (r == -EBADMSG || r == -EPROTONOSUPPORT)
		snprintf(c->why, sizeof(c->why), "%s%s: %s%s%s", c->set, asked, at,
			 r == -EBADMSG ? "damaged: " : "", e.what ? e.what : "damaged");
	else
		snprintf(c->why, sizeof(c->why), "%s%s: %s%s", c->set, asked, at, strerror(-r));
	return r;
}

/* r, and why when it failed: reading or decoding the shown generation's
 * section holding what. */
static int section_failed(struct img_job *c, const struct img_set *s, const char *what, int r)
{
	if (r < 0)
		snprintf(c->why, sizeof(c->why), "%s/%llu: %s is %s", c->set,
			 (unsigned long long)s->regions_of, what,
			 r == -EBADMSG ? "damaged" : strerror(-r));
	return r;
}

/* The generation's thread state, when it has one. */
static int show_threads(struct img_job *c, struct store_image *img, struct img_set *s)
{
	_cleanup_free_ void *buf = NULL;
	size_t len = 0;
	int r = store_image_read_section(img, THREADS_SECTION_NAME, SECTION_THREADS, &buf, &len);

	if (r == -ENOENT)
		return 0;
	if (r == 0)
		r = threads_decode(buf, len, &s->threads);
	return section_failed(c, s, "its thread state", r);
}

/* The checkpoint's per-pass table, when the generation has one. */
static int show_passes(struct img_job *c, struct store_image *img, struct img_set *s)
{
	_cleanup_free_ void *buf = NULL;
	size_t len = 0;
	int r = store_image_read_section(img, PASSES_SECTION_NAME, SECTION_PASSES, &buf, &len);

	if (r == -ENOENT)
		return 0;
	if (r == 0)
		r = passes_decode(buf, len, s->passes, &s->n_passes);
	return section_failed(c, s, "its pass table", r);
}

/* A QEMU guest's generation: its backends and device state size. */
static int show_vm(struct img_job *c, struct store_image *img, struct img_set *s)
{
	_cleanup_free_ void *buf = NULL;
	size_t len = 0;
	int r = store_image_read_section(img, QEMU_RAM_SECTION, SECTION_QEMU_RAM, &buf, &len);

	if (r == -ENOENT)
		return 0;
	if (r == 0)
		r = qemu_ram_decode(buf, len, &s->vm);
	for (size_t i = 0; r == 0 && i < s->n_sections; i++)
		if (!strcmp(s->sections[i].name, QEMU_VMSTATE_SECTION))
			s->vmstate_bytes = s->sections[i].length;
	return section_failed(c, s, "its RAM backend table", r);
}

/*
 * A QEMU guest's export: each backend's region file renamed ID.ram, the
 * device state vmstate.section kept, so that QEMU starts from them
 * (docs/qemu.md).
 */
static int export_vm(struct img_job *c, struct store_image *img)
{
	_cleanup_free_ void *buf = NULL;
	struct qemu_ram ram;
	size_t len = 0;
	int r = store_image_read_section(img, QEMU_RAM_SECTION, SECTION_QEMU_RAM, &buf, &len);

	if (r == -ENOENT)
		return 0;
	if (r == 0)
		r = qemu_ram_decode(buf, len, &ram);
	for (size_t i = 0; r == 0 && i < ram.n; i++) {
		char from[PATH_MAX], to[PATH_MAX];

		snprintf(from, sizeof(from), "%s/%08" PRIx64 "-%08" PRIx64 ".bin", c->dir,
			 ram.b[i].start, ram.b[i].end);
		snprintf(to, sizeof(to), "%s/%s.ram", c->dir, ram.b[i].id);
		if (rename(from, to) < 0)
			r = -errno;
	}
	if (r < 0)
		snprintf(c->why, sizeof(c->why), "export of the guest's RAM backends to %s: %s",
			 c->dir, strerror(-r));
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
	s->region_data = calloc(n ? n : 1, sizeof(*s->region_data));
	if (s->region_data)
		store_image_region_pages(img, s->region_data, n);
	for (size_t i = 0; s->regions && s->region_data && i < n; i++) {
		s->regions[i] = reg[i];
		s->regions[i].path = strdup(reg[i].path ? reg[i].path : "");
		s->n_regions++;
	}
	s->regions_of = store_image_info(img)->generation;
	s->n_sections = MIN(store_image_sections(img, s->sections, SECTION_MAX_COUNT),
			    (size_t)SECTION_MAX_COUNT);
	r = show_threads(c, img, s);
	if (r == 0)
		r = show_passes(c, img, s);
	if (r == 0)
		r = show_vm(c, img, s);
	store_image_close(img);
	return r < 0 ? r : s->regions && s->region_data ? 0 : -ENOMEM;
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
	if (b->section)
		snprintf(n->what, sizeof(n->what), "%s: section %s at file offset %llu", b->what,
			 b->section, (unsigned long long)b->file_offset);
	else if (b->region_end)
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

/* Where an export stopped (nothing of it is left in the directory). */
static void export_failed(struct img_job *c, int r, const struct store_bad *b)
{
	char where[128] = "", page[96] = "";

	if (b->region_end)
		snprintf(where, sizeof(where), ": region %llx-%llx", (unsigned long long)b->region_start,
			 (unsigned long long)b->region_end);
	if (b->addr != UINT64_MAX)
		snprintf(page, sizeof(page), ", page %llx (in %s/%llu)", (unsigned long long)b->addr,
			 c->set, (unsigned long long)b->generation);
	snprintf(c->why, sizeof(c->why), "export of %s/%llu to %s%s%s: %s; no file written",
		 c->set, (unsigned long long)c->generation, c->dir, where, page,
		 b->what ? b->what : strerror(-r));
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
		struct store_bad b;
		size_t n;

		store_image_regions(img, &n);
		r = store_image_export(img, c->dir, &prog, &b);
		c->files = r == 0 ? n : 0;
		if (r < 0)
			export_failed(c, r, &b);
		else
			r = export_vm(c, img);
	}
	store_image_close(img);
	return r;
}

static int do_rm(struct img_job *c)
{
	struct store_rm_info info;
	char what[48];
	int r;

	pthread_mutex_lock(&c->d->store_lock);
	r = c->generation ? store_rm_generation(c->d->store, c->set, c->generation, &info)
			  : store_rm_set(c->d->store, c->set, &info);
	pthread_mutex_unlock(&c->d->store_lock);
	c->freed = info.bytes_freed;
	if (r == 0)
		return 0;
	if (c->generation)
		snprintf(what, sizeof(what), "%s/%llu", c->set, (unsigned long long)c->generation);
	else
		snprintf(what, sizeof(what), "%s", c->set);
	if (r == -EBUSY)
		snprintf(c->why, sizeof(c->why), "rm %s: a checkpoint is writing the set", what);
	else if (r == -ENOENT)
		snprintf(c->why, sizeof(c->why), "rm %s: no such %s", what,
			 c->generation ? "generation" : "set");
	else if (r == -ENOTEMPTY && c->generation)
		snprintf(c->why, sizeof(c->why), "rm %s: only the newest generation can be removed: "
			 "%s", what, info.blocker);
	else if (r == -ENOTEMPTY)
		snprintf(c->why, sizeof(c->why), "rm %s: the set's directory holds %s; nothing was "
			 "removed", what, info.blocker);
	else
		snprintf(c->why, sizeof(c->why), "rm %s: %s", what, strerror(-r));
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
		return do_rm(c);
	default:
		return -EINVAL;
	}
}

static void fill_thread(Wpmig__ImageThread *o, const struct thread_state *t)
{
	wpmig__image_thread__init(o);
	o->tid = t->tid;
	o->rip = t->regs.rip;
	o->rsp = t->regs.rsp;
	o->fs_base = t->regs.fs_base;
	o->gs_base = t->regs.gs_base;
	o->sigmask = t->sigmask;
	o->syscall = t->flags & THREAD_IN_SYSCALL ? (int64_t)t->regs.orig_rax : -1;
	o->syscall_name = (char *)(o->syscall >= 0 && thread_syscall_name((long)o->syscall)
				   ? thread_syscall_name((long)o->syscall) : "");
	o->syscall_result = (int64_t)t->regs.rax;
	o->resume = (char *)thread_resume_how(t);
	o->stop_signal = t->stop_sig;
}

/* Sections, threads and passes of the shown generation; arrays freed by the caller. */
static int fill_show(Wpmig__ImageGeneration *g, const struct img_set *s,
		     Wpmig__ImageSection **sec, Wpmig__ImageThread **thr, Wpmig__PassInfo *pass,
		     Wpmig__PassInfo **passp)
{
	*sec = calloc(s->n_sections + 1, sizeof(**sec));
	*thr = calloc(s->threads.n + 1, sizeof(**thr));
	g->sections = calloc(s->n_sections + 1, sizeof(*g->sections));
	g->threads = calloc(s->threads.n + 1, sizeof(*g->threads));
	if (!*sec || !*thr || !g->sections || !g->threads)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_sections; i++) {
		wpmig__image_section__init(&(*sec)[i]);
		(*sec)[i].name = (char *)s->sections[i].name;
		(*sec)[i].type = s->sections[i].type;
		(*sec)[i].length = s->sections[i].length;
		g->sections[g->n_sections++] = &(*sec)[i];
	}
	for (size_t i = 0; i < s->threads.n; i++) {
		fill_thread(&(*thr)[i], &s->threads.t[i]);
		g->threads[g->n_threads++] = &(*thr)[i];
	}
	for (uint32_t i = 0; i < s->n_passes; i++) {
		pass_info_fill(&pass[i], &s->passes[i]);
		passp[i] = &pass[i];
	}
	g->passes = passp;
	g->n_passes = s->n_passes;
	return 0;
}

static void fill_generation(Wpmig__ImageGeneration *g, const struct store_gen_info *i,
			    char *why, size_t why_len)
{
	wpmig__image_generation__init(g);
	g->number = i->generation;
	if (i->error) {
		snprintf(why, why_len, "%s", i->error == -EBADMSG ? (i->error_what ? i->error_what :
			 "damaged") : i->error == -EPROTONOSUPPORT ? "written in another format "
			 "version" : strerror(-i->error));
		g->error = why;
		return;
	}
	g->parent = i->full ? 0 : i->parent;
	g->created_unix_ms = (uint64_t)(i->created_ns / 1000000);
	g->data_pages = i->live_data_pages;
	g->zero_pages = i->live_zero_pages;
	g->bytes_stored = i->disk_bytes;
	g->raw_bytes = i->live_data_pages * PAGE_SIZE_4K;
	g->section_count = i->n_sections;
}

static void reply(struct img_job *c)
{
	Wpmig__Response resp = WPMIG__RESPONSE__INIT;
	Wpmig__ImagesResult ir = WPMIG__IMAGES_RESULT__INIT;
	size_t ngen = 0, nreg = 0;
	Wpmig__ImageSection *secs = NULL;
	Wpmig__ImageThread *thrs = NULL;
	Wpmig__ImageGeneration *shown = NULL;
	Wpmig__ImageBackend bk[QEMU_MAX_BACKENDS], *bkp[QEMU_MAX_BACKENDS];
	Wpmig__PassInfo pass[PASSES_MAX], *passp[PASSES_MAX];

	for (size_t i = 0; i < c->n_sets; i++) {
		ngen += c->sets[i].n_gens;
		nreg += c->sets[i].n_regions;
	}
	Wpmig__ImageSet *sets = calloc(c->n_sets + 1, sizeof(*sets)), **setp = calloc(c->n_sets + 1, sizeof(*setp));
	Wpmig__ImageGeneration *gens = calloc(ngen + 1, sizeof(*gens)), **genp = calloc(ngen + 1, sizeof(*genp));
	Wpmig__ImageRegion *regs = calloc(nreg + 1, sizeof(*regs)), **regp = calloc(nreg + 1, sizeof(*regp));
	Wpmig__VerifyError *errs = calloc(c->n_bad + 1, sizeof(*errs)), **errp = calloc(c->n_bad + 1, sizeof(*errp));
	char (*gen_why)[96] = calloc(ngen + 1, sizeof(*gen_why));

	if (!sets || !setp || !gens || !genp || !regs || !regp || !errs || !errp || !gen_why) {
		request_fail(c->req, -ENOMEM, "out of memory");
		goto out;
	}
	size_t g = 0, rg = 0;
	for (size_t i = 0; i < c->n_sets; i++) {
		const struct img_set *s = &c->sets[i];
		wpmig__image_set__init(&sets[i]);
		sets[i].name = s->name;
		for (size_t k = s->n_gens; k-- > 0 && !sets[i].pid;)
			sets[i].pid = s->gens[k].error ? 0 : s->gens[k].pid; /* the newest readable */
		sets[i].generations = &genp[g];
		for (size_t k = 0; k < s->n_gens; k++, g++) {
			fill_generation(&gens[g], &s->gens[k], gen_why[g], sizeof(gen_why[g]));
			genp[g] = &gens[g];
			sets[i].n_generations++;
			if (s->gens[k].generation != s->regions_of)
				continue;
			shown = &gens[g];
			if (fill_show(shown, s, &secs, &thrs, pass, passp) < 0) {
				request_fail(c->req, -ENOMEM, "out of memory");
				goto out;
			}
			for (size_t m = 0; m < s->vm.n; m++) {
				wpmig__image_backend__init(&bk[m]);
				bk[m].id = (char *)s->vm.b[m].id;
				bk[m].type = (char *)s->vm.b[m].type;
				bk[m].size = s->vm.b[m].size;
				bk[m].start = s->vm.b[m].start;
				bkp[m] = &bk[m];
			}
			gens[g].backends = bkp;
			gens[g].n_backends = s->vm.n;
			gens[g].device_state_bytes = s->vmstate_bytes;
			gens[g].regions = &regp[rg];
			for (size_t m = 0; m < s->n_regions; m++, rg++) {
				wpmig__image_region__init(&regs[rg]);
				regs[rg].start = s->regions[m].start;
				regs[rg].end = s->regions[m].end;
				regs[rg].path = s->regions[m].path;
				regs[rg].prot = s->regions[m].prot;
				regs[rg].shared = s->regions[m].shared;
				regs[rg].data_pages = s->region_data[m];
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
	ir.bytes_freed = c->freed;
	resp.result_case = WPMIG__RESPONSE__RESULT_IMAGES;
	resp.images = &ir;
	request_reply(c->req, &resp);
out:
	if (shown) {
		free(shown->sections);
		free(shown->threads);
	}
	free(secs); free(thrs);
	free(sets); free(setp); free(gens); free(genp);
	free(regs); free(regp); free(errs); free(errp); free(gen_why);
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
	switch (m->op) {
	case WPMIG__IMAGES_OP__IMAGES_LIST: case WPMIG__IMAGES_OP__IMAGES_SHOW:
	case WPMIG__IMAGES_OP__IMAGES_VERIFY: case WPMIG__IMAGES_OP__IMAGES_EXPORT:
	case WPMIG__IMAGES_OP__IMAGES_RM:
		break;
	default: /* an open enum: any number arrives */
		request_fail(req, -EOPNOTSUPP, "unknown images operation %d", (int)m->op);
		free(c);
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
