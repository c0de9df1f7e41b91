#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make vm-bench: the benchmark tool inside the test kernel under QEMU, so
# that the paths only the test kernel has (SMC-D loopback, the splice
# engine) get their columns. Results land in results/bench-vm/.
#
#   kernel/vm/bench.sh [BENCH FLAGS...]   (default: -runs 3 -enroll 20)
#
# With -sockperf, the tool's sockperf mode (make vm-bench-sockperf):
# results/bench-vm/sockperf.{json,md} and charts. sockperf, like every
# other program the guest runs, is the host's: the guest's root is the
# host's root over 9p.
#
# Under TCG every instruction is emulated: absolute figures mean nothing
# and even ratios are indicative only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
say() { printf 'vm-bench: %s\n' "$*" >&2; }

bin=$repo/bin/vm-bench
kdir=$("$here/prepare.sh" "$bin")
say "building the benchmark"
CGO_ENABLED=0 go build -o "$bin/socksplice-bench" ./test/bench

args=("$@")
[ ${#args[@]} -gt 0 ] || args=(-runs 3 -enroll 20)
start=$(date +%s)
set +e
guest=$here/guest-bench.sh
# VM_PROFILE=1 (make vm-bench-profile): the sockperf mode under perf.
[ "${VM_PROFILE:-}" != 1 ] || guest=$here/guest-bench-profile.sh
"$here/run.sh" -t "${VM_TIMEOUT:-3600}" -k "$kdir" "$guest" "$bin" "${args[@]}"
rc=$?
set -e
say "guest run took $(( $(date +%s) - start )) s, status $rc; results in results/bench-vm/"
exit $rc
