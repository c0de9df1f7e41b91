#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Install the socksplice-dkms package as a node would, in the Debian root
# of a stock kernel (kernel/debian/kernel.sh NAME: the release's apt, its
# headers installed), and check what DKMS made of it. Prints the path of
# OUTDIR/socksplice.ko on stdout, everything else on stderr.
#
#   kernel/dkms/install-test.sh KERNEL_NAME OUTDIR    (DEB=path reuses a package,
#                                                    KDIR=kernel.sh's output reuses it)
#
# A kernel that dkms.conf excludes (before 6.15) is no error: exit 0, no
# OUTDIR/socksplice.ko, and the reason in OUTDIR/dkms-skip (the VM harness
# prints it). Anything else that goes wrong exits non-zero.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
say() { printf 'dkms-test: %s\n' "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }
name=${1:?usage: $0 KERNEL_NAME OUTDIR}
out=${2:?usage: $0 KERNEL_NAME OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out/socksplice.ko" "$out/dkms-skip"

SECONDS=0
# KDIR: kernel.sh's directory when the caller (kernel/vm/modules.sh) has
# it already, so the index is not read and the headers not installed twice.
kdir=${KDIR:-$("$repo/kernel/debian/kernel.sh" "$name")}
release=$(cat "$kdir/release")
ch=$(cat "$kdir/chroot")
suite=${ch##*/chroot-}
inch() { "$repo/kernel/debian/chroot.sh" --run "$suite" "$@"; }
say "$name: $release, headers in $ch ($SECONDS s)"

deb=${DEB:-}
if [ -z "$deb" ]; then
	deb=$("$here/build-deb.sh" "$out")
	say "built $deb ($SECONDS s)"
fi
[ -f "$deb" ] || die "no package $deb"
work=/tmp/socksplice-dkms-test
rm -rf "${ch:?}$work"
mkdir -p "$ch$work"
cp "$deb" "$ch$work/"
debin=$work/$(basename "$deb")
version=$(inch dpkg-deb -f "$debin" Version)

# Leave the root as the last run found it only in what it needs: no
# socksplice-dkms of an earlier run, no DKMS tree of any version.
if inch dpkg-query -W -f='${Status}' socksplice-dkms 2>/dev/null | grep -qv 'not-installed'; then
	say "purging the previous socksplice-dkms"
	inch dpkg --purge socksplice-dkms >&2
fi
for v in $(inch sh -c 'ls /var/lib/dkms/socksplice 2>/dev/null' | grep -v '^kernel-' || true); do
	say "removing socksplice/$v from DKMS"
	inch dkms remove -m socksplice -v "$v" --all >&2
done

# The package's postinst builds for the kernels whose headers it finds
# (the root's uname -r is this machine's, which has none there).
say "installing socksplice-dkms $version"
inch apt-get install -y --no-install-recommends "$debin" >&2
say "installed ($SECONDS s)"

rc=0
if ! inch dkms status -m socksplice -v "$version" -k "$release" | grep -q ': installed'; then
	say "dkms install -m socksplice -v $version -k $release"
	msg=$(inch dkms install -m socksplice -v "$version" -k "$release" 2>&1) || rc=$?
	printf '%s\n' "$msg" >&2
fi
say "dkms status:"
inch dkms status >&2

# What dkms.conf's BUILD_EXCLUSIVE_KERNEL should decide, checked here
# independently so that a wrong regex fails the test.
IFS=. read -r major minor _ <<<"$release"
wanted=0
if [ "$major" -gt 6 ] || { [ "$major" -eq 6 ] && [ "$minor" -ge 15 ]; }; then
	wanted=1
fi

if [ "$rc" -eq 77 ]; then # DKMS's code for a BUILD_EXCLUSIVE miss
	[ "$wanted" -eq 0 ] || die "DKMS excluded $release, which is 6.15 or later"
	line="dkms: socksplice not built for $release: excluded by dkms.conf's BUILD_EXCLUSIVE_KERNEL (needs Linux 6.15 or later: sock_ops programs call module kfuncs since 6.15)"
	printf '%s\n' "$line" >&2
	printf '%s\n' "$line" >"$out/dkms-skip"
	rm -rf "${ch:?}$work"
	say "done ($SECONDS s)"
	exit 0
fi
[ "$rc" -eq 0 ] || die "dkms install exited $rc"
[ "$wanted" -eq 1 ] || die "DKMS built for $release, which is before 6.15 (BUILD_EXCLUSIVE_KERNEL should exclude it)"

ko=$(inch sh -c "ls /lib/modules/$release/updates/dkms/socksplice.ko* 2>/dev/null" || true)
[ "$(printf '%s\n' "$ko" | grep -c .)" -eq 1 ] || die "expected one socksplice.ko* in /lib/modules/$release/updates/dkms, found: ${ko:-none}"
say "modinfo $ko:"
info=$(inch modinfo "$ko")
printf '%s\n' "$info" >&2
grep -q "^vermagic: *$release " <<<"$info" || die "vermagic is not $release"

# DKMS compresses as the kernel's own modules are.
plain=$work/socksplice.ko
case $ko in
*.ko) inch cp "$ko" "$plain" ;;
*.ko.xz) inch sh -c "xz -dc '$ko' >'$plain'" ;;
*.ko.zst) inch sh -c "zstd -qdc '$ko' >'$plain'" ;;
*.ko.gz) inch sh -c "gzip -dc '$ko' >'$plain'" ;;
*) die "unknown module suffix: $ko" ;;
esac
# Module BTF is what the kfuncs are registered with.
sections=$(inch readelf -SW "$plain" | grep -oE ' \.BTF(\.base)? ' | tr -d ' ' | sort -u | tr '\n' ' ')
say "BTF sections: ${sections:-none}"
[[ " $sections" == *" .BTF "* ]] || die "$ko has no .BTF section (CONFIG_DEBUG_INFO_BTF_MODULES, pahole in the root?)"

cp "$ch$plain" "$out/socksplice.ko"
rm -rf "${ch:?}$work"
say "done ($SECONDS s)"
echo "$out/socksplice.ko"
