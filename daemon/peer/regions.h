/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Region tables on the wire: a generation's table travels as changes to
 * its parent's (removed, moved, added), with the size and checksum of the
 * result so the receiver knows it rebuilt exactly the source's table.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "peer.pb-c.h"
#include "track/regions.h"

/* old -> new as a RegionChanges message; free with regions_changes_free(). */
int regions_diff(const struct pass_region *old, size_t n_old, const struct pass_region *new_r,
		 size_t n_new, Wpmig__Peer__RegionChanges *out);
void regions_changes_free(Wpmig__Peer__RegionChanges *m);

/*
 * Apply m to old (sorted by start): the new table, sorted, its paths
 * allocated; -EBADMSG with why when m does not fit old or the result is
 * not the table m describes.
 */
int regions_apply(const struct pass_region *old, size_t n_old,
		  const Wpmig__Peer__RegionChanges *m, struct pass_region **ret, size_t *ret_n,
		  const char **why);

