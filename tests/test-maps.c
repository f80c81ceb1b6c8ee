// SPDX-License-Identifier: GPL-2.0-only
/*
 * maps_read() of a process whose mappings change all the time.
 *
 * /proc/PID/maps is read in several read() calls, and the kernel lets the
 * mappings change between them: a mapping printed whole by one call may
 * have grown by a merge when the next call resumes inside it, which then
 * prints it again, overlapping the line before.  Such a text is no one
 * moment's layout; maps_read() must read again, not fail (it failed with
 * EINVAL, and the attach with "cannot register the mappings": seen first
 * with a target built with AddressSanitizer, whose threads map and unmap
 * their stacks as they come and go).
 *
 * A child keeps about 1200 mappings (a read needs several calls) and
 * splits and merges them without pause with mprotect(); the test reads its
 * maps for a few seconds: every read must succeed, ordered, each list
 * between 600 and 1300 of the child's mappings.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "basic/util.h"
#include "track/maps.h"

#define PAIRS 600
#define PG 4096UL
#define SECONDS 5

static void churn(int ready_fd)
{
	uint8_t *m = mmap(NULL, 2 * PAIRS * PG, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t x = 0x9e3779b97f4a7c15ULL;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (m == MAP_FAILED)
		_exit(1);
	/* every other page read-only: 1200 mappings that cannot merge */
	for (unsigned i = 0; i < PAIRS; i++)
		mprotect(m + (2 * i + 1) * PG, PG, PROT_READ);
	if (write(ready_fd, "r", 1) != 1)
		_exit(1);
	for (;;) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		uint8_t *p = m + (2 * (x % (PAIRS - 1)) + 1) * PG;
		mprotect(p, PG, PROT_READ | PROT_WRITE); /* three mappings merge */
		mprotect(p, PG, PROT_READ);              /* and split again */
	}
}

int main(void)
{
	unsigned reads = 0, failed = 0, odd = 0;
	int p[2], first_error = 0;
	char c;

	if (pipe(p) < 0)
		return 1;
	pid_t child = fork();
	if (child == 0) {
		close(p[0]);
		churn(p[1]);
	}
	close(p[1]);
	CHECK(read(p[0], &c, 1) == 1, "child did not start");
	for (uint64_t t0 = now_ns(); now_ns() - t0 < SECONDS * 1000000000ULL; reads++) {
		struct vma_list l;
		int r = maps_read(child, &l);

		if (r < 0) {
			failed++;
			first_error = first_error ? first_error : r;
			continue;
		}
		if (l.n < PAIRS || l.n > 2 * PAIRS + 100)
			odd++;
		vma_list_free(&l);
	}
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	printf("%u reads of a churning process's maps: %u failed, %u of a wrong size\n", reads,
	       failed, odd);
	CHECK(failed == 0, "%u of %u reads failed, first with %s", failed, reads,
	      strerror(-first_error));
	CHECK(odd == 0, "%u reads of a wrong size", odd);
	CHECK(reads >= 100, "only %u reads in %d s", reads, SECONDS);
	return test_failures ? 1 : 0;
}
