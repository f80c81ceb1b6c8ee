// SPDX-License-Identifier: GPL-2.0-only
#include "pipeline/checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "basic/util.h"
#include "pipeline/passes.h"
#include "track/freeze.h"
#include "track/settle.h"
#include "track/threads.h"

struct run {
	struct tracker *t;
	struct pipeline *pl;
	struct sink *s;
	const struct checkpoint_opts *o;
	struct checkpoint_result *res;
	struct range_set taken; /* everything this generation collected */
	struct pass_row spare_row; /* rows past PASSES_MAX land here */
	struct thread_states threads; /* at the frozen pass */
	struct settle settle; /* the threads' states before the last live pass */
	char phase[32];
	char *why;
	size_t why_len;
};

static void on_progress(void *ud, uint64_t done, uint64_t total, uint64_t bytes_out)
{
	struct run *run = ud;

	if (run->o->progress)
		run->o->progress(run->o->ud, run->phase, done, total, bytes_out);
}

static int note_taken(struct run *run, const struct pass *p)
{
	int r = 0;

	for (size_t i = 0; r == 0 && i < p->data.n; i++)
		r = range_set_add(&run->taken, p->data.r[i].start, p->data.r[i].end);
	for (size_t i = 0; r == 0 && i < p->zero.n; i++)
		r = range_set_add(&run->taken, p->zero.r[i].start, p->zero.r[i].end);
	return r;
}

/* The pass's row of the table; past PASSES_MAX rows, a row nobody keeps. */
static struct pass_row *new_row(struct run *run, uint64_t seq, uint32_t flags, uint64_t found,
				uint64_t scan_ns)
{
	struct checkpoint_result *res = run->res;
	struct pass_row *row = res->n_pass_rows < PASSES_MAX ? &res->pass_rows[res->n_pass_rows++]
							     : &run->spare_row;

	*row = (struct pass_row){ .seq = (uint32_t)seq, .flags = flags, .found = found,
				  .scan_ns = scan_ns };
	return row;
}

/* Pass counts: pages the tracker found, and the codec's zero pages. */
static void account(struct run *run, struct pass_row *row, uint64_t data, uint64_t zero,
		    const struct pipeline_stats *st)
{
	run->res->passes++;
	run->res->data_pages += data - st->zero_pages;
	run->res->zero_pages += zero + st->zero_pages;
	run->res->unreadable += st->unreadable;
	row->data_pages = data - st->zero_pages;
	row->zero_pages = zero + st->zero_pages;
	row->bytes = st->bytes_out;
}

static uint64_t pages_of(const struct range_set *s)
{
	return range_set_bytes(s) / PAGE_SIZE_4K;
}

/* The last live pass is only copied out (much faster than encoding), so
 * the target dirties less before the freeze; up to this much memory. */
#define LAST_PASS_CAPTURE_MAX (512ULL << 20)

/*
 * Live passes stop below this many pages, and the last is only copied out
 * before the freeze.  Why not lower: a pass that re-protects pages starts
 * a window in which the target, if it wakes up, is slow to stop.  On hosts
 * with shadow paging a process's first run after its page tables changed
 * stalls 8-27 ms (measured here, issue 16), and a stop request waits that
 * out.  Encoding the pass before the freeze kept the window open 15-25 ms
 * for 1 % of 1 GiB rewritten with random bytes (2,621 pages, just above the
 * old 2,048); copying it out closes it in a few.  32 MiB held at most.
 */
#define CONVERGE_PAGES_DEFAULT 8192

/* The final pass's copy-out goes into memory mapped before the live
 * passes (mapping it between the last of them and the freeze would keep
 * that window open longer); at least this much. */
#define FINAL_ARENA_MIN_PAGES 1024ULL

struct held {
	struct capture *cap;
	uint64_t seq, data, zero;
	struct pass_row *row;
	unsigned pass; /* 0: the first live pass */
};

/*
 * Passes while the target runs, until they find little.  The last one is
 * held as a capture in *held (encoded after the thaw) when it fits.
 */
static int live_passes(struct run *run, uint64_t *seq, struct held *held)
{
	unsigned max = run->o->max_live_passes ? run->o->max_live_passes : 4;
	uint64_t converge = run->o->converge_pages ? run->o->converge_pages
						  : CONVERGE_PAGES_DEFAULT;

	for (unsigned i = 0; i < max; i++) {
		struct pipeline_stats st = { 0 };
		struct pass p;
		int r;

		settle_mark(tracker_pid(run->t), &run->settle);
		r = tracker_pass(run->t, 0, &p);

		if (r < 0)
			return r;
		snprintf(run->phase, sizeof(run->phase), "live-pass %u", i + 1);
		uint64_t data = pages_of(&p.data), zero = pages_of(&p.zero);
		bool last = data + zero < converge || i + 1 == max;
		bool hold = last && data * PAGE_SIZE_4K <= LAST_PASS_CAPTURE_MAX;
		struct pass_row *row = new_row(run, *seq, hold ? PASS_ROW_HELD : 0, data + zero,
					       p.st.total_ns);
		r = note_taken(run, &p);
		if (r == 0 && hold) {
			r = pipeline_capture(run->pl, run->t, &p, NULL, &held->cap, &st);
			*held = (struct held){ held->cap, (*seq)++, data, zero, row, i };
			row->copy_ns = st.ns;
			run->res->unreadable += st.unreadable;
			pass_free(&p);
			return r;
		}
		if (r == 0)
			r = pipeline_run(run->pl, run->t, &p, (*seq)++, run->s, on_progress, run, &st);
		row->copy_ns = st.ns;
		if (r == 0)
			account(run, row, data, zero, &st);
		pass_free(&p);
		if (r < 0 || last)
			return r;
	}
	return 0;
}

/* Encode and store a capture after the thaw. */
static int flush(struct run *run, struct capture *cap, uint64_t seq, uint64_t data, uint64_t zero,
		 struct pass_row *row)
{
	struct pipeline_stats st = { 0 };
	int r = pipeline_flush(run->pl, cap, seq, run->s, on_progress, run, &st);

	row->store_ns = st.ns;
	if (r == 0)
		account(run, row, data, zero, &st);
	return r;
}

/*
 * Before the freeze: let a thread that woke up since the last live pass
 * re-protected pages go back to sleep first (track/settle.h: its first run
 * may stall in the host, and a stop request would wait the stall out inside
 * the pause).  The checkpoint takes longer by the wait; the pause does not.
 */
static void settle(struct run *run)
{
	struct settle_result sr;

	settle_wait(&run->settle, run->o->settle_max_ms * 1000000ULL, &sr);
	run->res->settle_ns = sr.ns;
	run->res->settle_threads = sr.threads;
	run->res->settle_timed_out = sr.timed_out;
}

/*
 * Freeze, final pass, copy out, thaw: the only time the target waits.  The
 * copy goes into memory populated before the freeze (*arena, mapped before
 * the live passes), grown when a later live pass still found pages: a
 * target writes about as much again meanwhile.
 */
static int frozen_pass(struct run *run, struct pass *p, struct capture **cap,
		       uint64_t expect_pages, struct capture_arena *arena)
{
	struct pipeline_stats st = { 0 };
	struct freeze f;
	uint64_t want = MIN(expect_pages * 2 * PAGE_SIZE_4K, LAST_PASS_CAPTURE_MAX);
	int r = 0;

	if (want > arena->len) {
		capture_arena_free(arena);
		if (capture_arena_new(want, arena) < 0)
			*arena = (struct capture_arena){ 0 }; /* the capture maps its own */
	}
	settle(run);
	r = freeze_process(tracker_pid(run->t), &f);
	run->res->freeze_walks = f.walks;
	run->res->freeze_threads_exited = f.threads_exited;
	if (r < 0) {
		snprintf(run->why, run->why_len, "cannot stop process %d: %s",
			 (int)tracker_pid(run->t), f.why[0] ? f.why : strerror(-r));
		return r;
	}
	uint64_t t0 = now_ns(), t1, t2;
	run->res->freeze_ns = t0 - f.t_start_ns;
	r = tracker_pass(run->t, PASS_FINAL, p);
	t1 = now_ns();
	run->res->final_scan_ns = t1 - t0;
	if (r == 0)
		run->res->final_pages = pages_of(&p->data) + pages_of(&p->zero);
	if (r == 0) {
		r = pipeline_capture(run->pl, run->t, p, arena, cap, &st);
		run->res->unreadable += st.unreadable;
	}
	/* Every thread's registers, for a restore to resume exactly here. */
	if (r == 0)
		r = threads_capture(&f, &run->threads);
	t2 = now_ns();
	run->res->final_copy_ns = t2 - t1;
	/* On failure never leave it stopped, whatever was asked. */
	int rt = thaw_process(&f, r == 0 && run->o->leave_stopped);
	uint64_t t4 = now_ns(), t3 = f.t_released_ns ? f.t_released_ns : t4;
	run->res->thaw_ns = t3 - t2;
	run->res->release_wait_ns = t4 - t3;
	run->res->pause_ns = t3 - f.t_start_ns;
	if (r == 0 && rt < 0)
		r = rt;
	if (r < 0 && p->regions)
		pass_free(p);
	return r;
}

/* The threads' state as the generation's "threads" section. */
static int put_threads(struct run *run)
{
	_cleanup_free_ uint8_t *buf = NULL;
	size_t len;
	int r = threads_encode(&run->threads, &buf, &len);

	if (r == 0)
		r = run->s->ops->put_section(run->s, THREADS_SECTION_NAME, SECTION_THREADS, buf, len);
	run->res->threads = (uint32_t)run->threads.n;
	threads_free(&run->threads);
	return r;
}

/* The per-pass table as the generation's "passes" section: every row is
 * complete once the final pass is stored. */
static int put_passes(struct run *run)
{
	_cleanup_free_ uint8_t *buf = NULL;
	size_t len;
	int r = passes_encode(run->res->pass_rows, run->res->n_pass_rows, &buf, &len);

	if (r == 0)
		r = run->s->ops->put_section(run->s, PASSES_SECTION_NAME, SECTION_PASSES, buf, len);
	return r;
}

int checkpoint_run(struct tracker *t, struct pipeline *pl, struct sink *s,
		   const struct checkpoint_opts *opts, struct checkpoint_result *res,
		   char *why, size_t why_len)
{
	struct run run = { .t = t, .pl = pl, .s = s, .o = opts, .res = res, .why = why,
			   .why_len = why_len };
	uint64_t t0 = now_ns(), seq = 1;
	struct capture *cap = NULL;
	struct capture_arena arena = { 0 };
	struct held held = { 0 };
	struct pass final = { 0 };
	int r;

	*res = (struct checkpoint_result){ 0 };
	if (capture_arena_new(FINAL_ARENA_MIN_PAGES * PAGE_SIZE_4K, &arena) < 0)
		arena = (struct capture_arena){ 0 }; /* mapped later, or by the capture */
	r = live_passes(&run, &seq, &held);
	/* What the first live pass found had piled up since the last
	 * checkpoint; only a later one tells how fast the target writes. */
	if (r == 0)
		r = frozen_pass(&run, &final, &cap, held.pass ? held.data : 0, &arena);
	snprintf(run.phase, sizeof(run.phase), "store");
	if (held.cap) {
		if (r == 0)
			r = flush(&run, held.cap, held.seq, held.data, held.zero, held.row);
		else
			capture_free(held.cap);
	}
	if (cap) {
		uint64_t data = pages_of(&final.data), zero = pages_of(&final.zero);
		struct pass_row *row = new_row(&run, seq, PASS_ROW_FINAL, data + zero,
					       res->final_scan_ns);
		row->copy_ns = res->final_copy_ns;
		row->pause_ns = res->pause_ns;
		if (r == 0)
			r = note_taken(&run, &final);
		if (r == 0)
			r = flush(&run, cap, seq, data, zero, row);
		else
			capture_free(cap);
	}
	capture_arena_free(&arena);
	if (r == 0)
		r = put_threads(&run);
	threads_free(&run.threads);
	if (r == 0)
		r = put_passes(&run);
	if (r == 0)
		r = s->ops->commit(s, final.regions, final.n_regions, &res->gen);
	res->regions = (uint32_t)final.n_regions;
	pass_free(&final);
	if (r < 0) {
		if (!why[0])
			snprintf(why, why_len, "checkpoint of process %d failed: %s", (int)tracker_pid(t),
				 strerror(-r));
		s->ops->abort(s);
		tracker_resync(t, &run.taken);
	} else {
		s->ops->close(s);
	}
	res->pages = res->data_pages + res->zero_pages;
	res->bytes = res->gen.bytes_stored;
	res->duration_ns = now_ns() - t0;
	range_set_free(&run.taken);
	return r;
}
