#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# A minimal Debian SUITE (trixie, bookworm) root made with debootstrap and
# cached under $SOCKSPLICE_CACHE (default ~/.cache/socksplice): what a node
# of that release has to build the module with DKMS (its gcc, make, dkms,
# pahole, kmod) and its own apt, which fetches the release's kernels and
# headers without touching this machine's apt setup. Prints its directory.
#
#   kernel/debian/chroot.sh SUITE
#   kernel/debian/chroot.sh --run SUITE CMD...   (CMD inside it)
set -euo pipefail
say() { printf 'chroot: %s\n' "$*" >&2; }

run=
if [ "${1:-}" = --run ]; then
	run=1
	shift
fi
suite=${1:?usage: $0 [--run] SUITE [CMD...]}
shift
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What building and packaging the module needs on a node of the release.
pkgs=dkms,gcc,make,libc6-dev,dwarves,kmod,xz-utils,ca-certificates,debhelper,fakeroot,dpkg-dev
case $suite in
trixie) pkgs=$pkgs,dh-dkms ;; # socksplice-dkms is built in trixie's root
esac
cache=${SOCKSPLICE_CACHE:-$HOME/.cache/socksplice}
dir=$cache/chroot-$suite
key=$(printf '%s %s' "$mirror" "$pkgs" | sha256sum | cut -c1-12)

if [ ! -f "$dir/.socksplice-$key" ]; then
	command -v debootstrap >/dev/null || { say "debootstrap missing: apt-get install debootstrap"; exit 1; }
	rm -rf "$dir" "$dir.partial"
	say "debootstrap $suite into $dir.partial (about a minute)"
	debootstrap --variant=minbase --include="$pkgs" "$suite" "$dir.partial" "$mirror" >&2
	{
		echo "deb $mirror $suite main"
		echo "deb $mirror $suite-updates main"
		echo "deb $mirror $suite-backports main"
		echo "deb ${mirror%/debian}/debian-security $suite-security main"
	} >"$dir.partial/etc/apt/sources.list"
	: >"$dir.partial/.socksplice-$key"
	mv "$dir.partial" "$dir"
fi
[ -n "$run" ] || { echo "$dir"; exit 0; }

# Run CMD inside with the node's resolver and a /proc (objtool of 7.x reads
# it), mounted in a mount namespace of its own: it goes when CMD ends, and
# runs side by side cannot unmount each other's.
cp /etc/resolv.conf "$dir/etc/resolv.conf"
exec unshare --mount --propagation private --pid --fork --mount-proc="$dir/proc" \
	chroot "$dir" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
	DEBIAN_FRONTEND=noninteractive "$@"
