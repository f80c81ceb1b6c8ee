#!/bin/sh
# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   sanitize.sh SOURCE_DIR BUILD_DIR [TEST...]
#
# Configures BUILD_DIR/ci-asan (b_sanitize=address,undefined; kept between
# runs, so a second run only rebuilds what changed), builds it and runs
# the TESTs there (tests/ci/meson.build names them: a selection that fits
# the CI's time; every test but suites 'ci', 'fuzz', 'bench-smoke' and
# 'kernel' when none is named).  Left out always: 'fuzz' (the fuzz targets
# carry their own sanitizers), 'bench-smoke' (figures, which mean nothing
# under ASan) and 'kernel' (the kernel's selftest: no code of ours).  Tests
# that judge the daemon's memory figures skip that one check under ASan
# (daemon_memory_judged()).  The workload the tests track is built without
# sanitizers (tests/meson.build): an ASan process maps terabytes of shadow,
# which a checkpoint would capture and an export write out.  Passes when
# every test passes (a test that fails is run once more: run-twice.sh) and
# no sanitizer reported anything: reports go to files (log_path), counted
# at the end, so a report from a process whose exit status nobody checks
# (a daemon the test SIGKILLs, a forked child) still fails the run.
set -eu
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
shift 2
dir=$build/ci-asan
logs=$dir/sanitizer-logs

if [ ! -f "$dir/build.ninja" ]; then
	rm -rf "$dir"
	# Warnings are the normal build's business (-Werror there); with the
	# sanitizers on, gcc's flow warnings misfire (a null %s argument
	# "possible" on a path that returned before), so none stops this one.
	meson setup "$dir" "$src" -Db_sanitize=address,undefined -Dwerror=false \
		>"$build/ci-asan-setup.log" 2>&1 ||
		{ cat "$build/ci-asan-setup.log"; exit 1; }
fi
ninja -C "$dir" >"$build/ci-asan-build.log" 2>&1 || { tail -50 "$build/ci-asan-build.log"; exit 1; }

rm -rf "$logs"
mkdir -p "$logs"
# detect_leaks: LeakSanitizer at every exit of a process (the daemon's at
# SIGTERM included).  No suppressions.  Not strict_string_checks: it wants
# a NUL after the n bytes strndup() copies, which C does not (the store's
# string pool has none), and reports every region path read.
export ASAN_OPTIONS="log_path=$logs/asan:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="log_path=$logs/ubsan:print_stacktrace=1:halt_on_error=0"
. "$src/tests/ci/run-twice.sh"
rc=0
run_twice "$dir" testlog "--no-suite ci --no-suite fuzz --no-suite bench-smoke --no-suite kernel
	--timeout-multiplier 3 --print-errorlogs" "$@" || rc=$?

n=0
for f in "$logs"/*; do
	[ -e "$f" ] || continue
	n=$((n + 1))
	echo "=== sanitizer report $f"
	head -60 "$f"
done
echo "sanitizer reports: $n; meson test exit: $rc"
[ "$n" -eq 0 ] && [ "$rc" -eq 0 ]
