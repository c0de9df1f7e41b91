#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build (or reuse) the socksplice test kernel: Debian's linux-source-6.12,
# our patches, tinyconfig plus config/test.config (plus config/debug.config
# with DEBUG=1). The result is cached under $SOCKSPLICE_CACHE (default
# ~/.cache/socksplice) by a hash of source version, patches and config, so a
# second run reuses it. Prints the cache directory (bzImage, and the build
# tree for out-of-tree modules in tree/) on stdout; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
say() { printf 'kernel: %s\n' "$*" >&2; }

pkg=linux-source-6.12
tarball=/usr/src/$pkg.tar.xz
if [ ! -f "$tarball" ]; then
	say "$tarball missing: install it with: apt-get install $pkg"
	exit 1
fi
for tool in make gcc flex bison bc pahole; do
	command -v "$tool" >/dev/null || { say "missing tool $tool (apt-get install build-essential flex bison bc dwarves libelf-dev libssl-dev)"; exit 1; }
done

variant=test
configs=("$here/config/test.config")
if [ "${DEBUG:-}" = 1 ]; then
	variant=debug
	configs+=("$here/config/debug.config")
fi
version=$(dpkg-query -W -f='${Version}' "$pkg")
key=$( { echo "$version"; cat "$here"/patches/*.patch "${configs[@]}"; } | sha256sum | cut -c1-16)
cache=${SOCKSPLICE_CACHE:-$HOME/.cache/socksplice}
out=$cache/kernel-$variant-$key
if [ -f "$out/bzImage" ]; then
	say "reusing $out"
	echo "$out"
	exit 0
fi

work=$out.partial
rm -rf "$work"
mkdir -p "$work"
say "extracting $pkg $version into $work"
tar -C "$work" -xf "$tarball"
mv "$work/$pkg" "$work/tree"
tree=$work/tree
for p in "$here"/patches/*.patch; do
	say "applying $(basename "$p")"
	patch -d "$tree" -p1 --quiet --no-backup-if-mismatch <"$p"
done

say "configuring ($variant)"
make -C "$tree" -s tinyconfig >&2
(cd "$tree" && ./scripts/kconfig/merge_config.sh -m .config "${configs[@]}" >/dev/null)
make -C "$tree" -s olddefconfig >&2
# Kconfig drops an option whose dependencies are missing: say which.
missing=0
for f in "${configs[@]}"; do
	while IFS= read -r line; do
		case "$line" in CONFIG_*=*) ;; *) continue ;; esac
		if ! grep -qx "$line" "$tree/.config"; then
			say "config did not take: $line"
			missing=1
		fi
	done <"$f"
done
[ "$missing" = 0 ] || exit 1

start=$(date +%s)
say "building bzImage and modules with make -j$(nproc) (about 5 minutes on 2 cores)"
make -C "$tree" -s -j"$(nproc)" bzImage modules >&2
say "built in $(( $(date +%s) - start )) s"
cp "$tree/arch/x86/boot/bzImage" "$work/bzImage"
echo "$version $variant $key" >"$work/VERSION"
mv "$work" "$out"
echo "$out"
