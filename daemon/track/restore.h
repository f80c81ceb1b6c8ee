/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Roll the memory of a running process back to an image: freeze it, check
 * its layout still matches the image's regions, write back the pages that
 * differ, thaw.  When the layout does not match nothing is written.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "track/tracker.h"

/* Content of the image at [addr, addr + len) into buf; 0 or -errno. */
typedef int (*image_read_fn)(void *ud, uint64_t addr, uint64_t len, uint8_t *buf);

struct restore_stats {
	uint64_t pages_checked, pages_written;
	uint64_t pause_ns, ns;
};

int restore_process(pid_t pid, const struct pass_region *regions, size_t n,
		    image_read_fn read, void *ud, struct restore_stats *st,
		    char *why, size_t why_len);
