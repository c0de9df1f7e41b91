#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make vm-bench-compare: the splice module of the working tree against the
# one at BASE (a git revision, default 6962f62: the module before the
# hardening of issue 14), side by side in ONE test-kernel guest. Both are
# built against the same test kernel tree; the guest alternates them
# (load, measure, unload; order old/new, then new/old) for several rounds
# and prints each workload's medians and the ratio new/old
# (test/bench/compare.go). Results land in results/bench-compare/.
#
#   BASE=REV kernel/vm/bench-compare.sh [BENCH FLAGS...]
#
# Flags go to the benchmark tool: -rounds N (3), -workloads LIST
# (sockperf:1024,sockperf:64,stream:65536@splice), -paths LIST
# (splice,splice+busypoll), -duration D (3s), -runs N per turn (1),
# -warmup D, -cpus C,S, -unload-timeout D (90s). Under TCG the ratios are
# indicative only: the whole guest is emulated.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
say() { printf 'vm-bench-compare: %s\n' "$*" >&2; }

# The guest's vCPUs get the host's CPUs first (QEMU inherits this): a
# busy host's work otherwise lands on one module's turn and not the
# other's. BENCH_NICE=0 turns it off.
if [ "$(id -u)" = 0 ] && [ "${BENCH_NICE:-1}" != 0 ]; then
	renice -n -20 -p $$ >/dev/null
fi

base=${BASE:-6962f62}
case ${KERNEL:-test} in
test) ;;
*) say "KERNEL=$KERNEL: the comparison runs on the test kernel only"; exit 2 ;;
esac
rev=$(git rev-parse --verify --short "$base^{commit}") || { say "BASE=$base is not a git revision"; exit 2; }

bin=$repo/bin/vm-bench-compare
# The test kernel, the working tree's module ($bin/module) and the plugins.
kdir=$("$here/prepare.sh" "$bin")

# The module at BASE, from git, built against the same tree as
# modules.sh builds the working tree's (without -Werror: old code is not
# ours to change).
src=$bin/base-src
rm -rf "$src"
mkdir -p "$src" "$bin/base"
say "building the module at $base ($rev) against $kdir/tree"
git archive "$rev" kernel/module kernel/include | tar -x -C "$src"
make -s -C "$kdir/tree" M="$src/kernel/module" modules >&2
cp "$src/kernel/module/socksplice.ko" "$bin/base/socksplice.ko"

say "building the benchmark"
CGO_ENABLED=0 go build -o "$bin/socksplice-bench" ./test/bench

# The new module's name: HEAD, "-dirty" where the module differs from it.
new=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- kernel/module kernel/include || new=$new-dirty
args=(-compare-labels "$rev,$new" "$@")
start=$(date +%s)
set +e
"$here/run.sh" -t "${VM_TIMEOUT:-3600}" -k "$kdir" "$here/guest-bench-compare.sh" "$bin" "${args[@]}"
rc=$?
set -e
say "guest run took $(( $(date +%s) - start )) s, status $rc; results in results/bench-compare/"
exit $rc
