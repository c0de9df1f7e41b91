#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Runs inside the guest: load the test module, run each test binary from
# its package directory, fail on a failing package or on a WARN/BUG/KASAN
# line in the kernel log.
bin=$1
shift
repo=$(pwd)
export SOCKSPLICE_CNI_BIN=$bin/cni SOCKSPLICE_RESULTS=$OUT/results
# The plugin builds the upgrade tests install (kernel/vm/test.sh).
export SOCKSPLICE_CNI_VARIANTS=$bin/variants
# test/hardening's unload test removes the module and loads it again.
export SOCKSPLICE_MODULE_KO=$bin/module/socksplice.ko
# The module built a second time (kernel/vm/test.sh), which the module
# upgrade test installs in the loaded one's place.
[ ! -f "$bin/rebuilt/module/socksplice.ko" ] || export SOCKSPLICE_MODULE_REBUILT_KO=$bin/rebuilt/module/socksplice.ko
# SOCKSPLICE_SOAK (make vm-test SOAK=1, or a duration for the splice
# soak's length) selects the long tests' full lengths; unset, CI's short
# ones (testenv.Soak).
# Per package; the lockdep/KASAN kernel runs about five times slower.
export SOCKSPLICE_TEST_TIMEOUT=${SOCKSPLICE_TEST_TIMEOUT:-40m}
mkdir -p "$SOCKSPLICE_RESULTS"
status=0
# failures LOG: each failing test's log and error lines (the last 20
# "file_test.go:N:" lines under its "=== RUN/NAME" headers), so that the
# reason ends the output even when the suite's pass lines run to hundreds.
failures() {
	awk '
	/^=== (RUN|NAME|CONT|PAUSE) / { cur = $3; next }
	/^ *--- FAIL: / { if (!($3 in bad)) { bad[$3] = 1; order[++nbad] = $3 }; next }
	/^ *--- (PASS|SKIP): / { next }
	cur != "" && /^ +[^ ]+_test\.go:[0-9]+: / { n[cur]++; line[cur, n[cur]] = $0 }
	/^panic: |^\*\*\* Test killed|test timed out/ { print }
	END {
		for (i = 1; i <= nbad; i++) {
			t = order[i]; print "--- FAIL: " t
			for (j = (n[t] > 20 ? n[t] - 19 : 1); j <= n[t]; j++) print line[t, j]
		}
	}' "$1" | head -120
}
echo "guest: $(uname -a)"
marker="socksplice-vm: tests begin $$"
echo "$marker" >/dev/kmsg
# A kernel the module cannot serve (SOCKSPLICE_MODULE_REQUIRED=0: stock
# 6.12, 6.1) runs without it; the suites then check the fallback.
for m in testmod/socksplice_testmod.ko module/socksplice.ko; do
	d=$bin/$(dirname "$m")
	[ ! -f "$d/dkms-skip" ] || echo "vm: $(cat "$d/dkms-skip")"
	if [ ! -f "$bin/$m" ]; then
		echo "vm: no $(basename "$m"): $(cat "$d/build-failed" 2>/dev/null)"
	elif /bin/busybox insmod "$bin/$m"; then
		continue
	else
		echo "vm: insmod $m failed; the kernel says: $(dmesg | grep -i socksplice | tail -2)"
	fi
	if [ "${SOCKSPLICE_MODULE_REQUIRED:-1}" = 1 ]; then
		echo "FAIL: $m is required on this kernel"
		status=1
	fi
done
for p in "$@"; do
	name=$(echo "$p" | tr / _)
	log=$OUT/$name.log
	start=$(date +%s)
	if (cd "$repo/$p" && "$bin/$name.test" -test.v -test.count=1 -test.timeout="$SOCKSPLICE_TEST_TIMEOUT" ${SOCKSPLICE_TEST_RUN:+-test.run="$SOCKSPLICE_TEST_RUN"} >"$log" 2>&1); then
		echo "ok  	github.com/socksplice/socksplice/$p	$(( $(date +%s) - start ))s (vm $(uname -r))"
	else
		echo "--- vm: $p failed; its log:"
		tail -40 "$log"
		echo "--- vm: $p: the failing tests and their last lines:"
		failures "$log"
		echo "FAIL	github.com/socksplice/socksplice/$p	$(( $(date +%s) - start ))s (vm $(uname -r))"
		status=1
	fi
	# MPTCP's cases, each named in the run's log (the issue's proof).
	grep -E -- '--- (PASS|FAIL|SKIP): TestMPTCP' "$log" | sed 's/^ */    /'
	cp "$log" "$SOCKSPLICE_RESULTS/vm-$name.log" 2>/dev/null
done
# The semantics matrix per path, when the suite ran: "same" everywhere is
# the splice path's claim.
for md in "$SOCKSPLICE_RESULTS"/semantics.md "$SOCKSPLICE_RESULTS"/semantics-hardening.md; do
	[ -f "$md" ] || continue
	what=semantics
	[ "${md##*/}" = semantics.md ] || what="semantics (hardening)"
	awk -F'|' -v what="$what" '
	/^\| case / { for (i = 4; i < NF; i++) { h = $i; gsub(/ /, "", h); name[i] = h }; next }
	/^\| [a-z]/ { for (i = 4; i < NF; i++) { v = $i; gsub(/ /, "", v); n[i]++; if (v == "same") same[i]++ } }
	END { for (i = 4; i in name; i++) printf "%s, %s path: %d of %d cells the same as TCP\n", what, name[i], same[i], n[i] }' "$md"
done
# What auto picked here, as the suites' self-test saw it.
grep -h -o 'auto on this node: .*' "$OUT"/*.log 2>/dev/null | sort -u | head -3
# Taints other than an out-of-tree (O, 4096) or unsigned (E, 8192)
# module's mean the kernel met a problem.
taint=$(cat /proc/sys/kernel/tainted)
echo "vm: kernel taint $taint"
if [ $((taint & ~(4096 | 8192))) -ne 0 ]; then
	echo "FAIL: the kernel is tainted $taint (beyond out-of-tree/unsigned modules)"
	status=1
fi
# Only what the kernel logged since the tests began counts: the debug
# kernel's boot banner itself says "RCU lockdep checking is enabled". If
# the ring buffer has wrapped past the marker, all of it is from the tests.
splat='WARNING:|BUG:|KASAN|Oops|general protection|refcount_t:|lockdep|possible circular|suspicious RCU'
klog=$(dmesg)
case $klog in
*"$marker"*) klog=$(printf '%s\n' "$klog" | awk -v m="$marker" 'seen; index($0, m) { seen = 1 }') ;;
esac
if printf '%s\n' "$klog" | grep -E "$splat" >/dev/null; then
	echo "FAIL: the guest kernel log has warnings:"
	printf '%s\n' "$klog" | grep -E -B2 -A20 "$splat" | head -80
	status=1
fi
exit $status
