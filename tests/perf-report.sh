#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
# The performance report in one command, as root on a quiet machine:
# install what is missing (gnuplot, gdb), build with optimisation in a build
# directory of its own, run every benchmark, and write OUT/bench-report.md
# with its SVG plots (docs/performance.md).
#
#   tests/perf-report.sh [OUT] [perf-report.py options: --quick --only NAME,...
#                        --skip NAME,... --lock FILE --big yes|no|auto]
#
# OUT defaults to perf-report/ in the source tree; the build directory to
# build-perf/ (WPMIG_PERF_BUILD to change it).
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${WPMIG_PERF_BUILD:-$src/build-perf}
out=$src/perf-report
case ${1:-} in
-*|"") ;;
*) out=$1; shift ;;
esac

# With --lock FILE (a machine shared with others) the build shares FILE
# (flock -s) and each benchmark holds it alone (perf-report.py).
shared=""
prev=""
for a in "$@"; do
	[ "$prev" = --lock ] && shared="flock -s $a"
	prev=$a
done

"$src/tests/install-deps.sh"
opts="-Doptimization=2 -Db_ndebug=if-release -Ddebug=false"
if [ -f "$build/build.ninja" ]; then
	# shellcheck disable=SC2086
	$shared meson configure "$build" --buildtype=release $opts >/dev/null
else
	# shellcheck disable=SC2086
	$shared meson setup "$build" "$src" --buildtype=release $opts >/dev/null
fi
# Only what the benchmarks run: not the tests and fuzz targets (half the build).
# shellcheck disable=SC2046
$shared ninja -C "$build" $(python3 "$src/tests/perf-report.py" --ninja-targets "$build") >/dev/null
exec python3 "$src/tests/perf-report.py" "$build" "$out" "$@"
