#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the socksplice-dkms package (Architecture: all) inside the trixie
# root of kernel/debian/chroot.sh, so this machine needs only debootstrap.
# Prints the path of OUTDIR/socksplice-dkms_VERSION_all.deb.
#
#   kernel/dkms/build-deb.sh OUTDIR
#
# The version is the git history's, in one place: 0.0~gitYYYYMMDD.HASH of
# the last commit that changed what the package holds (kernel/module,
# kernel/include, kernel/dkms), its UTC commit date and 12-digit hash;
# +dirty when those paths have uncommitted changes. The same commit gives
# the same version and, with the changelog dated by that commit
# (SOURCE_DATE_EPOCH), the same package. SOCKSPLICE_DKMS_VERSION overrides
# it (a tree without git).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
say() { printf 'dkms-deb: %s\n' "$*" >&2; }
out=${1:?usage: $0 OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)

paths=(kernel/module kernel/include kernel/dkms)
if [ -n "${SOCKSPLICE_DKMS_VERSION:-}" ]; then
	version=$SOCKSPLICE_DKMS_VERSION
	commit=unknown
	epoch=${SOURCE_DATE_EPOCH:-$(date +%s)}
else
	commit=$(git -C "$repo" log -1 --format=%H -- "${paths[@]}")
	[ -n "$commit" ] || { say "no commit touches ${paths[*]} (set SOCKSPLICE_DKMS_VERSION)"; exit 1; }
	version=0.0~git$(TZ=UTC git -C "$repo" log -1 --format=%cd --date=format-local:%Y%m%d "$commit").$(git -C "$repo" rev-parse --short=12 "$commit")
	epoch=$(git -C "$repo" log -1 --format=%ct "$commit")
	if [ -n "$(git -C "$repo" status --porcelain -- "${paths[@]}")" ]; then
		version=$version+dirty
		say "uncommitted changes in ${paths[*]}: version $version"
	fi
fi

ch=$("$repo/kernel/debian/chroot.sh" trixie)
# A fixed path inside the root: nothing of this machine's paths goes into
# the package.
work=/tmp/socksplice-dkms-build
src=$work/socksplice-dkms-$version
rm -rf "${ch:?}$work"
mkdir -p "$ch$src/module" "$ch$src/debian"
for f in "$repo"/kernel/module/*.[ch] "$repo/kernel/module/Kbuild"; do
	case $f in *.mod.c) continue ;; esac # kbuild's, from a build in place
	cp "$f" "$ch$src/module/"
done
cp -r "$repo/kernel/include" "$ch$src/include"
cp "$repo/kernel/module/dkms.conf" "$ch$src/dkms.conf"
cp -r "$here/debian/." "$ch$src/debian/"
sed -e "s/@VERSION@/$version/" -e "s/@COMMIT@/$commit/" -e "s/@DATE@/$(date -u -R -d "@$epoch")/" \
	"$here/changelog.in" >"$ch$src/debian/changelog"
# Modes as git stores them, whatever this checkout's umask made.
find "$ch$src" -type d -exec chmod 755 {} + -o -type f -exec chmod 644 {} +
chmod 755 "$ch$src/debian/rules"
# And times the commit's: dpkg clamps only those later than the changelog.
find "$ch$src" -exec touch -h -d "@$epoch" {} +

inch() { "$repo/kernel/debian/chroot.sh" --run trixie "$@"; }
# dpkg adds build-essential (g++ among it) to every package's build
# dependencies; this one compiles nothing and the root has no g++, so that
# one alone is let go, the package's own are checked.
unmet=$(inch sh -c "cd $src && dpkg-checkbuilddeps 2>&1" | sed -n 's/.*unmet build dependencies: //p' || true)
unmet=$(printf '%s\n' $unmet | grep -vx 'build-essential:native' || true)
[ -z "$unmet" ] || { say "missing in $ch: $unmet"; exit 1; }

say "building socksplice-dkms $version in $ch"
inch sh -c "cd $src && dpkg-buildpackage -b -us -uc -d" >&2
deb=socksplice-dkms_${version}_all.deb
cp "$ch$work/$deb" "$out/$deb"
rm -rf "${ch:?}$work"
echo "$out/$deb"
