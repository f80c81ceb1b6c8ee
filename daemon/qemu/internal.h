/* SPDX-License-Identifier: GPL-2.0-only */
/* A migration's destination, shared by target.c and pages.c only. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "pipeline/sink.h"
#include "qemu/backend.h"
#include "qemu/qmp.h"

enum tstate { T_RECEIVING, T_FINISHING, T_RUNNING, T_FAILED };

struct tbackend {
	char id[QEMU_BACKEND_ID_MAX];
	uint64_t src_start, size;
	int fd;
};

struct target {
	uint64_t session;
	char qmp_path[256];
	struct qmp *qmp;
	struct tbackend b[QEMU_MAX_BACKENDS];
	size_t n;
	enum tstate state;
	uint64_t generation; /* committed */
	struct pass_region *regions;
	size_t n_regions;
	uint64_t t0_ns;
	atomic_uint_least64_t pages_written, pages_zeroed;
	struct target *next;
};

struct qemu_targets {
	pthread_mutex_t lock;
	char *dir;
	struct target *list;
};


/* pages.c: a generation's sink writing into t's backends. */
struct sink *target_sink_new(struct target *t, uint64_t generation, uint64_t parent);
