/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The local image store: checkpoint sets under STATE_DIR/images/SET/, one
 * file per generation (docs/image-format.md).  A generation is written
 * through a sink (sink.h) and appears only when commit has made it durable;
 * readers resolve every address through the parent chain down to a full
 * generation.  Errors are negative errno; nothing here logs.
 *
 * Threads: a sink's put_chunk may be called from several threads at once;
 * everything else on one object is for one thread at a time.  Any number of
 * processes may read while one writer per set writes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "basic/util.h"
#include "pipeline/sink.h"
#include "track/tracker.h"

#define STORE_DEFAULT_DIR "/var/lib/wpmig"
#define STORE_SET_NAME_MAX SET_NAME_MAX

struct store;
struct store_image;

/* Progress of a long operation, in pages; called now and then and at the end. */
struct store_progress {
	void (*fn)(void *userdata, uint64_t done, uint64_t total);
	void *userdata;
};

struct store_gen_info {
	uint64_t generation;
	uint64_t parent;        /* previous generation by number, 0 if none */
	bool full;              /* self-contained: reading stops here */
	int error;              /* listing only: 0, or why the file is unusable */
	const char *error_what; /* listing only: that in words ("header checksum mismatch") */
	int64_t created_ns;     /* CLOCK_REALTIME at commit */
	pid_t pid;
	uint32_t n_regions, n_chunks, n_sections;
	uint64_t region_bytes;  /* size of the image: sum of the regions */
	uint64_t data_pages, zero_pages;           /* as written, superseded included */
	uint64_t live_data_pages, live_zero_pages; /* what this generation holds */
	uint64_t raw_bytes;     /* data_pages * 4096 */
	uint64_t disk_bytes;    /* size of the generation file */
};

/* Opens (creating it if needed) STATE_DIR/images; removes stale temp files. */
int store_open(const char *state_dir, struct store **ret);
void store_close(struct store *st);

/* set_name_valid() (basic/util.h): the client checks the same. */
bool store_set_name_valid(const char *set);

/* Sets, sorted by name; free with store_names_free(). */
int store_list_sets(struct store *st, char ***ret, size_t *ret_n);
void store_names_free(char **names, size_t n);
/* Generations of a set, oldest first; free() the array. */
int store_list_generations(struct store *st, const char *set,
			   struct store_gen_info **ret, size_t *ret_n);

/*
 * Start the next generation of set (created if new).  full: the first
 * generation of a tracking session; it gets the next number but is
 * self-contained.  Otherwise it is an increment over expect_parent, which
 * must be the newest generation (-ESTALE if not: pages written between
 * would be lost; -ENOENT if the set has none).  -EBUSY when another writer
 * or rm holds the set (or, for an instant, another process's store_open
 * cleaning it: worth one retry).  The sink's commit fills
 * gen_summary.parent with 0 for a full generation (sink.h); the file still
 * records the number.  After a failed commit the generation is already
 * gone; call abort to free the sink.
 */
int store_begin(struct store *st, const char *set, pid_t pid, bool full,
		uint64_t expect_parent, struct sink **ret, uint64_t *generation);

/*
 * Remove a whole set, or only its newest generation.  -EBUSY: a writer
 * holds the set; -ENOTEMPTY: a later generation is an increment over this
 * one, or (rm of a set) the set's directory holds something the store did
 * not put there (a file not named like ours, a directory that is not
 * empty): nothing is removed and info->blocker names it.  Damaged or
 * special files named like generations are removed too.  info may be NULL.
 */
struct store_rm_info {
	uint64_t bytes_freed;
	char blocker[96];
};
int store_rm_set(struct store *st, const char *set, struct store_rm_info *info);
int store_rm_generation(struct store *st, const char *set, uint64_t generation,
			struct store_rm_info *info);

/*
 * Open generation (0: the newest) for reading: every file of its chain is
 * opened and its index checked (-EBADMSG if damaged, -EPROTONOSUPPORT if
 * written in another format version, -ENOENT if missing).
 */
int store_image_open(struct store *st, const char *set, uint64_t generation,
		     struct store_image **ret);
/* Why an image could not be opened: the file at fault (the generation asked
 * for, the newest for 0, or a parent it needs) and what is wrong with it. */
struct store_err {
	uint64_t generation; /* 0: none was opened (no such set, or none in it) */
	const char *what;    /* static, or NULL */
};
int store_image_open_err(struct store *st, const char *set, uint64_t generation,
			 struct store_image **ret, struct store_err *err);
void store_image_close(struct store_image *img);
const struct store_gen_info *store_image_info(const struct store_image *img);
/* The region table (pass_region.backing is -1). */
const struct pass_region *store_image_regions(const struct store_image *img, size_t *n);

/*
 * Content of [addr, addr + len) at this generation, checksums verified.
 * -ENXIO if part of it is outside the regions, -EBADMSG on damage.
 */
int store_image_read(struct store_image *img, uint64_t addr, uint64_t len, void *buf);

/* A section of a generation (sink.h): a named, typed blob of bytes. */
struct store_section {
	char name[SECTION_NAME_MAX + 1];
	uint32_t type;
	uint64_t length;
};

/*
 * The sections of the generation opened (never its parents'): up to max
 * into out, in the order they were put; returns how many it has.
 */
size_t store_image_sections(const struct store_image *img, struct store_section *out,
			    size_t max);
/*
 * Section name of the generation opened, its checksums verified: *buf
 * (malloc'ed, free it) and *len.  type 0 takes any type.  -ENOENT when it
 * has none of that name, -EMEDIUMTYPE when it is of another type,
 * -EBADMSG when damaged.
 */
int store_image_read_section(struct store_image *img, const char *name, uint32_t type,
			     void **buf, size_t *len);

/*
 * The content of page-aligned [start, end) without a copy: fn gets each
 * piece, zero (is_data false) or data.  Without decode, every piece comes
 * in address order, data ones whole with data NULL (to size things
 * cheaply: only the index is read).  With decode, only the data pieces
 * come, a page at a time (len 4096), decoded and their sums checked,
 * valid until fn returns, in the order that decodes each chunk once (not
 * by address).  -ENXIO outside the regions, -EBADMSG on damage; a non-zero
 * return of fn stops the walk.
 */
typedef int (*store_walk_fn)(void *ud, uint64_t addr, uint64_t len, bool is_data,
			     const uint8_t *data);
int store_image_walk(struct store_image *img, uint64_t start, uint64_t end, bool decode,
		     store_walk_fn fn, void *ud);

struct store_bad {
	uint64_t generation;   /* the file holding the damage */
	uint64_t region_start, region_end; /* its region holding addr; 0, 0 if none */
	uint64_t addr;         /* page address; UINT64_MAX when it cannot be placed */
	uint64_t file_offset;  /* of the chunk or section record */
	const char *what;      /* "page checksum", "chunk header", ... (static) */
	const char *section;   /* a section's problem: its name; else NULL */
};

/*
 * Re-read every chunk and section of every file of the chain and check
 * every checksum;
 * bad() is called for each problem found.  0 when clean, -EBADMSG when
 * anything was reported (*n_bad says how much), other errors for I/O.
 */
int store_image_verify(struct store_image *img,
		       void (*bad)(void *userdata, const struct store_bad *b), void *userdata,
		       const struct store_progress *progress, uint64_t *n_bad);

/*
 * Write one file per region into dir (created if missing): START-END.bin,
 * the addresses exactly as /proc/PID/maps prints them (lowercase hex, no
 * 0x, zero-padded to 8 digits like maps, so no padding from 0x10000000 up),
 * END-START bytes of content; zero ranges are left as holes.  All or
 * nothing: each region goes to a temporary file first, and only when every
 * one is complete are they renamed; on failure none is left behind, and
 * fail (may be NULL) says where: the region, and the page and the
 * generation file for damage (-EBADMSG), or the name in the way (-EEXIST,
 * anything but a regular file).  Each section of the generation goes to
 * NAME.section, its bytes as they were put, all or nothing with the regions.
 */
int store_image_export(struct store_image *img, const char *dir,
		       const struct store_progress *progress, struct store_bad *fail);
/* Data pages this generation holds (its own, after later passes won),
 * for each region of store_image_regions(): data[n]. */
void store_image_region_pages(const struct store_image *img, uint64_t *data, size_t n);
