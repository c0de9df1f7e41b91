#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make vm-test: build (or reuse) the test kernel and the test module, build
# the Go test binaries and the CNI plugins on the host, then run the unit,
# integration and semantics suites inside the guest.
#
#   kernel/vm/test.sh [PACKAGE...]   (default: every package with tests)
#
# Environment: KERNEL (test, the default; debian-new, debian-6.12,
# debian-6.1: kernel/vm/prepare.sh), DEBUG=1 (the lockdep/KASAN test
# kernel), SOCKSPLICE_TEST_RUN (a
# -test.run pattern), SOCKSPLICE_TEST_TIMEOUT (per package), SOCKSPLICE_SOAK,
# VM_TIMEOUT (seconds for the whole guest run).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
say() { printf 'vm-test: %s\n' "$*" >&2; }

bin=$repo/bin/vm
kdir=$("$here/prepare.sh" "$bin")

say "building test binaries"
pkgs=("$@")
# Stock kernels the module cannot serve get a smoke run of the fallback:
# ADD, a transfer checked for integrity, DEL, and the reason in STATUS.
case ${KERNEL:-test} in
debian-6.1 | debian-6.12)
	export SOCKSPLICE_MODULE_REQUIRED=0
	if [ ${#pkgs[@]} -eq 0 ]; then
		pkgs=(test/e2e)
		export SOCKSPLICE_TEST_RUN=${SOCKSPLICE_TEST_RUN:-'^(TestSpliceUnavailable|TestAutoNeverLosesData)$'}
	fi
	;;
esac
# Default: every package with tests but the benchmark's (its tests are the
# report's unit tests; make vm-bench runs the tool itself), the
# runtimes' (podman and containerd need a writable /var and /run, which the
# guest's read-only root lacks) and the installer's (it runs make and go
# build, which need the module proxy the guest cannot reach). Those test
# the plugin against runtimes and files, and the host's make test runs
# them; what differs between kernels is the engines, which test/e2e covers.
if [ ${#pkgs[@]} -eq 0 ]; then
	mapfile -t pkgs < <(go list -tags vmtest -f '{{if or .TestGoFiles .XTestGoFiles}}{{.Dir}}{{end}}' ./... |
		sed "s|^$repo/||" | grep -vx -e 'test/bench' -e 'test/runtime' -e 'pkg/install')
fi
for p in "${pkgs[@]}"; do
	CGO_ENABLED=0 go test -c -tags vmtest -o "$bin/$(echo "$p" | tr / _).test" "./$p"
done
# The plugin builds the upgrade tests install (test/e2e), made here: the
# guest has no toolchain.
case " ${pkgs[*]} " in
*" test/e2e "*) say "building the plugin variants"; go run ./test/variant "$bin/variants" ;;
esac
# The module built a second time, for the module upgrade test
# (test/hardening: TestHardeningModuleUpgrade).
case " ${pkgs[*]} " in
*" test/hardening "*) say "building the module again"; "$here/modules.sh" "$kdir" "$bin/rebuilt" ;;
esac

start=$(date +%s)
set +e
# The lockdep/KASAN kernel (DEBUG=1) runs the suites about five times
# slower than the test kernel.
vm_timeout=3000
if [ "${DEBUG:-}" = 1 ]; then
	vm_timeout=15000
	export SOCKSPLICE_TEST_TIMEOUT=${SOCKSPLICE_TEST_TIMEOUT:-200m}
fi
"$here/run.sh" -t "${VM_TIMEOUT:-$vm_timeout}" -k "$kdir" "$here/guest-tests.sh" "$bin" "${pkgs[@]}"
rc=$?
set -e
say "guest run took $(( $(date +%s) - start )) s, status $rc"
exit $rc
