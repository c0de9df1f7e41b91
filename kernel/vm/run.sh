#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Boot the test kernel under QEMU (TCG) with the host's root filesystem as
# the guest's root (9p, read-only), run one shell script in the guest as
# root, stream its output, and exit with its status.
#
#   kernel/vm/run.sh [-t SECONDS] [-k KERNEL_DIR] SCRIPT [ARGS...]
#
# The guest gets: /proc, /sys, /dev, tmpfs /tmp and /run, cgroup2 at
# /sys/fs/cgroup, bpffs at /sys/fs/bpf, the current directory (read-only,
# at its host path: it may live under the host's /tmp, which the guest's
# tmpfs hides) and $OUT (a writable share, also at its host path) for
# results. KVM is not used: on
# this workplace /dev/kvm hangs ordinary guests; set VM_ACCEL=kvm elsewhere.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
timeout=1800
kdir=
while getopts t:k: o; do
	case $o in
	t) timeout=$OPTARG ;;
	k) kdir=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-t SECONDS] [-k KERNEL_DIR] SCRIPT [ARGS...]" >&2; exit 2; }
script=$(realpath "$1")
shift
[ -n "$kdir" ] || kdir=$("$here/../build.sh")

out=$(mktemp -d /tmp/socksplice-vm.XXXXXX)
trap 'rm -rf "$out"' EXIT
cp "$script" "$out/script.sh" # the guest's /tmp is its own tmpfs
{
	printf 'export OUT=%q\n' "$out"
	# Settings the guest's tests read (the guest starts with a bare env).
	for v in SOCKSPLICE_SOAK SOCKSPLICE_TEST_RUN SOCKSPLICE_TEST_TIMEOUT SOCKSPLICE_MODULE_REQUIRED SOCKSPLICE_HARDENING_BIG \
		SOCKSPLICE_HARDENING_ITERS SOCKSPLICE_HARDENING_SECS; do
		[ -z "${!v:-}" ] || printf 'export %s=%q\n' "$v" "${!v}"
	done
	printf 'cd %q\n' "$PWD"
	printf 'exec sh %q' "$out/script.sh"
	for a in "$@"; do printf ' %q' "$a"; done
	printf '\n'
} >"$out/cmd.sh"

# A stock kernel (kernel/debian/kernel.sh) brings an initramfs for its 9p
# modules, and the rest of its modules for the guest's modprobe.
initrd=() modules=
if [ -f "$kdir/initrd" ]; then
	initrd=(-initrd "$kdir/initrd")
	modules=" socksplice.modules=$kdir/root"
fi

accel=tcg
[ "${VM_ACCEL:-}" = kvm ] && accel=kvm
# Under TCG a guest now and then hangs in early boot (RCU stalls, a vCPU's
# timer never fires) before init runs. Init marks $out/booted at once; a
# guest that has not done so within VM_BOOT_TIMEOUT seconds (a normal boot
# takes about 6) is killed and booted again, up to three times.
boot_limit=${VM_BOOT_TIMEOUT:-300}
# Without ACPI the guest sees one CPU per socket.
set +e
for attempt in 1 2 3; do
	rm -f "$out/booted" "$out/rc"
	timeout --foreground -k 10 "$timeout" qemu-system-x86_64 \
		-machine pc,accel=$accel -cpu max -m 4G -smp 2,sockets=2,cores=1,threads=1 \
		-nographic -no-reboot -serial mon:stdio -display none \
		-kernel "$kdir/bzImage" "${initrd[@]}" \
		-append "console=ttyS0 root=hostroot rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=1048576,cache=loose ro init=$here/init.sh panic=-1 tsc=reliable loglevel=4 socksplice.out=$out socksplice.work=$PWD$modules" \
		-fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
		-device virtio-9p-pci,fsdev=root,mount_tag=hostroot \
		-fsdev local,id=work,path="$PWD",security_model=none,readonly=on,multidevs=remap \
		-device virtio-9p-pci,fsdev=work,mount_tag=work \
		-fsdev local,id=out,path="$out",security_model=none,multidevs=remap \
		-device virtio-9p-pci,fsdev=out,mount_tag=out </dev/null &
	qpid=$!
	waited=0
	while [ ! -f "$out/booted" ] && kill -0 "$qpid" 2>/dev/null && [ "$waited" -lt "$boot_limit" ]; do
		sleep 1
		waited=$((waited + 1))
	done
	if [ ! -f "$out/booted" ] && kill -0 "$qpid" 2>/dev/null; then
		echo "vm: the guest did not reach init within ${boot_limit}s (attempt $attempt of 3)" >&2
		kill "$qpid"
		wait "$qpid"
		qemu=boot-hang
		continue
	fi
	wait "$qpid"
	qemu=$?
	break
done
set -e
if [ ! -f "$out/rc" ]; then
	echo "vm: the guest did not finish (qemu exit $qemu; timeout ${timeout}s)" >&2
	# A guest that panicked or hung still wrote its packages' logs so far
	# (a kernel crash under test/hardening ends the run this way).
	for f in "$out"/*.log; do
		[ -f "$f" ] || continue
		mkdir -p results
		cp "$f" "results/vm-partial-$(basename "$f")"
		echo "vm: the unfinished package log is in results/vm-partial-$(basename "$f")" >&2
	done
	exit 1
fi
rc=$(cat "$out/rc")
if [ -d "$out/results" ]; then
	mkdir -p results
	cp -r "$out/results/." results/
fi
echo "vm: guest exit status $rc" >&2
exit "$rc"
