#!/bin/sh
# The daemon suite with every wpmigd under valgrind memcheck.
#
#   valgrind.sh SOURCE_DIR BUILD_DIR SHIM TEST...
#
# Runs the TESTs of BUILD_DIR (already built: this runs inside its
# `meson test`; tests/ci/meson.build names them) with $WPMIG_DAEMON_WRAPPER set to a script that
# starts each wpmigd under memcheck (tests/wpmigd-harness.h).  SHIM is
# preloaded into the daemon: it runs the four system calls Debian 12's
# valgrind does not know natively (tests/ci/valgrind-shim.c).  Passes when
# every test passes and every daemon's memcheck log says 0 errors: invalid
# accesses, uses of undefined values, and definite or indirect leaks at
# exit (a daemon SIGKILLed by its test has no leak check, its other
# errors still count).  Suppressions, each with its reason: valgrind.supp.
set -eu
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
shim=$3
shift 3
command -v valgrind >/dev/null || { echo "valgrind not installed: skipping"; exit 77; }
[ -f "$shim" ] || { echo "'$shim' missing (no valgrind/valgrind.h at configure time?)"; exit 1; }
shim=$(cd "$(dirname "$shim")" && pwd)/$(basename "$shim")

dir=$build/ci-valgrind
rm -rf "$dir"
mkdir -p "$dir/logs"
cat >"$dir/wpmigd" <<WRAP
#!/bin/sh
export LD_PRELOAD="$shim"
exec valgrind --tool=memcheck --log-file="$dir/logs/wpmigd.%p" \\
	--leak-check=full --show-leak-kinds=definite,indirect \\
	--errors-for-leak-kinds=definite,indirect --child-silent-after-fork=yes \\
	--suppressions="$src/tests/ci/valgrind.supp" --fair-sched=yes \\
	"$build/daemon/wpmigd" "\$@"
WRAP
chmod +x "$dir/wpmigd"

. "$src/tests/ci/run-twice.sh"
rc=0
# memcheck's own memory is in the daemon's RSS: tests print it, judge it not
export WPMIG_DAEMON_FIGURES=unjudged
export WPMIG_DAEMON_WRAPPER="$dir/wpmigd"
run_twice "$build" ci-valgrind "--timeout-multiplier 4 --print-errorlogs" "$@" || rc=$?

n=0 bad=0
for f in "$dir"/logs/wpmigd.*; do
	[ -e "$f" ] || continue
	n=$((n + 1))
	# "ERROR SUMMARY: N errors from M contexts": the last line of a log
	errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$f" | tail -1)
	if [ "${errors:-0}" != 0 ]; then
		bad=$((bad + 1))
		echo "=== $f: $errors errors"
		grep -v "^==[0-9]*== *$" "$f" | head -80
	fi
done
echo "daemons run under memcheck: $n, with errors: $bad; meson test exit: $rc"
[ "$n" -gt 0 ] || { echo "no daemon ran under valgrind: is WPMIG_DAEMON_WRAPPER honoured?"; exit 1; }
[ "$bad" -eq 0 ] && [ "$rc" -eq 0 ]
