#!/bin/sh
# Fetch Debian's linux-image-amd64 kernel (and the virtio modules the Linux
# guest loads) into a cache directory without installing it into /boot:
# apt-get download + dpkg -x.  Prints the cache directory on success.
#   get-kernel.sh [CACHE_DIR]      (default: $WPMIG_KERNEL_CACHE or /var/cache/wpmig-kernel)
set -eu
cache=${1:-${WPMIG_KERNEL_CACHE:-/var/cache/wpmig-kernel}}
if [ -f "$cache/vmlinuz" ] && [ -d "$cache/modules" ]; then
	echo "$cache"
	exit 0
fi
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.get.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
depends() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'; }
pkg=$(depends)
if [ -z "$pkg" ]; then
	apt-get update -qq >/dev/null 2>&1 || true
	pkg=$(depends)
fi
[ -n "$pkg" ] || { echo "get-kernel: no linux-image-amd64 in apt's lists (apt-get update?)" >&2; exit 1; }
(cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1) || \
	{ echo "get-kernel: apt-get download $pkg failed" >&2; exit 1; }
dpkg -x "$tmp"/*.deb "$tmp/x"
ver=$(ls "$tmp/x/lib/modules")
mkdir -p "$tmp/modules"
for m in virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_balloon; do
	f=$(find "$tmp/x/lib/modules/$ver" -name "$m.ko*" | head -n 1)
	[ -n "$f" ] && cp "$f" "$tmp/modules/"
done
cp "$tmp/x/boot/vmlinuz-$ver" "$cache/vmlinuz.new"
rm -rf "$cache/modules"
mv "$tmp/modules" "$cache/modules"
echo "$ver" > "$cache/version"
mv "$cache/vmlinuz.new" "$cache/vmlinuz"
echo "$cache"
