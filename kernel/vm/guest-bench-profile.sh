#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Runs inside the guest (make vm-bench-profile): the benchmark's sockperf
# mode under perf record on every CPU, then one flat profile per path,
# topology, workload and end, cut out of the whole by the PIDs the tool
# logs for each run (SOCKSPLICE_BENCH_PIDS): results/bench-vm/profile/.
# There is no PMU under TCG: perf samples on the guest's cpu-clock.
bin=$1
shift
export SOCKSPLICE_CNI_BIN=$bin/cni SOCKSPLICE_BENCH_PIDS=1
command -v perf >/dev/null || { echo "vm-bench-profile: no perf on the host (apt-get install linux-perf)" >&2; exit 1; }
/bin/busybox insmod "$bin/module/socksplice.ko" || echo "vm-bench-profile: insmod socksplice.ko failed" >&2
# Kernel and module symbols for the reports.
echo 0 >/proc/sys/kernel/kptr_restrict
echo -1 >/proc/sys/kernel/perf_event_paranoid
res=$OUT/results/bench-vm
prof=$res/profile
mkdir -p "$prof"
data=/tmp/perf.data
perf record -q -a -F 997 -o "$data" -- "$bin/socksplice-bench" -out "$res" \
	-virt "QEMU TCG guest (emulated CPUs) on the host below, test kernel, under perf record" \
	-sockperf "$@" 2>/tmp/bench.log
rc=$?
cat /tmp/bench.log >&2
# The data and the guest's symbols, for other reports on the host
# (perf report -i perf.data --kallsyms kallsyms ...).
cp "$data" "$prof/perf.data"
cat /proc/kallsyms >"$prof/kallsyms"
# "bench:   pids PATH TOPO WORKLOAD: server S client C", one per run.
sed -n 's/^bench:   pids \([^ ]*\) \([^ ]*\) \([^ :]*:[0-9]*\): server \([0-9]*\) client \([0-9]*\)$/\1 \2 \3 \4 \5/p' /tmp/bench.log >/tmp/pids
[ -s /tmp/pids ] || { echo "vm-bench-profile: the tool logged no PIDs" >&2; exit 1; }
# Every process's samples per symbol, once; each end's share below is
# of that end's own samples (perf's --pid filter loses the samples taken
# before a process's exec, so the split is done here).
perf report -i "$data" --stdio --no-children --sort pid,sym --percent-limit 0 2>/dev/null |
	grep -v '^#' | grep -v '^$' >/tmp/bypid
cut -d' ' -f1-3 /tmp/pids | sort -u | while read -r path topo w; do
	for end in server client; do
		col=4
		[ $end = client ] && col=5
		pids=$(awk -v p="$path" -v t="$topo" -v w="$w" -v c=$col '$1 == p && $2 == t && $3 == w { printf "%s%s", s, $c; s = "," }' /tmp/pids)
		f=$prof/$topo-$(echo "$w" | tr : -)-$(echo "$path" | tr + -)-$end.txt
		# "  2.31%  178:sockperf  [k] rep_movs_alternative"
		awk -v pids="$pids" '
			BEGIN { n = split(pids, a, ","); for (i = 1; i <= n; i++) want[a[i]] = 1 }
			{
				split($2, pc, ":")
				if (!(pc[1] in want)) next
				pct = $1; sub(/%$/, "", pct)
				sym = $3; for (i = 4; i <= NF; i++) sym = sym " " $i
				share[sym] += pct; total += pct
			}
			END {
				printf "# %s, sockperf %s (PIDs %s): %.2f %% of all samples; per symbol, %% of its own\n", title, end, pids, total
				for (s in share) if (total > 0 && 100 * share[s] / total >= 0.5) printf "%6.2f%%  %s\n", 100 * share[s] / total, s
			}' title="$path, $topo, $w" end=$end /tmp/bypid | sort -r -n -k1,1 >"$f.tmp"
		{ grep '^#' "$f.tmp"; grep -v '^#' "$f.tmp"; } >"$f"
		rm -f "$f.tmp"
	done
done
ls "$prof" >&2
exit $rc
