/* SPDX-License-Identifier: GPL-2.0-only */
/* A set of address ranges [start, end), kept sorted and merged. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct range {
	uint64_t start, end;
};

struct range_set {
	struct range *r;
	size_t n, cap;
};

int range_set_add(struct range_set *s, uint64_t start, uint64_t end);
int range_set_remove(struct range_set *s, uint64_t start, uint64_t end);
/* Append the parts of s inside [start, end) to out (out stays merged). */
int range_set_clip(const struct range_set *s, uint64_t start, uint64_t end,
		   struct range_set *out);
bool range_set_contains(const struct range_set *s, uint64_t start, uint64_t end);
bool range_set_overlaps(const struct range_set *s, uint64_t start, uint64_t end);
uint64_t range_set_bytes(const struct range_set *s);
void range_set_clear(struct range_set *s);
void range_set_free(struct range_set *s);
/* Swap contents (used to take a pending set out from under a lock). */
void range_set_swap(struct range_set *a, struct range_set *b);
