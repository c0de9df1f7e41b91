#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# PID 1 of the test guest: mount what the tests need, run $OUT/cmd.sh,
# store its status, reboot (QEMU runs with -no-reboot, so it exits).
PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH HOME=/tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mkdir -p /run/netns /run/lock
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
out=$(sed -n 's/.*socksplice\.out=\([^ ]*\).*/\1/p' /proc/cmdline)
mkdir -p /tmp/out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576 out /tmp/out
: >/tmp/out/booted # run.sh's boot watchdog waits for this
# Also at the host's path, so scripts can use the same $OUT on both sides.
mkdir -p "$out"
mount --bind /tmp/out "$out" 2>/dev/null || mount -t 9p -o trans=virtio,version=9p2000.L out "$out"
# The working directory (the repository) at its host path, read-only.
work=$(sed -n 's/.*socksplice\.work=\([^ ]*\).*/\1/p' /proc/cmdline)
mkdir -p "$work" 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576,cache=loose,ro work "$work"
# A stock kernel's modules (veth, bridge and the like): the kernel's
# request_module runs a modprobe that looks in the image's tree (the host
# has no /lib/modules to mount it on).
mods=$(sed -n 's/.*socksplice\.modules=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$mods" ]; then
	printf '#!/bin/sh\nexec /sbin/modprobe -d %s "$@"\n' "$mods" >/tmp/modprobe
	chmod +x /tmp/modprobe
	echo /tmp/modprobe >/proc/sys/kernel/modprobe
fi
ip link set lo up
echo "guest: $(uname -r), $(nproc) CPUs, $(sed -n 's/MemTotal: *//p' /proc/meminfo)"
sh /tmp/out/cmd.sh </dev/null
echo $? >/tmp/out/rc
sync
umount /tmp/out 2>/dev/null
/bin/busybox reboot -f
