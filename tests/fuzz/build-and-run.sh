#!/bin/sh
# Build one libFuzzer target with clang and run it.
#
#   build-and-run.sh SOURCE_DIR BUILD_DIR TARGET [SECONDS] [-- libFuzzer options...]
#
# TARGET: peer, control, store, config or qmp (tests/fuzz/meson.build).  The
# targets are built in BUILD_DIR/ci-fuzz, a clang build of the project with
# -Dfuzzing=true, AddressSanitizer and UndefinedBehaviorSanitizer (every
# report fatal) and libFuzzer's coverage in every library; it is set up on
# the first run and kept.  The seeds are the committed ones in
# tests/fuzz/corpus-TARGET plus fresh ones from the generators of
# BUILD_DIR (so they follow format changes).  New inputs go to a temporary
# corpus; to keep the interesting ones, merge them into
# tests/fuzz/corpus-TARGET with -merge=1.  meson runs each target for a
# short while (suite 'fuzz'); longer runs, two at once:
#   tests/fuzz/build-and-run.sh . build store 3600 -- -jobs=2 -workers=2
# Exit 77 (skipped) when clang or libFuzzer is missing.
set -eu
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
target=$3
secs=${4:-60}
shift $(($# < 4 ? $# : 4))
[ "${1:-}" = "--" ] && shift
case $target in
peer | control | store | config | qmp) ;;
*) echo "unknown fuzz target '$target'"; exit 2 ;;
esac
cc=${CLANG:-clang}
if ! command -v "$cc" >/dev/null 2>&1; then
	echo "clang not found: skipping"
	exit 77
fi
dir=$build/ci-fuzz
exe=$dir/tests/fuzz/fuzz-$target

# One set-up and build at a time (the fuzz tests may run in parallel).
exec 8>"$build/ci-fuzz.lock"
flock 8
if [ ! -f "$dir/build.ninja" ]; then
	rm -rf "$dir"
	# -Werror is the gcc build's business: clang's other warnings do not stop this one
	if ! CC=$cc meson setup "$dir" "$src" -Dfuzzing=true -Db_sanitize=address,undefined \
		-Db_lundef=false -Dwerror=false \
		-Dc_args="-fsanitize=fuzzer-no-link -fno-sanitize-recover=all" \
		>"$build/ci-fuzz-setup.log" 2>&1; then
		cat "$build/ci-fuzz-setup.log"
		if grep -q "fsanitize=fuzzer\|libclang_rt" "$build/ci-fuzz-setup.log"; then
			echo "libFuzzer is not available: skipping"
			exit 77
		fi
		exit 1
	fi
fi
if ! ninja -C "$dir" "tests/fuzz/fuzz-$target" >"$build/ci-fuzz-build.log" 2>&1; then
	tail -40 "$build/ci-fuzz-build.log"
	exit 1
fi
flock -u 8

work=$(mktemp -d /tmp/wpmig-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/new" "$work/seeds"
case $target in
peer) "$build/tests/fuzz/fuzz-gen-corpus" "$work/seeds" ;;
control | store) "$build/tests/fuzz/fuzz-gen-seeds" "$target" "$work/seeds" ;;
config | qmp) ;;
esac
opts="-rss_limit_mb=2048 -timeout=10 -print_final_stats=1"
case $target in
peer) opts="$opts -max_len=1048576" ;;
control | config) opts="$opts -close_fd_mask=2" ;; # what the daemon logs
store) opts="$opts -max_len=262144" ;;
qmp) opts="$opts -max_len=65536" ;;
esac
# Crashes (crash-*, timeout-*, oom-*) and the logs of -jobs runs stay in
# BUILD_DIR/ci-fuzz/run-TARGET.
run=$dir/run-$target
rm -rf "$run"
mkdir -p "$run"
cd "$run"
# shellcheck disable=SC2086
"$exe" -max_total_time="$secs" $opts "$@" "$work/new" "$work/seeds" \
	"$src/tests/fuzz/corpus-$target"
