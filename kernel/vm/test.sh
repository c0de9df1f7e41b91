#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make vm-test: build (or reuse) the test kernel and the test module, build
# the Go test binaries and the CNI plugins on the host, then run the unit,
# integration and semantics suites inside the guest.
#
#   kernel/vm/test.sh [PACKAGE...]   (default: every package with tests)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
say() { printf 'vm-test: %s\n' "$*" >&2; }

kdir=$("$repo/kernel/build.sh")
bin=$repo/bin/vm
rm -rf "$bin"
mkdir -p "$bin/cni"
"$here/modules.sh" "$kdir" "$bin"

say "building test binaries and plugins"
pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(conf pkg/cgroup pkg/engine pkg/node test/e2e test/semantics kernel/testmod)
for p in "${pkgs[@]}"; do
	CGO_ENABLED=0 go test -c -tags vmtest -o "$bin/$(echo "$p" | tr / _).test" "./$p"
done
"$here/plugins.sh" "$bin/cni"

start=$(date +%s)
set +e
"$here/run.sh" -t "${VM_TIMEOUT:-3000}" -k "$kdir" "$here/guest-tests.sh" "$bin" "${pkgs[@]}"
rc=$?
set -e
say "guest run took $(( $(date +%s) - start )) s, status $rc"
exit $rc
