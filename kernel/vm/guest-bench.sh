#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Runs inside the guest: the benchmark with the plugins built for it,
# writing into the results share.
bin=$1
shift
export SOCKSPLICE_CNI_BIN=$bin/cni
# The splice engine's module: its paths run only when it loads.
/bin/busybox insmod "$bin/module/socksplice.ko" || echo "vm-bench: insmod socksplice.ko failed" >&2
exec "$bin/socksplice-bench" -out "$OUT/results/bench-vm" \
	-virt "QEMU TCG guest (emulated CPUs) on the host below, test kernel" "$@"
