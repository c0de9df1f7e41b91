#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Runs inside the guest: the module comparison (kernel/vm/bench-compare.sh)
# with the plugins and both modules built for it, writing into the results
# share. The tool loads and unloads the modules itself.
bin=$1
shift
export SOCKSPLICE_CNI_BIN=$bin/cni
exec "$bin/socksplice-bench" -compare-old "$bin/base/socksplice.ko" -compare-new "$bin/module/socksplice.ko" \
	-out "$OUT/results/bench-compare" \
	-virt "QEMU TCG guest (emulated CPUs) on the host below, test kernel" "$@"
