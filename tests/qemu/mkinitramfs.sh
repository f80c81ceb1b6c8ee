#!/bin/sh
# Build the Linux guest's initramfs: busybox-static, the virtio modules from
# the kernel cache (get-kernel.sh), and guest-memcheck as the workload.
#   mkinitramfs.sh OUT.cpio.gz MEMCHECK KERNEL_CACHE
set -eu
out=$1 memcheck=$2 cache=$3
bb=$(command -v busybox || true)
[ -x /bin/busybox ] && bb=/bin/busybox
[ -x "$bb" ] || \
	{ echo "mkinitramfs: no busybox (busybox-static)" >&2; exit 77; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/modules"
cp "$bb" "$root/bin/busybox"
cp "$memcheck" "$root/memcheck"
cp "$cache"/modules/*.ko* "$root/modules/" 2>/dev/null || true
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_balloon; do
	[ -f /modules/$m.ko ] && /bin/busybox insmod /modules/$m.ko
done
echo "GUEST UP"
exec /memcheck
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out.tmp"
mv "$out.tmp" "$out"
