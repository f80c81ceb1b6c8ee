#!/bin/sh
# A local live migration between two QEMUs, as README.md runs it: two
# private wpmigd (a source and a destination listening on loopback with a
# shared key), a source QEMU running the boot-sector test guest (it
# rewrites a counter in every page of 64 MiB and checks each page before
# it rewrites it), a destination QEMU waiting with -incoming, then
# wpmig-ctl migrate; the destination guest goes on from where the source
# stopped and its RAM is checked page by page.
# Usage: tests/demo-qemu.sh [BUILD_DIR]
set -eu
B=$(cd "${1:-build}" && pwd)
T=$(mktemp -d /tmp/wpmig-demo-qemu.XXXXXX)
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cleanup() {
	for p in ${PIDS:-}; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT INT TERM
command -v qemu-system-x86_64 >/dev/null || { echo "no qemu-system-x86_64 (tests/install-deps.sh)"; exit 1; }

PEER=127.0.0.1:$(port)
URI=tcp:127.0.0.1:$(port)
mkdir -p "$T/in"
head -c 32 /dev/urandom >"$T/key" && chmod 600 "$T/key"
printf 'peer_key_file = %s\n' "$T/key" >"$T/src.conf"
printf 'peer_key_file = %s\nlisten = %s\nincoming_qmp_dir = %s/in\n' "$T/key" "$PEER" "$T" >"$T/dst.conf"

say "two daemons: the source, and the destination listening on $PEER"
"$B/daemon/wpmigd" --config "$T/src.conf" --control "$T/src.sock" --state-dir "$T/src" 2>"$T/src.log" &
PIDS="$!"
"$B/daemon/wpmigd" --config "$T/dst.conf" --control "$T/dst.sock" --state-dir "$T/dst" 2>"$T/dst.log" &
PIDS="$PIDS $!"

say "source QEMU: 128 MiB in memory-backend-memfd,share=on; destination: -incoming $URI"
# The boot-sector guest with its range (first page 256, 16384 pages) patched in.
python3 - "$B/tests/qemu/guest-boot.img" "$T/boot.img" <<'PY'
import struct, sys
img = bytearray(open(sys.argv[1], 'rb').read())
img[0x1e4:0x1f0] = struct.pack('<III', 256, 16384, 0)
open(sys.argv[2], 'wb').write(img)
PY
cp "$T/boot.img" "$T/boot-dst.img"
Q="qemu-system-x86_64 -m 128M -nodefaults -no-user-config -display none"
$Q -drive file="$T/boot.img",format=raw,if=ide -machine pc,accel=tcg,memory-backend=ram0 -object memory-backend-memfd,id=ram0,size=128M,share=on \
   -qmp unix:"$T/src.qmp",server=on,wait=off -serial file:"$T/src.serial" &
PIDS="$PIDS $!"
$Q -drive file="$T/boot-dst.img",format=raw,if=ide -machine pc,accel=tcg,memory-backend=ram0 \
   -object memory-backend-memfd,id=ram0,size=128M,share=on -qmp unix:"$T/in/dst.qmp",server=on,wait=off -serial file:"$T/dst.serial" -incoming "$URI" &
PIDS="$PIDS $!"
for _ in $(seq 200); do [ -S "$T/src.sock" ] && [ -S "$T/dst.sock" ] && [ -S "$T/src.qmp" ] && \
	[ -S "$T/in/dst.qmp" ] && [ -s "$T/src.serial" ] && break; sleep 0.05; done
sleep 1
echo "source guest: $(grep -c '^P' "$T/src.serial") passes over 16384 pages so far, last: $(tail -n 1 "$T/src.serial")"

say "wpmig-ctl migrate"
"$B/client/wpmig-ctl" --socket "$T/src.sock" migrate --qmp "$T/src.qmp" --peer "$PEER" \
	--dest-qmp "$T/in/dst.qmp" --dest-uri "$URI"

say "status on the destination daemon"
"$B/client/wpmig-ctl" --socket "$T/dst.sock" status
sleep 1
say "the guest goes on on the destination (each page checked before it is rewritten)"
echo "source stopped at $(tail -n 1 "$T/src.serial"); destination: $(head -n 1 "$T/dst.serial") .. $(tail -n 1 "$T/dst.serial")"
if grep -q BAD "$T/dst.serial"; then echo "destination guest found a bad page:"; grep BAD "$T/dst.serial"; exit 1; fi
echo "no bad page"
