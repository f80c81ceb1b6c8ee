/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Synthetic page contents for the codec and store tests and the benchmark:
 * zero, text-like (words and punctuation, compresses about 3-4x) and random.
 */
#pragma once

#include <stdint.h>
#include <string.h>

enum { PG_ZERO, PG_TEXT, PG_RANDOM, PG_KINDS };

static inline uint64_t pg_rand(uint64_t *s)
{
	/* xorshift64*: fast, good enough for test data */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

static inline void pg_fill_random(uint8_t *p, uint64_t *s)
{
	for (int i = 0; i < 4096; i += 8) {
		uint64_t v = pg_rand(s);
		memcpy(p + i, &v, 8);
	}
}

static inline void pg_fill_text(uint8_t *p, uint64_t *s)
{
	static const char *const words[] = {
		"the ", "memory ", "page ", "of ", "a ", "process ", "is ", "written ",
		"checkpoint ", "generation ", "zstd ", "frame ", "and ", "to ", "in ",
		"region ", "tracker ", "daemon ", "static ", "int ", "return ", "NULL",
		"{\n", "}\n", "(", ")", ";\n", "0x7f", "error: ", "errno ", "=", ", ",
		"struct ", "uint64_t ", "for ", "if ", "else ", "while ", "size ", "len ",
		"buffer ", "socket ", "/usr/lib/", "libc.so.6 ", "GLIBC_2.34 ", "main ",
		"http://", "example.org ", "JSON ", "\"key\": ", "true", "false", "[", "]",
		"Lorem ", "ipsum ", "dolor ", "sit ", "amet ", "user ", "root ", "home ",
	};
	size_t pos = 0;

	while (pos < 4096) {
		uint64_t r = pg_rand(s);
		const char *w = words[r % (sizeof(words) / sizeof(words[0]))];
		size_t len = strlen(w);

		if (len > 4096 - pos)
			len = 4096 - pos;
		memcpy(p + pos, w, len);
		pos += len;
		if ((r >> 32) % 61 == 0 && pos < 4096) /* sprinkle numbers */
			p[pos++] = (uint8_t)('0' + (r >> 40) % 10);
	}
}

static inline void pg_fill(uint8_t *p, int kind, uint64_t *s)
{
	if (kind == PG_ZERO)
		memset(p, 0, 4096);
	else if (kind == PG_TEXT)
		pg_fill_text(p, s);
	else
		pg_fill_random(p, s);
}
