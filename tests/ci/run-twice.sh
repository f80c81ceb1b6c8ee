# Sourced by the scripts of suite 'ci' (POSIX sh).
#
#   run_twice BUILD_DIR LOGBASE "MESON_TEST_OPTIONS" TEST...
#
# Runs the tests with `meson test`, then the ones that failed once more,
# alone; returns 0 when each passed in one of the two runs.  The tests
# under a sanitizer, memcheck or the syscall filter run slower than in the
# plain suite, beside other jobs, and some judge time (a status answered
# within 50 ms): such a test may fail once for its timing alone.  What
# these runs look for fails every time (a sanitizer report is counted by
# the caller whatever the run; a system call outside the filter kills the
# daemon each time), and a test that fails twice fails the run.  Each
# first failure is printed, so none is hidden.
run_twice() {
	rt_build=$1 rt_base=$2 rt_opts=$3
	shift 3
	rt_rc=0
	# shellcheck disable=SC2086
	meson test -C "$rt_build" --no-rebuild --logbase "$rt_base" $rt_opts "$@" || rt_rc=$?
	[ "$rt_rc" -eq 0 ] && return 0
	rt_failed=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    t = json.loads(line)
    if t["result"] in ("FAIL", "TIMEOUT", "ERROR", "UNEXPECTEDPASS"):
        print(t["name"].split(" / ")[-1])  # "project:suite / name"
' "$rt_build/meson-logs/$rt_base.json")
	[ -n "$rt_failed" ] || return "$rt_rc"
	echo "=== failed once:" $rt_failed "-- running them again, alone"
	# shellcheck disable=SC2086
	meson test -C "$rt_build" --no-rebuild --logbase "$rt_base-again" $rt_opts -j 1 $rt_failed
}
