/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A generation's per-pass table (struct pass_row, the checkpoint result's
 * rows) as its "passes" section, so that `images show --passes` shows what
 * the checkpoint did after the fact (docs/image-format.md).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "pipeline/checkpoint.h"

#define PASSES_SECTION_NAME "passes"

/* The section's bytes for rows[0..n) (n <= PASSES_MAX), malloc'ed. */
int passes_encode(const struct pass_row *rows, uint32_t n, uint8_t **ret, size_t *ret_len);
/* Back into rows (room for PASSES_MAX); -EBADMSG for anything but what
 * passes_encode writes. */
int passes_decode(const void *buf, size_t len, struct pass_row *rows, uint32_t *n);
