#!/bin/bash
# Check the kernel patch series of this directory against Debian's
# linux-source-6.12: it must apply cleanly, the selftest it adds must build
# against that tree's exported uapi headers, and it must pass on the running
# kernel.
#
# Usage: check.sh [WORKDIR]
#   WORKDIR caches the partly unpacked source tree between runs
#   (default: ${TMPDIR:-/tmp}/wpmig-kernel-selftest).
#
# Exit status: 0 pass, 1 failure, 77 skipped (the source package cannot be
# installed or unpacked, or the test skipped itself: the running kernel lacks
# a feature, or we are not root).
# Needs root: it installs packages with apt-get, and the test itself needs
# userfaultfd without UFFD_USER_MODE_ONLY and may raise nr_hugepages.
set -euo pipefail

readonly PKG=linux-source-6.12
readonly TARBALL=/usr/src/$PKG.tar.xz
readonly TOP=$PKG			# top directory inside the tarball
readonly TEST=uffd-wp-async-remote
readonly MM=tools/testing/selftests/mm
# What `make headers` and the build use, measured with strace: a C
# toolchain, make, sed and coreutils; xz to unpack, patch to apply.
readonly BUILD_DEPS=(build-essential xz-utils patch)

SERIES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=${1:-${TMPDIR:-/tmp}/wpmig-kernel-selftest}
TREE=$WORK/$TOP
APPLIED=$WORK/applied			# copies of the patches now in TREE
STAMP=$WORK/unpacked.stamp

log()  { printf 'check.sh: [%4ss] %s\n' "$SECONDS" "$*"; }
skip() { log "SKIP: $*" >&2; exit 77; }
fail() { log "FAIL: $*" >&2; exit 1; }

series() {
	local p
	for p in "$SERIES_DIR"/[0-9][0-9][0-9][0-9]-*.patch; do
		[[ -e $p && ${p##*/} != 0000-cover-letter.patch ]] && echo "$p"
	done
	return 0
}

missing_packages() {
	local p status
	for p in "$@"; do
		status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
		[[ $status == "install ok installed" ]] || echo "$p"
	done
	return 0
}

install_packages() {
	local missing=()
	mapfile -t missing < <(missing_packages "$PKG" "${BUILD_DEPS[@]}")
	[[ ${#missing[@]} -eq 0 ]] && return 0
	[[ $(id -u) == 0 ]] || skip "not root, cannot install ${missing[*]}"
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -q --no-install-recommends "${missing[@]}" \
		>"$WORK/apt.log" 2>&1; then
		apt-get update -q >>"$WORK/apt.log" 2>&1 || true
		apt-get install -y -q --no-install-recommends "${missing[@]}" \
			>>"$WORK/apt.log" 2>&1 ||
			skip "cannot install ${missing[*]} (see $WORK/apt.log)"
	fi
}

# The directory of the host architecture under arch/.
src_arch() {
	case $(uname -m) in
	x86_64|i?86)	echo x86 ;;
	aarch64*)	echo arm64 ;;
	arm*)		echo arm ;;
	ppc*)		echo powerpc ;;
	s390*)		echo s390 ;;
	riscv*)		echo riscv ;;
	loongarch*)	echo loongarch ;;
	*)		uname -m ;;
	esac
}

# Files of the tree that the series changes (not those it creates).
touched_files() {
	local p
	series | while read -r p; do
		awk '/^--- a\// { print substr($2, 3) }
		     /^--- \/dev\/null/ { getline; created[substr($2, 3)] = 1 }
		     END { for (f in created) print "created", f }' "$p"
	done | awk '$1 == "created" { created[$2] = 1; next }
		    { touched[$1] = 1 }
		    END { for (f in touched) if (!(f in created)) print f }' |
		sort
}

# Only what `make headers` and the selftest build need is unpacked: the
# top-level build files, scripts/, include/, the host arch/, tools/, usr/,
# one header of mm/, and the files the series changes elsewhere.  About
# 240 MB instead of 1.7 GB.
tree_members() {
	local f d dirs
	dirs=(Makefile Kbuild Kconfig scripts include "arch/$(src_arch)" tools
	      usr mm/gup_test.h)
	for d in "${dirs[@]}"; do
		echo "$TOP/$d"
	done
	touched_files | while read -r f; do
		for d in "${dirs[@]}"; do
			[[ $f == "$d" || $f == "$d"/* ]] && continue 2
		done
		echo "$TOP/$f"
	done
}

tree_key() {
	{ dpkg-query -W -f='${Version}\n' "$PKG"; tree_members; } | md5sum
}

unpack() {
	local key tmp members=()
	key=$(tree_key)
	if [[ -d $TREE && -f $STAMP && $(cat "$STAMP") == "$key" ]]; then
		log "using the unpacked tree in $TREE"
		return 0
	fi
	[[ -r $TARBALL ]] || skip "$TARBALL is missing"
	log "unpacking $TARBALL"
	rm -rf "$TREE" "$APPLIED" "$STAMP"
	tmp=$(mktemp -d "$WORK/unpack.XXXXXX")
	# The tarball is multi-block: xz decompresses it on every core.
	mapfile -t members < <(tree_members)
	xz -T0 -dc "$TARBALL" | tar -x -C "$tmp" "${members[@]}" ||
		{ rm -rf "$tmp"; skip "cannot unpack $TARBALL"; }
	mv "$tmp/$TOP" "$TREE"
	rmdir "$tmp"
	echo "$key" >"$STAMP"
}

# Take out the series a previous run applied, newest patch first.
unapply_previous() {
	local p i applied=()
	[[ -d $APPLIED ]] || return 0
	shopt -s nullglob
	applied=("$APPLIED"/*.patch)
	shopt -u nullglob
	for ((i = ${#applied[@]} - 1; i >= 0; i--)); do
		p=${applied[i]}
		if ! patch -d "$TREE" -p1 -R -s --fuzz=0 --dry-run -i "$p" \
			>/dev/null; then
			log "the tree was changed: unpacking it again"
			rm -f "$STAMP"
			unpack
			return 0
		fi
		patch -d "$TREE" -p1 -R -s --fuzz=0 -i "$p" >/dev/null
		rm "$p"
	done
}

apply_series() {
	local p out patches=()
	mapfile -t patches < <(series)
	[[ ${#patches[@]} -gt 0 ]] || fail "no patches in $SERIES_DIR"
	mkdir -p "$APPLIED"
	for p in "${patches[@]}"; do
		if ! out=$(patch -d "$TREE" -p1 -N --fuzz=0 --dry-run -i "$p"); then
			printf '%s\n' "$out" >&2
			fail "${p##*/} does not apply to $PKG"
		fi
		# recorded first: a half-done run is undone by the next one
		cp "$p" "$APPLIED/"
		patch -d "$TREE" -p1 -N -s --fuzz=0 -i "$p" >/dev/null
		log "applied ${p##*/}"
	done
}

build() {
	local jobs bin=$TREE/$MM/$TEST
	jobs=$(nproc)
	log "make headers"
	make -C "$TREE" -s -j"$jobs" headers >"$WORK/headers.log" 2>&1 ||
		{ cat "$WORK/headers.log" >&2; fail "make headers"; }
	log "building $MM/$TEST"
	rm -f "$bin"
	make -C "$TREE/$MM" -s "$bin" ||
		fail "building $TEST"
	# A missing prerequisite makes this Makefile do nothing, quietly.
	[[ -x $bin ]] || fail "$TEST was not built"
}

run_test() {
	local rc=0
	log "running $TEST on $(uname -r)"
	(cd "$TREE/$MM" && "./$TEST") || rc=$?
	case $rc in
	0)	log "PASS" ;;
	4)	skip "$TEST skipped itself: the kernel lacks a feature" \
		     "or we lack a privilege (reason above)" ;;
	*)	fail "$TEST exited with $rc" ;;
	esac
}

main() {
	mkdir -p "$WORK"
	WORK=$(cd "$WORK" && pwd)
	TREE=$WORK/$TOP
	APPLIED=$WORK/applied
	STAMP=$WORK/unpacked.stamp
	install_packages
	unpack
	unapply_previous
	apply_series
	build
	run_test
}

main "$@"
