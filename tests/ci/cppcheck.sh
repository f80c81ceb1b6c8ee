#!/bin/sh
# cppcheck on the project's own code: daemon/, client/, proto/frame.c and
# tests/ (not the code protoc-c generates).
#
#   cppcheck.sh SOURCE_DIR BUILD_DIR
#
# Checks: errors, warning, performance, portability (style is taste, not
# defects).  Only system headers stay unseen; the two whose macros shape
# our code are included so cppcheck can parse it: protobuf-c.h (its
# version check) and sys/queue.h (the TAILQ_ lists).  Each false positive
# is suppressed in cppcheck.supp with its reason.  Passes with no finding.
set -eu
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
command -v cppcheck >/dev/null || { echo "cppcheck not installed: skipping"; exit 77; }
queue=$(echo '#include <sys/queue.h>' | cpp -H -o /dev/null 2>&1 | sed -n 's/^\. //p' | head -1)
pbc=$(pkg-config --variable=includedir libprotobuf-c)/protobuf-c/protobuf-c.h
cd "$src"
cppcheck --quiet --error-exitcode=1 -j"$(nproc)" --std=c11 --library=gnu \
	--enable=warning,performance,portability --inline-suppr \
	--suppressions-list=tests/ci/cppcheck.supp --suppress=missingIncludeSystem \
	-D_GNU_SOURCE -D__linux__ -D__x86_64__ --include="$pbc" --include="$queue" \
	-Idaemon -Iproto -I"$build/proto" -I"$build" \
	--cppcheck-build-dir="$(mkdir -p "$build/ci-cppcheck" && echo "$build/ci-cppcheck")" \
	daemon client proto/frame.c tests
echo "cppcheck: no findings"
