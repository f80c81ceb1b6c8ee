// SPDX-License-Identifier: GPL-2.0-only
/*
 * The store's directory tree: STATE_DIR/images/SET/gen-NNNNNNNN.img, a
 * .lock file per set held by its writer (and by rm), and .tmp-* files of
 * generations being written.  Listing and removal live here.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "basic/util.h"

void gen_file_name(char name[static GEN_NAME_LEN], uint64_t generation, bool tmp)
{
	snprintf(name, GEN_NAME_LEN, "%s" GEN_PREFIX "%08" PRIu64 GEN_SUFFIX,
		 tmp ? TMP_PREFIX : "", generation);
}

uint64_t gen_name_parse(const char *name)
{
	size_t len = strlen(name), plen = strlen(GEN_PREFIX), slen = strlen(GEN_SUFFIX);
	uint64_t v = 0;

	if (len <= plen + slen || len > plen + slen + 19 || strncmp(name, GEN_PREFIX, plen) ||
	    strcmp(name + len - slen, GEN_SUFFIX))
		return 0;
	for (const char *p = name + plen; p < name + len - slen; p++) {
		if (*p < '0' || *p > '9')
			return 0;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	return v;
}

bool store_set_name_valid(const char *set)
{
	return set_name_valid(set);
}

int fsync_dir(int dir_fd)
{
	return fsync(dir_fd) < 0 ? -errno : 0;
}

int set_dir_open(struct store *st, const char *set, bool create, int *ret_fd)
{
	int fd;

	if (!store_set_name_valid(set))
		return -EINVAL;
	if (create) {
		if (mkdirat(st->images_fd, set, 0700) == 0) {
			int r = fsync_dir(st->images_fd); /* the set must survive a crash */
			if (r < 0)
				return r;
		} else if (errno != EEXIST) {
			return -errno;
		}
	}
	fd = openat(st->images_fd, set, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	*ret_fd = fd;
	return 0;
}

/* The lock file is ours: something else in its place (a FIFO, a link) is
 * replaced by a new one. */
int set_lock(int set_fd, int *ret_lock_fd)
{
	_cleanup_close_ int fd = -1;
	struct stat sb;

	for (int i = 0; i < 2; i++) {
		closep(&fd);
		fd = openat(set_fd, LOCK_NAME, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
			    0600);
		if (fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode))
			break;
		if (fd >= 0 || errno == ELOOP)
			unlinkat(set_fd, LOCK_NAME, 0);
		else if (errno == EISDIR)
			unlinkat(set_fd, LOCK_NAME, AT_REMOVEDIR);
		else
			break;
	}
	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb) < 0)
		return -errno;
	if (!S_ISREG(sb.st_mode))
		return -EBADMSG;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? -EBUSY : -errno;
	*ret_lock_fd = TAKE_FD(fd);
	return 0;
}

/* A walk of the directory dir_fd from its start, on a file description of
 * its own: a dup() would share the offset with every other thread walking
 * the same directory (rewinddir() in one moves the others).  NULL: errno. */
static DIR *dir_walk(int dir_fd)
{
	int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (!d && fd >= 0) {
		int e = errno;

		close(fd);
		errno = e;
	}
	return d;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int set_generations(int set_fd, uint64_t **ret, size_t *ret_n)
{
	DIR *d = dir_walk(set_fd);
	_cleanup_free_ uint64_t *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		uint64_t g = gen_name_parse(de->d_name);

		if (!g)
			continue;
		if (n == cap) {
			uint64_t *nv = reallocarray(v, cap = cap ? cap * 2 : 16, sizeof(*v));
			if (!nv) {
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = g;
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), cmp_u64);
	*ret = TAKE_PTR(v);
	*ret_n = n;
	return 0;
}

void set_clean_temp(int set_fd)
{
	DIR *d = dir_walk(set_fd);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)))
			unlinkat(set_fd, de->d_name, 0);
	closedir(d);
}

/* Each set whose lock is free has no writer: its temp files are debris. */
static void clean_all_sets(struct store *st)
{
	char **names = NULL;
	size_t n = 0;

	if (store_list_sets(st, &names, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		_cleanup_close_ int set_fd = -1, lock_fd = -1;

		if (set_dir_open(st, names[i], false, &set_fd) == 0 && set_lock(set_fd, &lock_fd) == 0)
			set_clean_temp(set_fd);
	}
	store_names_free(names, n);
}

static int mkdir_open(int at, const char *path, mode_t mode, int *ret_fd)
{
	if (mkdirat(at, path, mode) < 0 && errno != EEXIST)
		return -errno;
	*ret_fd = openat(at, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return *ret_fd < 0 ? -errno : 0;
}

int store_open(const char *state_dir, struct store **ret)
{
	_cleanup_close_ int state_fd = -1, images_fd = -1;
	struct store *st;
	int r;

	r = mkdir_open(AT_FDCWD, state_dir ? state_dir : STORE_DEFAULT_DIR, 0755, &state_fd);
	if (r == 0)
		r = mkdir_open(state_fd, "images", 0700, &images_fd);
	if (r < 0)
		return r;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->images_fd = TAKE_FD(images_fd);
	clean_all_sets(st);
	*ret = st;
	return 0;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	close(st->images_fd);
	free(st);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int store_list_sets(struct store *st, char ***ret, size_t *ret_n)
{
	DIR *d = dir_walk(st->images_fd);
	char **v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int r = 0;

	if (!d)
		return -errno;
	while (r == 0 && (de = readdir(d))) {
		if (!store_set_name_valid(de->d_name))
			continue;
		if (n == cap) {
			char **nv = reallocarray(v, cap = cap ? cap * 2 : 16, sizeof(*v));
			if (!nv) {
				r = -ENOMEM;
				break;
			}
			v = nv;
		}
		v[n] = strdup(de->d_name);
		r = v[n] ? 0 : -ENOMEM;
		n += v[n] != NULL;
	}
	closedir(d);
	if (r < 0) {
		store_names_free(v, n);
		return r;
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_str);
	*ret = v;
	*ret_n = n;
	return 0;
}

void store_names_free(char **names, size_t n)
{
	for (size_t i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
}

/* The set's directory, its writer lock held, and its generations. */
static int set_open_locked(struct store *st, const char *set, int *set_fd, int *lock_fd,
			   uint64_t **gens, size_t *n)
{
	int r = set_dir_open(st, set, false, set_fd);

	if (r == 0)
		r = set_lock(*set_fd, lock_fd);
	if (r == 0)
		r = set_generations(*set_fd, gens, n);
	return r;
}

/* Is the directory name (in set_fd) empty? */
static bool dir_empty(int set_fd, const char *name)
{
	int fd = openat(set_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	bool empty = true;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	while (empty && (de = readdir(d)))
		empty = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
	closedir(d);
	return empty;
}

/*
 * Before rm of a set removes anything: every entry must be one the store
 * puts there (named like a generation, a temp file or the lock), and no
 * such name may be a directory with something in it.  Counts the bytes.
 */
static int scan_set(int set_fd, struct store_rm_info *info)
{
	DIR *d = dir_walk(set_fd);
	struct dirent *de;
	struct stat sb;
	int r = 0;

	if (!d)
		return -errno;
	while (r == 0 && (de = readdir(d))) {
		const char *n = de->d_name;
		bool ours = gen_name_parse(n) || !strcmp(n, LOCK_NAME) ||
			    !strncmp(n, TMP_PREFIX, strlen(TMP_PREFIX));

		if (!strcmp(n, ".") || !strcmp(n, ".."))
			continue;
		if (!ours) {
			snprintf(info->blocker, sizeof(info->blocker), "%.48s (not a file of the store)",
				 n);
			r = -ENOTEMPTY;
		} else if (fstatat(set_fd, n, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
			if (S_ISDIR(sb.st_mode) && !dir_empty(set_fd, n)) {
				snprintf(info->blocker, sizeof(info->blocker),
					 "%.48s (a directory that is not empty)", n);
				r = -ENOTEMPTY;
			} else if (S_ISREG(sb.st_mode)) {
				info->bytes_freed += (uint64_t)sb.st_size;
			}
		}
	}
	closedir(d);
	return r;
}

/* An entry of the set, whatever it is (an empty directory too). */
static int remove_entry(int set_fd, const char *name)
{
	if (unlinkat(set_fd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno == EISDIR && (unlinkat(set_fd, name, AT_REMOVEDIR) == 0 || errno == ENOENT))
		return 0;
	return -errno;
}

/* Newest first, so a crash midway leaves a chain that still resolves. */
int store_rm_set(struct store *st, const char *set, struct store_rm_info *info)
{
	_cleanup_close_ int set_fd = -1, lock_fd = -1;
	_cleanup_free_ uint64_t *gens = NULL;
	struct store_rm_info local;
	char name[GEN_NAME_LEN];
	size_t n;
	int r;

	if (!info)
		info = &local;
	*info = (struct store_rm_info){ 0 };
	r = set_open_locked(st, set, &set_fd, &lock_fd, &gens, &n);
	if (r == 0)
		r = scan_set(set_fd, info);
	if (r < 0) {
		info->bytes_freed = 0;
		return r;
	}
	for (size_t i = n; i-- > 0;) {
		gen_file_name(name, gens[i], false);
		r = remove_entry(set_fd, name);
		if (r < 0)
			return r;
	}
	set_clean_temp(set_fd);
	if (unlinkat(set_fd, LOCK_NAME, 0) < 0 && errno != ENOENT)
		return -errno;
	if (unlinkat(st->images_fd, set, AT_REMOVEDIR) < 0)
		return errno == ENOTEMPTY || errno == EEXIST ? -EBUSY : -errno;
	return fsync_dir(st->images_fd);
}

int store_rm_generation(struct store *st, const char *set, uint64_t generation,
			struct store_rm_info *info)
{
	_cleanup_close_ int set_fd = -1, lock_fd = -1;
	_cleanup_free_ uint64_t *gens = NULL;
	struct store_rm_info local;
	char name[GEN_NAME_LEN];
	struct stat sb = { 0 };
	size_t n;
	int r;

	if (!info)
		info = &local;
	*info = (struct store_rm_info){ 0 };
	r = set_open_locked(st, set, &set_fd, &lock_fd, &gens, &n);
	if (r < 0)
		return r;
	if (!n || !bsearch(&generation, gens, n, sizeof(*gens), cmp_u64))
		return -ENOENT;
	if (gens[n - 1] != generation) {
		snprintf(info->blocker, sizeof(info->blocker), "generation %" PRIu64 " is an "
			 "increment over it", gens[n - 1]);
		return -ENOTEMPTY; /* a later generation may resolve through it */
	}
	gen_file_name(name, generation, false);
	if (fstatat(set_fd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode))
		info->bytes_freed = (uint64_t)sb.st_size;
	if (S_ISDIR(sb.st_mode) && !dir_empty(set_fd, name)) {
		snprintf(info->blocker, sizeof(info->blocker), "%s (a directory that is not empty)",
			 name);
		return -ENOTEMPTY;
	}
	r = remove_entry(set_fd, name);
	if (r < 0)
		return r;
	return fsync_dir(set_fd);
}
