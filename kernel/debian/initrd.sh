#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The initramfs of a stock kernel's test guest: busybox, and the image's own
# modules that mounting the host's root over 9p needs (with what they
# depend on, in load order, decompressed for busybox's insmod).
#
#   kernel/debian/initrd.sh ROOT RELEASE OUT   (ROOT: the image's files, depmod run)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$1 release=$2 out=$(realpath -m "$3")
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "initrd: $busybox missing: apt-get install busybox-static" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/modules"
cp "$busybox" "$work/bin/busybox"
for a in sh mount umount insmod mkdir sed cat switch_root; do ln -s busybox "$work/bin/$a"; done
# virtio_pci is built in on some flavours: modprobe then says "builtin".
: >"$work/modules/order"
modprobe -d "$root" -S "$release" --show-depends -a virtio_pci 9pnet_virtio 9p |
	while read -r verb path _; do
		[ "$verb" = insmod ] || continue
		m=$(basename "$path")
		m=${m%.xz} m=${m%.zst} m=${m%.gz}
		! grep -qx "$m" "$work/modules/order" || continue
		case $path in
		*.xz) xz -dc "$path" ;;
		*.zst) zstd -dc "$path" ;;
		*.gz) gzip -dc "$path" ;;
		*) cat "$path" ;;
		esac >"$work/modules/$m"
		echo "$m" >>"$work/modules/order"
	done
[ -s "$work/modules/order" ] || { echo "initrd: no 9p modules found under $root for $release" >&2; exit 1; }
cp "$here/initrd-init.sh" "$work/init"
chmod +x "$work/init"
(cd "$work" && find . | cpio -o -H newc --quiet) | gzip -1 >"$out"
echo "initrd: $(tr '\n' ' ' <"$work/modules/order")" >&2
