#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the out-of-tree modules against a cached test kernel tree:
# DIR/module/socksplice.ko (the splice engine) and
# DIR/testmod/socksplice_testmod.ko (the kfunc smoke test).
#
#   kernel/vm/modules.sh KERNEL_DIR DIR
set -euo pipefail
kdir=$1
dir=$(realpath -m "$2") # make M= wants an absolute path
repo=$(cd "$(dirname "$0")/../.." && pwd)
# The modules include the ABI header as <socksplice/abi.h> from ../include.
mkdir -p "$dir"
rm -rf "${dir:?}/include"
cp -r "$repo/kernel/include" "$dir/include"
for m in module:kernel/module testmod:kernel/testmod/module; do
	name=${m%%:*}
	src=$repo/${m#*:}
	printf 'modules: building %s against %s/tree\n' "$src" "$kdir" >&2
	rm -rf "${dir:?}/$name"
	mkdir -p "$dir/$name"
	cp "$src"/*.c "$src"/Kbuild "$dir/$name/"
	[ -z "$(ls "$src"/*.h 2>/dev/null)" ] || cp "$src"/*.h "$dir/$name/"
	# Warnings are errors: the module is ours to keep clean.
	make -s -C "$kdir/tree" M="$dir/$name" KCFLAGS=-Werror modules >&2
done
