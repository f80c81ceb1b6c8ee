#!/bin/sh
# Build the peer decoder's libFuzzer target with clang and run it.
#
#   build-and-run.sh SOURCE_DIR BUILD_DIR [SECONDS] [-- libFuzzer options...]
#
# meson runs it for 60 s (suite 'fuzz').  Longer runs (docs/protocol.md):
#   tests/fuzz/build-and-run.sh . build 3600 -- -jobs=2 -workers=2
# New inputs go to a temporary corpus; to keep the interesting ones, merge
# them into tests/fuzz/corpus-peer/ with -merge=1.  Exit 77 (skipped) when
# clang or libFuzzer is missing.
set -eu
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
secs=${3:-60}
shift $(($# < 3 ? $# : 3))
[ "${1:-}" = "--" ] && shift
cc=${CLANG:-clang}
if ! command -v "$cc" >/dev/null 2>&1; then
	echo "clang not found: skipping"
	exit 77
fi
out=$build/fuzz
mkdir -p "$out"
gen=$build/proto/peer.pb-c.c
if [ ! -f "$gen" ]; then
	echo "$gen missing: build the project first"
	exit 1
fi
flags="-g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=all -I$src/daemon -I$src/proto -I$build/proto -I$build"
# shellcheck disable=SC2086
if ! "$cc" $flags -o "$out/fuzz-peer" "$src/tests/fuzz/fuzz-peer.c" "$gen" \
	"$src/proto/frame.c" "$src/daemon/peer/wire.c" "$src/daemon/pipeline/codec.c" \
	"$src/daemon/peer/cache.c" "$src/daemon/peer/delta.c" "$src/daemon/peer/regions.c" "$src/daemon/track/regions.c" \
	-lprotobuf-c -lzstd -lxxhash 2>"$out/build.log"; then
	if grep -q "libclang_rt.fuzzer\|fsanitize=fuzzer" "$out/build.log"; then
		echo "libFuzzer is not available: skipping"
		cat "$out/build.log"
		exit 77
	fi
	cat "$out/build.log"
	exit 1
fi
corpus=$(mktemp -d /tmp/wpmig-fuzz.XXXXXX)
trap 'rm -rf "$corpus"' EXIT
cd "$out"
"$out/fuzz-peer" -max_total_time="$secs" -rss_limit_mb=2048 -max_len=1048576 \
	-timeout=10 -print_final_stats=1 "$@" "$corpus" "$src/tests/fuzz/corpus-peer"
