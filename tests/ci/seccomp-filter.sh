#!/bin/sh
# The daemon's tests with every wpmigd under the unit's system call filter.
#
#   seccomp-filter.sh SOURCE_DIR BUILD_DIR SECCOMP_LAUNCH SERVICE_UNIT [TEST...]
#
# The allow-list is the one systemd would apply for SERVICE_UNIT's
# SystemCallFilter= lines (syscall-filter.py expands them with this
# machine's systemd-analyze); seccomp-launch applies it as systemd does
# (SIGSYS kills the process on anything else, native ABI only,
# no_new_privs) and executes wpmigd, through $WPMIG_DAEMON_WRAPPER
# (tests/wpmigd-harness.h).  The tests run are the TESTs named
# (tests/ci/meson.build: a selection that fits the CI's time), or when none
# is, every test of BUILD_DIR that starts a daemon (its environment names
# WPMIGD, or its command line wpmigd), except suites 'ci' and
# 'bench-smoke', found by introspection.  Passes when they all pass (a test
# that fails is run once more, alone: run-twice.sh; a daemon the filter
# kills is killed again).  A daemon
# killed by the filter fails its test; the kernel's audit line naming the
# system call (type=1326 ... syscall=N) is printed when dmesg shows it.
set -eu
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
launch=$(readlink -f "$3")
unit=$4
shift 4
command -v systemd-analyze >/dev/null || { echo "no systemd-analyze: skipping"; exit 77; }

dir=$build/ci-seccomp
rm -rf "$dir"
mkdir -p "$dir"
python3 "$src/tests/ci/syscall-filter.py" "$unit" >"$dir/allow"
echo "allow-list of $unit: $(wc -l <"$dir/allow") system calls"
cat >"$dir/wpmigd" <<WRAP
#!/bin/sh
echo "\$\$ \$*" >>"$dir/runs"
exec "$launch" "$dir/allow" "$build/daemon/wpmigd" "\$@"
WRAP
chmod +x "$dir/wpmigd"

tests="$*"
[ -n "$tests" ] || tests=$(meson introspect --tests "$build" | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    suites = {s.split(":")[-1] for s in t["suite"]}
    if suites & {"ci", "bench-smoke"}:
        continue
    if "WPMIGD" in t["env"] or any("wpmigd" in a.split("/")[-1] for a in t["cmd"][1:]):
        print(t["name"])
')
echo "tests: $(echo $tests | wc -w)"
since=$(cut -d' ' -f1 /proc/uptime)
. "$src/tests/ci/run-twice.sh"
rc=0
export WPMIG_DAEMON_WRAPPER="$dir/wpmigd"
# shellcheck disable=SC2086
run_twice "$build" ci-seccomp --print-errorlogs $tests || rc=$?
runs=$(wc -l <"$dir/runs" 2>/dev/null || echo 0)
echo "daemons started under the filter: $runs; meson test exit: $rc"
if [ "$rc" -ne 0 ]; then
	dmesg 2>/dev/null | awk -v t="$since" '
		/type=1326/ && /wpmigd/ { s = $0; sub(/^\[ */, "", s); if (s + 0 >= t) print }'
fi
[ "$runs" -gt 0 ] || { echo "no daemon ran under the filter: is WPMIG_DAEMON_WRAPPER honoured?"; exit 1; }
[ "$rc" -eq 0 ]
