#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# PID 1 of a stock kernel's initramfs: load the 9p modules, mount the
# host's root as kernel/vm/run.sh describes it and hand over to the init=
# script there (kernel/vm/init.sh), as the test kernel (9p built in) does
# without an initramfs.
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do
	insmod "/modules/$m" || echo "initrd: insmod $m failed"
done
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576,cache=loose,ro hostroot /newroot; then
	echo "initrd: cannot mount the host root over 9p"
	exec sh
fi
init=$(sed -n 's/.* init=\([^ ]*\).*/\1/p' /proc/cmdline)
umount /dev /proc
exec switch_root /newroot "$init"
