#!/bin/sh
# The main job on a local default, as README.md runs it: a private wpmigd,
# a real workload (anon, memfd and file-backed memory), a full and two
# incremental checkpoints, the images listed and verified, the last one
# exported and compared byte for byte with the live process, a restore;
# then a live migration of a QEMU guest between two local QEMUs
# (tests/demo-qemu.sh, which can also be run on its own).
# Usage: tests/demo.sh [BUILD_DIR]
set -eu
B=$(cd "${1:-build}" && pwd)
T=$(mktemp -d /tmp/wpmig-demo.XXXXXX)
SOCK=$T/control.sock
ctl() { "$B/client/wpmig-ctl" --socket "$SOCK" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# Send the workload a command; print its one-line answer.
wl() {
	n=$(wc -l < "$T/out")
	echo "$*" >&3
	while [ "$(wc -l < "$T/out")" -le "$n" ]; do sleep 0.01; done
	tail -n 1 "$T/out"
}

cleanup() {
	[ -n "${WL:-}" ] && kill -CONT "$WL" 2>/dev/null; true
	exec 3>&- 2>/dev/null || true
	[ -n "${WL:-}" ] && kill "$WL" 2>/dev/null; true
	[ -n "${D:-}" ] && kill "$D" 2>/dev/null && wait "$D" 2>/dev/null; true
	rm -rf "$T"
}
trap cleanup EXIT INT TERM

say "kernel features"
"$B/daemon/wpmigd" --check

say "start wpmigd (socket $SOCK, state $T/state)"
"$B/daemon/wpmigd" --control "$SOCK" --state-dir "$T/state" 2>"$T/wpmigd.log" &
D=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done

say "start a workload: 256 MiB anon, 64 MiB memfd, 16 MiB private file, 70% populated"
mkfifo "$T/in"
"$B/tests/workload" --anon 256M --memfd 64M --file 16M --populate 70 <"$T/in" >"$T/out" &
WL=$!
exec 3>"$T/in"
for _ in $(seq 100); do grep -q READY "$T/out" 2>/dev/null && break; sleep 0.05; done
echo "workload pid $WL"

say "checkpoint 1 (full)"
ctl checkpoint "$WL"
say "the workload rewrites 2000 random pages of its anon region"
wl write anon 2000 7 >/dev/null
say "checkpoint 2 (incremental)"
ctl checkpoint "$WL"
say "checkpoint 3, leaving the process stopped, as JSON"
wl poke memfd 500 9 >/dev/null
ctl --json checkpoint "$WL" --leave-stopped
echo
grep State /proc/"$WL"/status

say "images"
ctl images list
ctl images show "pid-$WL/3"
ctl images verify "pid-$WL/3"

say "export generation 3 and compare every region with /proc/$WL/mem"
ctl images export "pid-$WL/3" "$T/export"
n=0
for f in "$T"/export/*.bin; do
	r=$(basename "$f" .bin)
	s=$((0x${r%-*})); e=$((0x${r#*-}))
	dd if=/proc/"$WL"/mem bs=4096 skip=$((s / 4096)) count=$(((e - s) / 4096)) 2>/dev/null |
		cmp -s - "$f" || { echo "region $r DIFFERS"; exit 1; }
	n=$((n + 1))
done
echo "$n regions, all equal to the stopped process byte for byte"
kill -CONT "$WL"

say "restore: the workload zeroes its anon region, then generation 3 is put back"
before=$(wl sum anon)
wl zero anon 0 65536 >/dev/null
zeroed=$(wl sum anon)
ctl restore "$WL" "pid-$WL/3"
after=$(wl sum anon)
echo "checksum before: $before  zeroed: $zeroed  restored: $after"
[ "$before" = "$after" ] && [ "$before" != "$zeroed" ] || { echo "restore FAILED"; exit 1; }

say "status, untrack"
ctl status
ctl untrack "$WL"
grep -q ' uw' /proc/"$WL"/smaps && { echo "registration left!"; exit 1; }
echo "no uffd-wp registration left in the workload"
echo
echo "process demo OK"

say "migrate a QEMU guest (tests/demo-qemu.sh)"
sh "$(dirname "$0")/demo-qemu.sh" "$B"
echo
echo "demo OK"
