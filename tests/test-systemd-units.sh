#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# systemd-analyze verify on the built units; ExecStart points at the build
# tree's wpmigd (verify wants an existing binary).  Any warning fails.
# usage: test-systemd-units.sh BUILT_SERVICE SOCKET_UNIT WPMIGD
set -u
command -v systemd-analyze >/dev/null || { echo "SKIP: no systemd-analyze"; exit 77; }
service=$1 socket=$2 wpmigd=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|^ExecStart=.*|ExecStart=$wpmigd|" "$service" > "$tmp/wpmigd.service"
cp "$socket" "$tmp/wpmigd.socket"
grep -q "^ExecStart=$wpmigd\$" "$tmp/wpmigd.service" || { echo "FAIL: no ExecStart"; exit 1; }
# man pages are checked by the install, not here
out=$(systemd-analyze verify --man=no "$tmp/wpmigd.service" "$tmp/wpmigd.socket" 2>&1)
rc=$?
echo "$out"
[ $rc -eq 0 ] || { echo "FAIL: verify exit $rc"; exit 1; }
[ -z "$out" ] || { echo "FAIL: verify warned"; exit 1; }
for key in Type=notify WatchdogSec= Restart=on-failure NoNewPrivileges=yes \
	   ProtectSystem=strict StateDirectory=wpmig RuntimeDirectory=wpmigd \
	   ProtectHome=yes PrivateTmp=yes ProtectKernelModules=yes \
	   ProtectKernelTunables=yes ProtectKernelLogs=yes LockPersonality=yes \
	   "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" CapabilityBoundingSet=; do
	grep -q "^$key" "$tmp/wpmigd.service" || { echo "FAIL: service lacks $key"; exit 1; }
done
for key in ListenStream=/run/wpmigd/control.sock SocketMode=0660; do
	grep -q "^$key" "$tmp/wpmigd.socket" || { echo "FAIL: socket lacks $key"; exit 1; }
done
echo "units verified"
