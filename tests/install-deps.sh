#!/bin/sh
# Install what wpmig needs to build and test on Debian 12, as root.
# Used by both set-up commands in README.md, by .ci/run and by
# tests/perf-report.sh (gnuplot draws the report's plots; gdb's gcore is
# one of its references; qemu-utils's qemu-img makes the qcow2 that QEMU
# savevm writes into, a reference of bench-vm-checkpoint).
set -eu
pkgs="gcc libc6-dev pkg-config meson ninja-build
      libevent-dev libprotobuf-c-dev protobuf-c-compiler libzstd-dev libsystemd-dev
      libjson-c-dev libxxhash-dev libinih-dev libssl-dev
      systemd procps iproute2 util-linux
      clang libclang-rt-14-dev llvm
      qemu-system-x86 qemu-utils busybox-static cpio gzip gnuplot-nox gdb
      valgrind cppcheck libseccomp-dev python3"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# The Linux guest of the QEMU tests boots Debian's kernel, fetched into a
# cache directory (not installed into /boot).
# Without it those tests exit 77 (skipped), so a failure here is not fatal.
"$(dirname "$0")/qemu/get-kernel.sh" >/dev/null || echo "warning: no guest kernel for the QEMU tests"
