#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# A Debian stock kernel for the test guest, unmodified: the newest package
# of a release that matches NAME, fetched by that release's own apt (in
# kernel/debian/chroot.sh's root), with its headers installed there as on a
# node. Prints a directory that kernel/vm/run.sh boots:
#   bzImage        the distribution's vmlinuz
#   initrd         busybox and the image's 9p modules: the amd64 flavour
#                  has 9p as modules and the guest's root is 9p
#   root/          the image's files (root/lib/modules/VERSION, depmod run)
#   chroot, release, package   the build root, uname -r, the package version
#
#   kernel/debian/kernel.sh NAME
#
# NAME: debian-new (the newest of trixie and its backports), debian-6.1
# (bookworm's 6.1), debian-X.Y (the newest X.Y of trixie and its backports).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
say() { printf 'kernel: %s\n' "$*" >&2; }
name=${1:?usage: $0 debian-new|debian-6.1|debian-X.Y}

case $name in
debian-new) suite=trixie re='[0-9][0-9.]*\+deb13' ;;
debian-6.1) suite=bookworm re='6\.1\.0-[0-9]+' ;;
debian-[0-9]*.[0-9]*)
	v=${name#debian-}
	suite=trixie re="${v//./\\.}\.[0-9]+\+deb13"
	;;
*) say "unknown kernel $name (debian-new, debian-6.1, debian-X.Y)"; exit 2 ;;
esac
inch() { "$here/chroot.sh" --run "$suite" "$@"; }
ch=$("$here/chroot.sh" "$suite")

# The index moves: resolve the name now, newest first, and take the newest
# image whose headers are in the index too (DKMS needs them).
inch apt-get update -qq >&2
release=
while read -r img; do
	r=${img#linux-image-}
	if inch apt-cache show "linux-headers-$r" >/dev/null 2>&1; then
		release=$r
		break
	fi
	say "skipping $img: linux-headers-$r is not in the $suite index"
done < <(inch apt-cache search --names-only "^linux-image-$re-amd64\$" | cut -d' ' -f1 | sort -rV)
if [ -z "$release" ]; then
	say "no linux-image-* of $suite matches $re-amd64 with its headers (apt-cache search '^linux-image-' in $ch)"
	exit 1
fi
package=$(inch apt-cache show --no-all-versions "linux-image-$release" | sed -n 's/^Version: //p')
say "$name is $suite's linux-image-$release $package"

cache=${SOCKSPLICE_CACHE:-$HOME/.cache/socksplice}
out=$cache/debian-$release-$package
if [ ! -f "$out/initrd" ]; then
	rm -rf "$out.partial"
	mkdir -p "$out.partial/debs" "$out.partial/root"
	# Newer images are split: the kernel in linux-binary-*, modules in
	# linux-modules-*, modules.builtin and the like in linux-base-*;
	# older ones carry all of it.
	debs=("linux-image-$release")
	for p in linux-binary linux-modules linux-base; do
		! inch apt-cache show "$p-$release" >/dev/null 2>&1 || debs+=("$p-$release")
	done
	say "downloading ${debs[*]}"
	dl=/tmp/socksplice-debs-$$
	inch sh -c "rm -rf $dl && mkdir $dl && cd $dl && apt-get download -qq ${debs[*]}" >&2
	mv "$ch$dl"/*.deb "$out.partial/debs/"
	rmdir "$ch$dl"
	for d in "$out.partial"/debs/*.deb; do dpkg-deb -x "$d" "$out.partial/root"; done
	root=$out.partial/root
	# Merged /usr: kmod on this host looks under lib/modules.
	[ -e "$root/lib" ] || ln -s usr/lib "$root/lib"
	# /boot until 6.12, beside the modules since.
	for k in "$root/boot/vmlinuz-$release" "$root/lib/modules/$release/vmlinuz" ""; do
		[ -z "$k" ] || [ ! -f "$k" ] || break
	done
	[ -n "$k" ] || { say "no vmlinuz in ${debs[*]}"; exit 1; }
	cp "$k" "$out.partial/bzImage"
	depmod -b "$root" "$release"
	"$here/initrd.sh" "$root" "$release" "$out.partial/initrd"
	echo "$release" >"$out.partial/release"
	echo "$package" >"$out.partial/package"
	mv "$out.partial" "$out"
fi
echo "$ch" >"$out/chroot"

# The headers, installed as on a node (this also pulls the release's gcc
# and kbuild); a second run finds them installed.
say "installing linux-headers-$release in $ch"
inch apt-get install -y -qq --no-install-recommends "linux-headers-$release" >&2
echo "$out"
