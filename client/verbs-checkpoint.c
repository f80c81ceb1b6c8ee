// SPDX-License-Identifier: GPL-2.0-only
/* checkpoint, restore */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "ctl.h"

enum { CK_SET, CK_PEER, CK_LEAVE_STOPPED, CK_MAX_BANDWIDTH, CK_PASSES, CK_QMP };

static const struct option checkpoint_opts[] = {
	{ "set", required_argument, NULL, CK_SET },
	{ "peer", required_argument, NULL, CK_PEER },
	{ "leave-stopped", no_argument, NULL, CK_LEAVE_STOPPED },
	{ "max-bandwidth", required_argument, NULL, CK_MAX_BANDWIDTH },
	{ "passes", no_argument, NULL, CK_PASSES },
	{ "qmp", required_argument, NULL, CK_QMP },
	{ 0 },
};

static int show_checkpoint(struct ctl *c, const Wpmig__Response *resp)
{
	const Wpmig__CheckpointResult *r = resp->checkpoint;
	char b[32], raw[32];

	if (c->json) {
		json_print(pb_to_json(&r->base));
		return EXIT_OK;
	}
	printf("%s/%" PRIu64 ": %" PRIu64 " pages (%" PRIu64 " data, %" PRIu64 " zero), "
	       "%s %s of %s%s%s\n", r->set, r->generation, r->pages, r->data_pages,
	       r->zero_pages, fmt_bytes(r->bytes, b, sizeof(b)), r->peer[0] ? "sent" : "stored",
	       fmt_bytes(r->raw_bytes, raw, sizeof(raw)), r->peer[0] ? " to " : "", r->peer);
	if (r->qmp[0]) {
		printf("QEMU %d: device state %s, guest paused %.2f ms (device state %.1f ms), "
		       "took %.1f ms, %" PRIu64 " passes%s\n", r->qemu_pid,
		       fmt_bytes(r->device_state_bytes, b, sizeof(b)), r->pause_ms,
		       r->device_state_ms, r->duration_ms, r->passes,
		       r->parent ? "" : " (full generation)");
		if (r->guest_stopped)
			printf("the guest is left stopped: QMP cont runs it\n");
		return EXIT_OK;
	}
	printf("paused %.2f ms (freeze %.2f, scan %.2f, copy %.2f, thaw %.2f), took %.1f ms, "
	       "%" PRIu64 " passes, %u threads%s\n", r->pause_ms, r->freeze_ms, r->scan_ms,
	       r->copy_ms, r->thaw_ms, r->duration_ms, r->passes, r->threads,
	       r->parent ? "" : " (full generation)");
	if (r->settle_threads)
		printf("waited %.2f ms before the freeze for %u thread(s) that had just woken up "
		       "(their first run may stall; not in the pause)\n", r->settle_ms,
		       r->settle_threads);
	if (c->passes)
		print_passes(r->pass_rows, r->n_pass_rows);
	return EXIT_OK;
}

static int run_checkpoint(struct ctl *c, char **args, int n, const struct verb_opts *o)
{
	Wpmig__Request req = WPMIG__REQUEST__INIT;
	Wpmig__CheckpointRequest cr = WPMIG__CHECKPOINT_REQUEST__INIT;

	if (o->set[CK_QMP]) {
		if (n != 0)
			return usage_error(&verb_checkpoint, "--qmp SOCK takes no PID");
		cr.qmp = (char *)o->val[CK_QMP];
	} else if (n != 1) {
		return usage_error(&verb_checkpoint, "PID or --qmp SOCK needed");
	} else if (parse_pid_arg(args[0], &cr.pid) < 0) {
		return usage_error(&verb_checkpoint, "invalid PID '%s'", args[0]);
	}
	if (o->set[CK_SET] && check_set_name(o->val[CK_SET]) < 0)
		return usage_error(&verb_checkpoint, "invalid set name '%s' (letters, digits, "
				   "'.', '_', '-'; at most 64)", o->val[CK_SET]);
	if (o->set[CK_PEER] && check_addr(o->val[CK_PEER]) < 0)
		return usage_error(&verb_checkpoint, "invalid peer '%s' (HOST:PORT or unix:PATH)",
				   o->val[CK_PEER]);
	cr.set = (char *)(o->set[CK_SET] ? o->val[CK_SET] : "");
	cr.peer = (char *)(o->set[CK_PEER] ? o->val[CK_PEER] : "");
	cr.leave_stopped = o->set[CK_LEAVE_STOPPED];
	c->passes = o->set[CK_PASSES];
	if (o->set[CK_MAX_BANDWIDTH] && (!o->set[CK_PEER] ||
					 parse_rate(o->val[CK_MAX_BANDWIDTH], &cr.max_bandwidth) < 0))
		return usage_error(&verb_checkpoint, "--max-bandwidth RATE (bytes/s, K/M/G "
				   "suffixes) goes with --peer");
	req.verb_case = WPMIG__REQUEST__VERB_CHECKPOINT;
	req.checkpoint = &cr;
	return ctl_run_request(c, &req, show_checkpoint);
}

const struct verb_def verb_checkpoint = {
	"checkpoint", 0, 1, checkpoint_opts,
	"checkpoint PID [--set NAME] [--peer ADDR [--max-bandwidth RATE]] [--leave-stopped] "
	"[--passes]\n"
	"  checkpoint --qmp SOCK [--set NAME] [--peer ADDR [--max-bandwidth RATE]] "
	"[--leave-stopped]",
	run_checkpoint,
};

enum { RS_MEMORY_ONLY, RS_QMP, RS_LEAVE_STOPPED };

static const struct option restore_opts[] = {
	{ "memory-only", no_argument, NULL, RS_MEMORY_ONLY },
	{ "qmp", required_argument, NULL, RS_QMP },
	{ "leave-stopped", no_argument, NULL, RS_LEAVE_STOPPED },
	{ 0 },
};

static int show_restore(struct ctl *c, const Wpmig__Response *resp)
{
	const Wpmig__RestoreResult *r = resp->restore;
	char b[32];

	if (c->json) {
		json_print(pb_to_json(&r->base));
		return EXIT_OK;
	}
	if (r->qmp[0]) {
		printf("restored %s/%" PRIu64 " into QEMU %d: %" PRIu64 " pages written (%s), %"
		       PRIu64 " left as holes, device state %" PRIu64 " bytes; the guest %s "
		       "(took %.1f ms)\n", r->set, r->generation, r->qemu_pid, r->pages,
		       fmt_bytes(r->bytes, b, sizeof(b)), r->pages_zero, r->device_state_bytes,
		       r->guest_stopped ? "is left stopped: QMP cont runs it" : "runs",
		       r->duration_ms);
		return EXIT_OK;
	}
	printf("restored %s/%" PRIu64 ": %" PRIu64 " pages (%s) written back", r->set,
	       r->generation, r->pages, fmt_bytes(r->bytes, b, sizeof(b)));
	if (r->memory_only)
		printf(", memory only");
	else
		printf(" and %u threads' registers", r->threads);
	printf(", paused %.2f ms, took %.1f ms\n", r->pause_ms, r->duration_ms);
	printf("  %" PRIu64 " of %" PRIu64 " pages differed, %" PRIu64 " more were written "
	       "meanwhile\n", r->pages_differing, r->image_pages, r->pages_written_since);
	if (r->warning[0])
		fprintf(stderr, "wpmig-ctl: warning: %s\n", r->warning);
	return EXIT_OK;
}

static int run_restore(struct ctl *c, char **args, int n, const struct verb_opts *o)
{
	Wpmig__Request req = WPMIG__REQUEST__INIT;
	Wpmig__RestoreRequest rr = WPMIG__RESTORE_REQUEST__INIT;
	char *set = NULL;
	const char *image = args[n - 1];
	int r;

	if (o->set[RS_QMP]) {
		if (n != 1)
			return usage_error(&verb_restore, "--qmp SOCK takes SET/GEN alone");
		rr.qmp = (char *)o->val[RS_QMP];
	} else if (o->set[RS_LEAVE_STOPPED]) {
		return usage_error(&verb_restore, "--leave-stopped goes with --qmp SOCK");
	} else if (n != 2) {
		return usage_error(&verb_restore, "PID SET/GEN, or --qmp SOCK SET/GEN");
	} else if (parse_pid_arg(args[0], &rr.pid) < 0) {
		return usage_error(&verb_restore, "invalid PID '%s'", args[0]);
	}
	if (parse_set_gen(image, true, &set, &rr.generation) < 0)
		return usage_error(&verb_restore, "invalid image '%s' (expected SET/GEN)", image);
	rr.set = set;
	rr.memory_only = o->set[RS_MEMORY_ONLY];
	rr.leave_stopped = o->set[RS_LEAVE_STOPPED];
	req.verb_case = WPMIG__REQUEST__VERB_RESTORE;
	req.restore = &rr;
	r = ctl_run_request(c, &req, show_restore);
	free(set);
	return r;
}

const struct verb_def verb_restore = {
	"restore", 1, 2, restore_opts, "restore PID SET/GEN [--memory-only]\n"
	"  restore --qmp SOCK SET/GEN [--leave-stopped]", run_restore,
};
