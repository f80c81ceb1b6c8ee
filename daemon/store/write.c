// SPDX-License-Identifier: GPL-2.0-only
/*
 * Writing a generation: the store's sink.  Chunks are streamed to a temp
 * file as they come (each worker reserves its file range under the lock and
 * writes outside it); only the log of extents stays in memory.  Commit turns
 * the log into the span index, appends index and footer, and publishes the
 * file with fsync + rename + fsync of the directory.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "basic/sum.h"
#include "basic/util.h"

#define WRITEBACK_STEP (16ULL << 20)

struct writer {
	struct sink sink;
	int images_fd, set_fd, lock_fd, fd;
	char set[STORE_SET_NAME_MAX + 1];
	uint64_t generation, parent;
	bool full, committed;
	int64_t begin_ns;
	pid_t pid;

	pthread_mutex_t lock; /* guards everything below */
	int error;            /* sticky: the first failure ends the generation */
	uint64_t tail;        /* next free file offset */
	uint64_t kicked;      /* writeback started up to here */
	uint64_t dropped;     /* dropped from the page cache up to here */
	struct disk_span *log;
	size_t n_log, cap_log;
	uint64_t *chunk_off;
	size_t n_chunks, cap_chunks;
	struct disk_section_ref sections[SECTION_MAX_COUNT];
	size_t n_sections;
	uint64_t data_pages, zero_pages;
};

static int64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* pwritev until done; a short write is retried so ENOSPC surfaces. */
static int pwritev_full(int fd, struct iovec *iov, int n, uint64_t off)
{
	while (n > 0) {
		ssize_t w = pwritev(fd, iov, n, (off_t)off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (uint64_t)w;
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

static void fail(struct writer *w, int r)
{
	pthread_mutex_lock(&w->lock);
	if (!w->error)
		w->error = r;
	pthread_mutex_unlock(&w->lock);
}

static int log_push(struct writer *w, uint64_t start, uint64_t end, uint64_t seq,
		    uint32_t kind, uint32_t chunk)
{
	if (w->n_log == w->cap_log) {
		size_t ncap = w->cap_log ? w->cap_log * 2 : 1024;
		struct disk_span *n = reallocarray(w->log, ncap, sizeof(*n));

		if (!n)
			return -ENOMEM;
		w->log = n;
		w->cap_log = ncap;
	}
	w->log[w->n_log++] = (struct disk_span){ start, end, seq, kind, chunk };
	return 0;
}

/* Under the lock: give the chunk an index and a file range, log its extents. */
static int log_chunk(struct writer *w, const struct enc_chunk *ch, uint64_t len, uint64_t *off)
{
	uint32_t idx = (uint32_t)w->n_chunks;
	int r = 0;

	if (w->n_chunks >= SPAN_NO_CHUNK - 1)
		return -EFBIG;
	if (w->n_chunks == w->cap_chunks) {
		size_t ncap = w->cap_chunks ? w->cap_chunks * 2 : 256;
		uint64_t *n = reallocarray(w->chunk_off, ncap, sizeof(*n));

		if (!n)
			return -ENOMEM;
		w->chunk_off = n;
		w->cap_chunks = ncap;
	}
	for (uint32_t i = 0; r == 0 && i < ch->n_ext; i++) {
		const struct ext *e = &ch->ext[i];
		bool data = e->kind == EXT_DATA;

		r = log_push(w, e->addr, e->addr + (uint64_t)e->pages * PAGE_SIZE_4K, ch->seq,
			     e->kind, data ? idx : SPAN_NO_CHUNK);
		if (!data)
			w->zero_pages += e->pages;
	}
	if (r < 0)
		return r;
	w->data_pages += ch->n_data_pages;
	w->chunk_off[w->n_chunks++] = *off = w->tail;
	w->tail += len;
	return 0;
}

/*
 * Start writeback of what has been written so far, without waiting, so the
 * disk works while the workers encode and commit's fsync has only the tail
 * left.  Ranges still being written by another worker are just skipped.
 * What was kicked one step before is written back by now (or soon): drop
 * it from the page cache.  An image is written once and seldom read, and a
 * 1 GiB checkpoint must not push 480 MB of the host's useful cache out;
 * the next writes then reuse those pages instead of fresh ones (on this
 * project's VMs fresh ones cost a host fault each: 0.3 GB/s against 2).
 */
static void kick_writeback(struct writer *w)
{
	uint64_t from, to, drop_from, drop_to;

	pthread_mutex_lock(&w->lock);
	from = w->kicked;
	to = w->tail;
	drop_from = w->dropped;
	drop_to = from;
	if (to - from >= WRITEBACK_STEP) {
		w->kicked = to;
		w->dropped = drop_to;
	}
	pthread_mutex_unlock(&w->lock);
	if (to - from < WRITEBACK_STEP)
		return;
	sync_file_range(w->fd, (off_t)from, (off_t)(to - from), SYNC_FILE_RANGE_WRITE);
	if (drop_to > drop_from)
		posix_fadvise(w->fd, (off_t)drop_from, (off_t)(drop_to - drop_from),
			      POSIX_FADV_DONTNEED);
}

static int w_put_chunk(struct sink *s, const struct enc_chunk *ch)
{
	static uint8_t zeros[8];
	struct writer *w = (struct writer *)s;
	struct disk_chunk h = { .magic = STORE_CHUNK_MAGIC };
	uint64_t len, off = 0;
	int r;

	if (codec_check(ch) < 0)
		return -EINVAL;
	h.n_ext = ch->n_ext;
	h.seq = ch->seq;
	h.n_data_pages = ch->n_data_pages;
	h.encoding = ch->encoding;
	h.payload_len = ch->payload_len;
	h.payload_sum = ch->payload_sum;
	h.meta_sum = chunk_meta_sum(&h, ch->ext, ch->page_sums);
	len = chunk_record_len(h.n_ext, h.n_data_pages, h.payload_len);

	pthread_mutex_lock(&w->lock);
	r = w->error ? w->error : log_chunk(w, ch, len, &off);
	pthread_mutex_unlock(&w->lock);
	if (r < 0)
		return r;

	struct iovec iov[] = {
		{ &h, sizeof(h) },
		{ ch->ext, (size_t)ch->n_ext * sizeof(struct ext) },
		{ ch->page_sums, (size_t)ch->n_data_pages * 8 },
		{ ch->payload, ch->payload_len },
		{ zeros, pad8(ch->payload_len) - ch->payload_len },
	};
	r = pwritev_full(w->fd, iov, (int)ARRAY_SIZE(iov), off);
	if (r < 0)
		fail(w, r);
	else
		kick_writeback(w);
	return r;
}

static int w_put_zero(struct sink *s, uint64_t seq, const struct range_set *zero)
{
	struct writer *w = (struct writer *)s;
	int r;

	for (size_t i = 0; i < zero->n; i++)
		if ((zero->r[i].start | zero->r[i].end) & (PAGE_SIZE_4K - 1))
			return -EINVAL;
	pthread_mutex_lock(&w->lock);
	r = w->error;
	for (size_t i = 0; r == 0 && i < zero->n; i++) {
		r = log_push(w, zero->r[i].start, zero->r[i].end, seq, EXT_ZERO, SPAN_NO_CHUNK);
		w->zero_pages += (zero->r[i].end - zero->r[i].start) / PAGE_SIZE_4K;
	}
	if (r < 0 && !w->error)
		w->error = r;
	pthread_mutex_unlock(&w->lock);
	return r;
}

/* Under the lock: a file range and an index entry for the section. */
static int log_section(struct writer *w, const struct disk_section *h, uint64_t *off)
{
	for (size_t i = 0; i < w->n_sections; i++)
		if (!strcmp(w->sections[i].name, h->name))
			return -EEXIST;
	if (w->n_sections == SECTION_MAX_COUNT)
		return -E2BIG;
	struct disk_section_ref *ref = &w->sections[w->n_sections++];
	*ref = (struct disk_section_ref){ .offset = w->tail, .length = h->length, .sum = h->sum,
					  .type = h->type };
	memcpy(ref->name, h->name, sizeof(ref->name));
	*off = w->tail;
	w->tail += section_record_len(h->length);
	return 0;
}

static int w_put_section(struct sink *s, const char *name, uint32_t type, const void *data,
			 size_t len)
{
	static uint8_t zeros[8];
	struct writer *w = (struct writer *)s;
	struct disk_section h = { .magic = STORE_SECTION_MAGIC, .type = type, .length = len };
	uint64_t off = 0;
	int r;

	if (!section_name_valid(name) || !type || (len && !data))
		return -EINVAL;
	if (len > SECTION_MAX_BYTES)
		return -E2BIG;
	h.sum = XXH3_64bits(data, len);
	strncpy(h.name, name, sizeof(h.name) - 1);
	h.header_sum = XXH3_64bits(&h, offsetof(struct disk_section, header_sum));
	pthread_mutex_lock(&w->lock);
	r = w->error ? w->error : log_section(w, &h, &off);
	pthread_mutex_unlock(&w->lock);
	if (r < 0)
		return r;
	struct iovec iov[] = {
		{ &h, sizeof(h) },
		{ (void *)data, len },
		{ zeros, pad8(len) - len },
	};
	r = pwritev_full(w->fd, iov, (int)ARRAY_SIZE(iov), off);
	if (r < 0)
		fail(w, r);
	return r;
}

static int write_tail(struct writer *w, void *index, size_t len, uint64_t *size)
{
	struct disk_footer f = { .index_off = w->tail, .index_len = len,
				 .index_sum = XXH3_64bits(index, len) };
	struct iovec iov[] = { { index, len }, { &f, sizeof(f) } };

	memcpy(f.magic, STORE_FOOTER_MAGIC, sizeof(f.magic));
	*size = w->tail + len + sizeof(f);
	return pwritev_full(w->fd, iov, 2, w->tail);
}

/* Durable before visible: fsync, rename, fsync the directory. */
static int publish(struct writer *w)
{
	char tmp[GEN_NAME_LEN], name[GEN_NAME_LEN];
	int r;

	if (fsync(w->fd) < 0)
		return -errno;
	posix_fadvise(w->fd, 0, 0, POSIX_FADV_DONTNEED); /* all clean now: see kick_writeback */
	gen_file_name(tmp, w->generation, true);
	gen_file_name(name, w->generation, false);
	if (renameat2(w->set_fd, tmp, w->set_fd, name, RENAME_NOREPLACE) < 0) {
		if (errno != EINVAL && errno != ENOSYS)
			return -errno;
		if (renameat(w->set_fd, tmp, w->set_fd, name) < 0) /* we hold the set lock */
			return -errno;
	}
	r = fsync_dir(w->set_fd);
	if (r < 0) {
		/* Not known to be durable: do not leave it half-published. */
		unlinkat(w->set_fd, name, 0);
		return r;
	}
	w->committed = true;
	return 0;
}

/* Remove the temp file, and the set too if this was to be its first generation. */
static void drop(struct writer *w)
{
	char tmp[GEN_NAME_LEN];
	_cleanup_free_ uint64_t *gens = NULL;
	size_t n = 1;

	gen_file_name(tmp, w->generation, true);
	unlinkat(w->set_fd, tmp, 0);
	if (set_generations(w->set_fd, &gens, &n) == 0 && n == 0) {
		unlinkat(w->set_fd, LOCK_NAME, 0);
		unlinkat(w->images_fd, w->set, AT_REMOVEDIR);
	}
}

static int w_commit(struct sink *s, const struct pass_region *regions, size_t n,
		    struct gen_summary *out)
{
	struct writer *w = (struct writer *)s;
	_cleanup_free_ struct disk_span *spans = NULL;
	_cleanup_free_ void *index = NULL;
	size_t n_spans = 0, len = 0;
	uint64_t size = 0;
	int r = w->error;

	if (r == 0)
		r = regions_check(regions, n);
	if (r == 0)
		r = resolve_log(w->log, w->n_log, regions, n, &spans, &n_spans);
	if (r == 0) {
		free(w->log);
		w->log = NULL;
		w->n_log = w->cap_log = 0;
		struct index_params ip = {
			.generation = w->generation, .created_ns = realtime_ns(),
			.data_pages = w->data_pages, .zero_pages = w->zero_pages,
			.chunk_off = w->chunk_off, .n_chunks = w->n_chunks,
			.sections = w->sections, .n_sections = w->n_sections,
		};
		r = index_build(&ip, regions, n, spans, n_spans, &index, &len);
	}
	if (r == 0)
		r = write_tail(w, index, len, &size);
	if (r == 0)
		r = publish(w);
	if (r < 0) {
		w->error = r;
		drop(w);
		return r;
	}
	*out = (struct gen_summary){
		.generation = w->generation, .parent = w->full ? 0 : w->parent,
		.data_pages = w->data_pages, .zero_pages = w->zero_pages,
		.bytes_stored = size, .raw_bytes = w->data_pages * PAGE_SIZE_4K,
	};
	for (size_t i = 0; i < n_spans; i++)
		*(spans[i].kind == EXT_DATA ? &out->held_data_pages : &out->held_zero_pages) +=
			(spans[i].end - spans[i].start) / PAGE_SIZE_4K;
	return 0;
}

static void writer_free(struct writer *w)
{
	if (!w->committed && w->lock_fd >= 0)
		drop(w); /* only with the set lock: never touch another writer's files */
	closep(&w->fd);
	closep(&w->lock_fd);
	closep(&w->set_fd);
	closep(&w->images_fd);
	pthread_mutex_destroy(&w->lock);
	free(w->log);
	free(w->chunk_off);
	free(w);
}

static void w_abort(struct sink *s)
{
	writer_free((struct writer *)s);
}

static const struct sink_ops writer_ops = {
	.put_chunk = w_put_chunk,
	.put_zero = w_put_zero,
	.put_section = w_put_section,
	.commit = w_commit,
	.abort = w_abort,
	.close = w_abort, /* after a commit there is nothing left to drop */
};

/* Which generation comes next, and may this one follow it? */
static int next_generation(struct writer *w, bool full, uint64_t expect_parent)
{
	_cleanup_free_ uint64_t *gens = NULL;
	struct store_gen_info info;
	size_t n;
	int r = set_generations(w->set_fd, &gens, &n);

	if (r < 0)
		return r;
	w->parent = n ? gens[n - 1] : 0;
	w->generation = w->parent + 1;
	if (full)
		return 0;
	if (!n)
		return -ENOENT;
	if (expect_parent != w->parent)
		return -ESTALE;
	return gen_file_peek(w->set_fd, w->parent, &info);
}

static int write_header(struct writer *w)
{
	struct disk_header h = {
		.version = STORE_VERSION, .header_size = sizeof(h), .page_size = PAGE_SIZE_4K,
		.flags = w->full ? GEN_FULL : 0, .generation = w->generation,
		.parent = w->parent, .begin_ns = w->begin_ns, .pid = (uint32_t)w->pid,
	};
	struct iovec iov = { &h, sizeof(h) };

	memcpy(h.magic, STORE_HEADER_MAGIC, sizeof(h.magic));
	h.sum = XXH3_64bits(&h, offsetof(struct disk_header, sum));
	w->tail = sizeof(h);
	return pwritev_full(w->fd, &iov, 1, 0);
}

/*
 * The set may vanish under us: an rm, or the abort of its first generation,
 * removes the lock file and then the directory.  Files can no longer be
 * created in a removed directory, so this fails with -ENOENT rather than
 * writing where nobody looks; then try once more from the top.
 */
static int open_and_lock(struct store *st, struct writer *w)
{
	int r = -ENOENT;

	for (int i = 0; r == -ENOENT && i < 3; i++) {
		closep(&w->set_fd);
		w->set_fd = -1;
		r = set_dir_open(st, w->set, true, &w->set_fd);
		if (r == 0)
			r = set_lock(w->set_fd, &w->lock_fd);
	}
	return r;
}

int store_begin(struct store *st, const char *set, pid_t pid, bool full,
		uint64_t expect_parent, struct sink **ret, uint64_t *generation)
{
	struct writer *w = calloc(1, sizeof(*w));
	char tmp[GEN_NAME_LEN];
	int r;

	if (!store_set_name_valid(set)) {
		free(w);
		return -EINVAL;
	}
	if (!w)
		return -ENOMEM;
	*w = (struct writer){ .sink.ops = &writer_ops, .images_fd = -1, .set_fd = -1,
			      .lock_fd = -1, .fd = -1, .full = full, .pid = pid,
			      .begin_ns = realtime_ns() };
	pthread_mutex_init(&w->lock, NULL);
	snprintf(w->set, sizeof(w->set), "%s", set);
	w->images_fd = fcntl(st->images_fd, F_DUPFD_CLOEXEC, 3);
	r = w->images_fd < 0 ? -errno : open_and_lock(st, w);
	if (r == 0) {
		set_clean_temp(w->set_fd);
		r = next_generation(w, full, expect_parent);
	}
	if (r == 0) {
		gen_file_name(tmp, w->generation, true);
		w->fd = openat(w->set_fd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			       0600);
		r = w->fd < 0 ? -errno : write_header(w);
	}
	if (r < 0) {
		writer_free(w);
		return r;
	}
	*ret = &w->sink;
	*generation = w->generation;
	return 0;
}
