#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# What every guest run needs from the host, into a fresh DIR: the kernel
# (KERNEL=test, the default: the project's patched test kernel, built or
# reused, DEBUG=1 for its lockdep/KASAN variant; KERNEL=debian-new,
# debian-6.12, debian-6.1: a Debian stock kernel, unmodified), the modules
# built against it (DIR/module, DIR/testmod), and socksplice with the
# reference plugins it chains after (DIR/cni), so the guest needs no Go
# toolchain. Prints the kernel's cache directory.
#
#   kernel/vm/prepare.sh DIR
set -euo pipefail
dir=$1
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
case ${KERNEL:-test} in
test) kdir=$(kernel/build.sh) ;;
debian-*)
	[ "${DEBUG:-}" != 1 ] || { echo "prepare: DEBUG=1 is the test kernel's variant (KERNEL=test)" >&2; exit 2; }
	kdir=$(kernel/debian/kernel.sh "$KERNEL")
	;;
*) echo "prepare: unknown KERNEL=$KERNEL (test, debian-new, debian-6.12, debian-6.1)" >&2; exit 2 ;;
esac
rm -rf "$dir"
mkdir -p "$dir/cni"
"$here/modules.sh" "$kdir" "$dir"
printf 'prepare: building socksplice and the reference plugins\n' >&2
CGO_ENABLED=0 go build -o "$dir/cni/" ./plugin \
	github.com/containernetworking/plugins/plugins/main/bridge \
	github.com/containernetworking/plugins/plugins/ipam/host-local \
	github.com/containernetworking/plugins/plugins/main/loopback
mv "$dir/cni/plugin" "$dir/cni/socksplice"
echo "$kdir"
