#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# The unit's CapabilityBoundingSet is enough and each capability in it is
# needed: wpmigd runs as root under exactly that bounding set (as systemd
# would run it) and tracks a workload of another user (nobody) that maps
# shared memory; then each capability is dropped in turn and the failure
# it guards must appear.  The unit's LimitNICE (RLIMIT_NICE) is applied too:
# with it the freezing thread may take nice -20 without CAP_SYS_NICE, and
# without it the daemon says at start that it may not.
# usage: test-systemd-caps.sh SERVICE_UNIT WPMIGD WPMIG_CTL WORKLOAD
set -u
unit=$1 wpmigd=$2 ctl=$3 workload=$4
# the daemon proper, or what runs it (tests/wpmigd-harness.h, wpmigd_exe)
daemon=${WPMIG_DAEMON_WRAPPER:-$wpmigd}
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
command -v setpriv >/dev/null || { echo "SKIP: no setpriv"; exit 77; }
"$wpmigd" --check >/dev/null || { echo "SKIP: kernel lacks a feature ($wpmigd --check)"; exit 77; }

caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$unit")
[ -n "$caps" ] || { echo "FAIL: no CapabilityBoundingSet in $unit"; exit 1; }
echo "unit keeps: $caps"
# LimitNICE=-20 is RLIMIT_NICE 40 (20 - nice)
nice_unit=$(sed -n 's/^LimitNICE=//p' "$unit")
[ -n "$nice_unit" ] || { echo "FAIL: no LimitNICE in $unit"; exit 1; }
nice_lim=$((20 - nice_unit))
command -v prlimit >/dev/null || { echo "SKIP: no prlimit"; exit 77; }
# Raising the hard limit needs CAP_SYS_RESOURCE, which systemd has and a
# container's root may not: then the daemons run with this shell's limit
# and only the case without the limit is checked.
unit_lim=$nice_lim
if ! prlimit --nice="$nice_lim" true 2>/dev/null; then
	nice_lim=
	echo "LimitNICE not applied: cannot raise RLIMIT_NICE to $unit_lim here (no CAP_SYS_RESOURCE)"
fi
tmp=$(mktemp -d)
chmod 755 "$tmp"
fail=0
cleanup() { exec 9>&- 2>/dev/null; [ -n "${wl:-}" ] && kill "$wl" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

# setpriv's list: -all,+sys_ptrace,... from CAP_SYS_PTRACE CAP_KILL ...
bset() { # CAPS_TO_KEEP...
	local s=-all c
	for c in "$@"; do c=${c#CAP_}; s="$s,+${c,,}"; done
	echo "$s"
}

mkfifo "$tmp/in"
setpriv --reuid nobody --regid nogroup --clear-groups \
	"$workload" --anon 16M --memfd 4M < "$tmp/in" > "$tmp/wl.out" 2>&1 &
wl=$!
exec 9>"$tmp/in"
for _ in $(seq 100); do grep -q READY "$tmp/wl.out" && break; sleep 0.05; done

# run_case NAME CAPS... : start the daemon with that bounding set, track,
# untrack; sets $track_rc $track_err $uw and leaves the log in $tmp/NAME.log
run_case() {
	local name=$1; shift
	local log="$tmp/$name.log" sock="$tmp/$name/control.sock"
	mkdir -p "$tmp/$name"
	printf 'control_group = nogroup\n' > "$tmp/$name.conf"
	local lim=()
	[ -z "$nice_lim" ] || lim=(prlimit --nice="$nice_lim")
	"${lim[@]}" setpriv --bounding-set "$(bset "$@")" \
		"$daemon" --config "$tmp/$name.conf" \
		--control "$sock" --state-dir "$tmp/$name/state" > "$log" 2>&1 &
	local d=$!
	for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.02; done
	track_err=$("$ctl" --socket "$sock" track "$wl" 2>&1 >/dev/null)
	track_rc=$?
	uw=$(grep -c ' uw' /proc/$wl/smaps)
	sock_gid=$(stat -c %g "$sock" 2>/dev/null)
	# --leave-stopped sends SIGSTOP to another user's process (CAP_KILL)
	ckpt_err=$("$ctl" --socket "$sock" checkpoint "$wl" --leave-stopped 2>&1 >/dev/null)
	ckpt_rc=$?
	stopped=$(awk '/^State:/ {print $2}' /proc/$wl/status)
	kill -CONT "$wl"
	[ $track_rc -eq 0 ] && "$ctl" --socket "$sock" untrack "$wl" >/dev/null
	kill "$d"; wait "$d"
	daemon_rc=$?
}

check() { # CONDITION MESSAGE
	if ! eval "$1"; then echo "FAIL: $2"; fail=1; fi
}

read -ra all <<< "$caps"
run_case all "${all[@]}"
echo "all: track rc=$track_rc uw=$uw socket gid=$sock_gid"
check '[ $track_rc -eq 0 ] && [ $uw -gt 0 ]' "tracking with the unit's set: $track_err"
check '[ $ckpt_rc -eq 0 ] && [ "$stopped" = T ]' "checkpoint --leave-stopped with the unit's set: $ckpt_err (state $stopped)"
check '! grep -q "cannot open backing file" $tmp/all.log' "backing file not opened"
check '[ "$sock_gid" = 65534 ]' "socket not given to control_group"
check '[ $daemon_rc -eq 0 ]' "daemon exit $daemon_rc"
check '[ $(grep -c " uw" /proc/$wl/smaps) -eq 0 ]' "uw left after untrack"
nice_refused="Freezes run at this daemon's priority"
[ -z "$nice_lim" ] ||
	check '! grep -q "$nice_refused" $tmp/all.log' "the freezing thread may not take nice -20 under LimitNICE=$nice_unit"

# what each capability guards: the symptom without it
declare -A symptom=(
	[CAP_SYS_PTRACE]='[ $track_rc -ne 0 ]'
	# /proc/PID/fd (the pinned-memory check) and /proc/PID/pagemap
	[CAP_DAC_READ_SEARCH]='[ $track_rc -ne 0 ] && [[ $track_err == *pagemap* || $track_err == *"list the fds"* ]]'
	[CAP_KILL]='[ $ckpt_rc -ne 0 ] && [ "$stopped" != T ]'
	[CAP_CHECKPOINT_RESTORE]='grep -q "cannot open backing file" $tmp/$c.log'
	[CAP_CHOWN]='grep -q "Cannot set the group" $tmp/$c.log'
)
for c in "${all[@]}"; do
	keep=()
	for k in "${all[@]}"; do [ "$k" = "$c" ] || keep+=("$k"); done
	run_case "$c" "${keep[@]}"
	echo "without $c: track rc=$track_rc ${track_err:+($track_err)}"
	if [ -z "${symptom[$c]:-}" ]; then
		echo "FAIL: $c has no test proving it is needed"; fail=1; continue
	fi
	check "${symptom[$c]}" "$c looks unneeded: nothing failed without it"
done
# without the limit (RLIMIT_NICE 0, the default) the priority is refused,
# said once, and the checkpoint is still made
nice_lim=0
run_case nonice "${all[@]}"
echo "without LimitNICE: checkpoint rc=$ckpt_rc"
check '[ "$(grep -c "$nice_refused" $tmp/nonice.log)" = 1 ]' "no notice that the priority is refused without LimitNICE"
check '[ $ckpt_rc -eq 0 ] && [ "$stopped" = T ]' "checkpoint without LimitNICE: $ckpt_err"
echo quit >&9
exit $fail
