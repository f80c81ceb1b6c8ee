// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target: the configuration file parser, as wpmigd meets a file
 * at start-up and on SIGHUP.  The input is the file's content; it is
 * loaded with config_load() (through a memfd, by path, as --config FILE
 * is), and a file that loads is then reloaded over the defaults with
 * config_reload_apply() and its control group resolved.  What it logs
 * (every bad line) is formatted as in the daemon; the run script closes
 * stderr (-close_fd_mask=2) to keep the output short.  Seeds:
 * corpus-config/.  Build and run: tests/fuzz/build-and-run.sh.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	struct config_overrides o = { .config_file = path };
	struct config cur, next;
	gid_t gid;
	bool named;

	if (fd < 0) {
		fd = memfd_create("fuzz-config", MFD_CLOEXEC);
		if (fd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	if (config_load(&o, true, &cur) < 0)
		return 0;
	/* SIGHUP with the same file over a running configuration */
	if (config_load(&o, false, &next) == 0) {
		config_reload_apply(&cur, &next);
		config_free(&next);
	}
	config_group_gid(&cur, &gid, &named);
	config_free(&cur);
	return 0;
}
