#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the out-of-tree modules for a guest kernel: DIR/module/socksplice.ko
# (the splice engine) and DIR/testmod/socksplice_testmod.ko (the kfunc smoke
# test). KERNEL_DIR is the test kernel's cache directory (build tree in
# tree/) or a stock kernel's from kernel/debian/kernel.sh (KERNEL names
# it), whose modules build in its release's root against its installed
# headers, with its compiler, as on a node: socksplice.ko is the one the
# socksplice-dkms package builds there (kernel/dkms/install-test.sh). Where
# DKMS excludes the kernel (DIR/module/dkms-skip says why), the module is
# built as an operator bypassing DKMS would, so that the guest shows how
# the kernel refuses it (DIR/module/build-failed where it does not build).
#
#   kernel/vm/modules.sh KERNEL_DIR DIR
set -euo pipefail
kdir=$1
dir=$(realpath -m "$2") # make M= wants an absolute path
repo=$(cd "$(dirname "$0")/../.." && pwd)
say() { printf 'modules: %s\n' "$*" >&2; }

stock=
if [ -f "$kdir/chroot" ]; then
	stock=1
	ch=$(cat "$kdir/chroot")
	release=$(cat "$kdir/release")
	suite=$(basename "$ch")
	suite=${suite#chroot-}
fi
# The modules include the ABI header as <socksplice/abi.h> from ../include.
src=$dir
[ -z "$stock" ] || src=$ch/usr/src/socksplice-vm
mkdir -p "$dir" "$src"
rm -rf "${src:?}/include"
cp -r "$repo/kernel/include" "$src/include"
for m in module:kernel/module testmod:kernel/testmod/module; do
	name=${m%%:*}
	from=$repo/${m#*:}
	rm -rf "${src:?}/$name" "${dir:?}/$name"
	mkdir -p "$src/$name" "$dir/$name"
	cp "$from"/*.c "$from"/Kbuild "$src/$name/"
	[ -z "$(ls "$from"/*.h 2>/dev/null)" ] || cp "$from"/*.h "$src/$name/"
	if [ -z "$stock" ]; then
		say "building $from against $kdir/tree"
		# Warnings are errors: the module is ours to keep clean.
		make -s -C "$kdir/tree" M="$dir/$name" KCFLAGS=-Werror modules >&2
		continue
	fi
	if [ "$name" = module ]; then
		KDIR=$kdir "$repo/kernel/dkms/install-test.sh" "${KERNEL:?KERNEL names the stock kernel}" "$dir/module" >/dev/null
		[ ! -f "$dir/module/socksplice.ko" ] || continue
	fi
	say "building $from against linux-headers-$release in $ch"
	log=$dir/$name/build.log
	if "$repo/kernel/debian/chroot.sh" --run "$suite" make -s -C "/lib/modules/$release/build" \
		M="/usr/src/socksplice-vm/$name" KCFLAGS=-Werror modules >"$log" 2>&1; then
		cat "$log" >&2
		cp "$src/$name"/*.ko "$dir/$name/"
	else
		# The first errors say why; the rest follow from them.
		grep -m 3 'error' "$log" >&2 || tail -3 "$log" >&2
		say "$name does not build for $release (the whole log: $log)"
		{
			printf '%s does not build against linux-headers-%s: ' "$name" "$release"
			grep -m 1 'error' "$log" || echo "see $log"
		} >"$dir/$name/build-failed"
	fi
done
