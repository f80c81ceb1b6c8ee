#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
# The performance report's pipeline end to end, quickly: perf-report.py
# --quick over three fast benchmarks of this build, then check what it
# wrote: the machine line, rows beside their references with ratios and
# judged targets, a plot (SVG when gnuplot is there, else its script).
#
#   tests/test-perf-report.sh BUILD
set -eu
build=$1
src=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d /tmp/wpmig-perf-report.XXXXXX)
trap 'rm -rf "$out"' EXIT
r=$out/bench-report.md

fail() {
	echo "FAIL: $*"
	[ -f "$r" ] && cat "$r"
	exit 1
}

python3 "$src/tests/perf-report.py" "$build" "$out" --quick --only machine,tracker,codec \
	>"$out/run.log" 2>&1 || { cat "$out/run.log"; fail "perf-report.py exited $?"; }
[ -s "$r" ] || fail "no bench-report.md"
if grep -q '^| tracker | .* | skipped (exit 77) |' "$r"; then
	echo "bench-tracker skipped: no userfaultfd write-protect tracking here"
	exit 77
fi
for b in machine tracker codec; do
	grep -q "^| $b | .* | ok | [0-9]* |\$" "$r" || fail "benchmark $b did not run ok"
done
grep -q '^- \*\*Machine:\*\* [0-9]* cores .*, kernel .*, THP `.*`, read faults map the zero page: \*\*\(yes\|no\|unknown\)\*\* .*plain page fault .*: \*\*[0-9.]* µs' "$r" ||
	fail "machine line"
grep -q '^- \*\*Quick run:\*\*' "$r" || fail "quick run not said"
# A figure beside its same-run reference, with a ratio.
grep -q '^| PAGEMAP_SCAN of 64 MiB tracked, clean, target idle | [0-9.]* ms ([0-9.]*–[0-9.]*, 3 runs) | pread of its /proc/PID/pagemap: [0-9.]* ms .* | [0-9.]*× |' "$r" ||
	fail "scan row with its reference"
# A reference named by id, from another benchmark of the same run.
grep -q '^| zero-page detection, one thread | .* | memcpy: [0-9.]* GB/s | [0-9.]*× |' "$r" ||
	fail "row referring to another benchmark's figure"
# Targets judged.
grep -Eq '^[0-9]+ of [1-9][0-9]* targets met\.$' "$r" || fail "no judged target"
n=$(grep -c '"kind": *"row"' "$out/records.jsonl" || true)
[ "$n" -ge 15 ] || fail "only $n rows recorded"
if command -v gnuplot >/dev/null; then
	grep -q '<svg' "$out/scan.svg" || fail "scan.svg not drawn"
	grep -q '^!\[PAGEMAP_SCAN time against tracked size\](scan.svg)' "$r" || fail "plot not shown"
else
	[ -s "$out/scan.gp" ] && [ -s "$out/scan.0.dat" ] || fail "no plot data"
fi
echo "ok: $n rows, $(grep -Eo '^[0-9]+ of [0-9]+ targets met' "$r")"
