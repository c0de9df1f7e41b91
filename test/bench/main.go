// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Command bench measures every path side by side in one run: plain TCP
// (the baseline), the socksplice engines the kernel has, and the peers an
// application could switch to (AF_UNIX, SMC-D loopback). It runs
// request/response and stream workloads in two topologies made by the
// real CNI chain, redis GET at application level, a sockperf cross-check
// and the plugin's own ADD/DEL cost, and writes bench.json, bench.md and
// PNG charts. Ratios to the baseline are the result; absolute numbers
// drift on a shared machine.
//
//	bench [-quick] [-out DIR]
//	bench -compare-old OLD.ko -compare-new NEW.ko [-rounds N] [-workloads ...]
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/test/testenv"
)

// options are the command line's.
type options struct {
	quick         bool
	out           string
	runs, enroll  int
	dur           time.Duration
	cpus, virt    string
	noApps, noCNI bool
	warmup        time.Duration
	cmp           compareOptions
	sp            sockperfOptions
	// The cost when nothing is paired (overhead.go): only that with
	// overheadOnly, none with noOverhead.
	overheadOnly, noOverhead bool
	ohRounds                 int
	ohDur                    time.Duration
}

func main() {
	testenv.HelperMain() // before flag parsing: a helper has no flags
	var o options
	flag.BoolVar(&o.quick, "quick", false, "a short subset for CI: fails only when a path cannot run at all")
	flag.StringVar(&o.out, "out", "", "results directory (default results/bench, or results/bench-quick with -quick)")
	flag.IntVar(&o.runs, "runs", 0, "measured runs per point (default 5, quick 1)")
	flag.DurationVar(&o.dur, "duration", 0, "length of one measured run (default 1s, quick 300ms)")
	flag.StringVar(&o.cpus, "cpus", "0,1", "client,server CPU")
	flag.StringVar(&o.virt, "virt", "", "how the machine is virtualized, for the report (default: detected)")
	flag.BoolVar(&o.noApps, "no-apps", false, "skip redis and sockperf")
	flag.BoolVar(&o.noCNI, "no-cni", false, "skip the plugin's ADD/DEL cost")
	flag.BoolVar(&o.overheadOnly, "overhead", false, "measure only the cost socksplice adds to flows it does not pair (overhead.go)")
	flag.BoolVar(&o.noOverhead, "no-overhead", false, "skip the cost to flows it does not pair")
	flag.IntVar(&o.ohRounds, "overhead-rounds", 0, "rounds of the unpaired-flow cost (default 48, quick 2)")
	flag.DurationVar(&o.ohDur, "overhead-duration", 0, "length of one unpaired-flow cost run (default 500ms, quick 300ms)")
	flag.IntVar(&o.enroll, "enroll", 0, "containers to enroll for the plugin cost (default 200, quick 20)")
	flag.DurationVar(&o.warmup, "warmup", 0, "length of the discarded warm-up run (default 300ms, quick 100ms, compare 500ms)")
	// The module comparison (make vm-bench-compare; compare.go).
	flag.StringVar(&o.cmp.oldKo, "compare-old", "", "compare the splice module file `KO` (old) ...")
	flag.StringVar(&o.cmp.newKo, "compare-new", "", "... against this one (new), alternating them in this kernel")
	flag.StringVar(&o.cmp.labels, "compare-labels", "old,new", "the two modules' names in the report")
	flag.IntVar(&o.cmp.rounds, "rounds", 3, "compare: rounds; each module runs once per round, order alternating")
	flag.StringVar(&o.cmp.workloads, "workloads", "sockperf:1024,sockperf:64,stream:65536@splice,close:64@splice",
		"compare: kind:bytes[@path], comma separated; kind is sockperf (ping-pong), rr (the tool's), close (rr, the server closing first) or stream")
	flag.StringVar(&o.cmp.paths, "paths", PathSplice+","+PathSpliceBP, "compare: the splice paths a workload without @path runs on")
	flag.DurationVar(&o.cmp.unloadTimeout, "unload-timeout", 90*time.Second, "compare: how long to retry delete_module")
	flag.BoolVar(&o.cmp.liveNetns, "live-netns", true, "compare: first try the unload with the containers' namespaces alive (DEL run, programs unpinned)")
	flag.StringVar(&o.cmp.measure, "measure", "", "compare's child: run the workloads once on the loaded module, samples to `FILE`")
	// The sockperf mode (make vm-bench-sockperf; sockperf.go).
	flag.BoolVar(&o.sp.on, "sockperf", false, "sockperf mode: socksplice's paths against plain TCP measured with sockperf (default 3 runs of 5 s per case)")
	flag.StringVar(&o.sp.topos, "sockperf-topologies", spDefaultTopos, "sockperf mode: topologies, comma separated")
	flag.StringVar(&o.sp.paths, "sockperf-paths", spDefaultPaths, "sockperf mode: paths, comma separated (unix runs the tool's own ends)")
	flag.StringVar(&o.sp.workloads, "sockperf-workloads", spDefaultWorkloads, "sockperf mode: pp:BYTES (ping-pong) or tp:BYTES (throughput), comma separated")
	flag.Parse()
	o.cmp.virt = o.virt
	switch {
	case o.sp.on:
		testenv.Main("bench-sockperf", func(r testenv.T) { runSockperfMode(r, o) })
	case o.cmp.measure != "":
		testenv.Main("bench-measure", func(r testenv.T) { measureModule(r, o.cmp, compareSettings(r, o)) })
	case o.cmp.oldKo != "" || o.cmp.newKo != "":
		if o.cmp.oldKo == "" || o.cmp.newKo == "" {
			fmt.Fprintln(os.Stderr, "bench: -compare-old and -compare-new go together")
			os.Exit(2)
		}
		if o.out == "" {
			o.out = "results/bench-compare"
		}
		testenv.Main("bench-compare", func(r testenv.T) { compareModules(r, o.cmp, compareSettings(r, o), o.out) })
	default:
		testenv.Main("bench", func(r testenv.T) { run(r, o) })
	}
}

// compareSettings are the comparison's knobs: one run of 3 s per case and
// turn unless the flags say otherwise.
func compareSettings(r testenv.T, o options) Settings {
	set := Settings{Runs: 1, Duration: 3 * time.Second, Warmup: 500 * time.Millisecond}
	o.apply(r, &set)
	return set
}

// apply puts the flags -runs, -duration, -warmup and -cpus that were
// given into set.
func (o options) apply(r testenv.T, set *Settings) {
	if o.runs > 0 {
		set.Runs = o.runs
	}
	if o.dur > 0 {
		set.Duration = o.dur
	}
	if o.warmup > 0 {
		set.Warmup = o.warmup
	}
	if _, err := fmt.Sscanf(o.cpus, "%d,%d", &set.ClientCPU, &set.ServerCPU); err != nil {
		r.Fatalf("-cpus %q: want two CPU numbers, e.g. 0,1", o.cpus)
	}
}

// run measures everything o asks for and writes the report; r fails the
// run.
func run(r testenv.T, o options) {
	set := Settings{Runs: 5, Duration: time.Second, Warmup: 300 * time.Millisecond,
		RRSizes: []int{1, 64, 1024, 16 << 10, 64 << 10}, StreamSizes: []int{1 << 10, 4 << 10, 16 << 10, 64 << 10}}
	enrollN, samples, redisReq := 200, 20, 20000
	if o.quick {
		set = Settings{Runs: 1, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond,
			RRSizes: []int{64, 1024}, StreamSizes: []int{1 << 10, 64 << 10}}
		enrollN, samples, redisReq = 20, 5, 2000
	}
	o.apply(r, &set)
	if o.enroll > 0 {
		enrollN = o.enroll
	}
	// Many short rounds rather than a few long ones: on a shared machine
	// a run's CPU time per connection moves with the neighbours' bursts,
	// and the interval of the median narrows with the rounds.
	ohSet := OverheadSettings{Rounds: 48, Duration: 500 * time.Millisecond, Warmup: 300 * time.Millisecond, Size: 64}
	if o.quick {
		ohSet.Rounds, ohSet.Duration, ohSet.Warmup = 2, 300*time.Millisecond, 100*time.Millisecond
	}
	if o.ohRounds > 0 {
		ohSet.Rounds = o.ohRounds
	}
	if o.ohDur > 0 {
		ohSet.Duration = o.ohDur
	}
	if o.out == "" {
		o.out = "results/bench"
		if o.overheadOnly {
			o.out = "results/bench-overhead"
		}
		if o.quick {
			o.out += "-quick"
		}
	}

	rep := &Report{Started: time.Now().UTC(), Quick: o.quick, Machine: machine(o.virt), Settings: set}
	f := engine.Probe()
	rep.Paths = availability(f, allPaths)
	for _, p := range rep.Paths {
		if !p.Available {
			logf("path %s: not available: %s", p.Name, p.Reason)
		}
	}
	b := &bench{t: r, set: set, defs: allPaths, rep: rep}
	if o.overheadOnly {
		b.overhead(ohSet)
		finish(r, o, rep)
		return
	}
	b.sites = buildSites(r, allPaths, rep.Paths)
	for _, topo := range []string{TopoLoopback, TopoVeth} {
		for _, size := range set.RRSizes {
			rep.RR = append(rep.RR, b.point("rr", topo, size)...)
		}
		for _, size := range set.StreamSizes {
			rep.Stream = append(rep.Stream, b.point("stream", topo, size)...)
		}
	}
	if !o.noApps {
		b.crossCheck()
		b.redis(redisReq)
	}
	if !o.noOverhead {
		b.overhead(ohSet)
	}
	if !o.noCNI {
		logf("plugin cost: %d cold/warm samples, enrolling %d containers", samples, enrollN)
		rep.CNI = measureCNI(r, enrollN, samples)
		if rep.CNI.Err != "" {
			rep.Failures = append(rep.Failures, "plugin cost: "+rep.CNI.Err)
		}
	}
	finish(r, o, rep)
}

// finish writes the report and fails the run if a path could not run.
func finish(r testenv.T, o options, rep *Report) {
	rep.Elapsed = time.Since(rep.Started).Round(time.Second)
	if err := writeReport(o.out, rep); err != nil {
		r.Fatal(err)
	}
	fmt.Println(markdown(rep))
	logf("wrote %s/bench.{json,md} and charts in %v", o.out, rep.Elapsed)
	if len(rep.Failures) > 0 {
		r.Fatalf("%d path(s) could not run:\n  %s", len(rep.Failures), strings.Join(rep.Failures, "\n  "))
	}
}

func logf(f string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+f+"\n", a...) }

func machine(virt string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Virt: virt}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	hyper := false
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(l, ":")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if k == "model name" && m.CPUModel == "" {
				m.CPUModel = v
			}
			if k == "flags" && strings.Contains(" "+v+" ", " hypervisor ") {
				hyper = true
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		fmt.Sscanf(string(b), "MemTotal: %d kB", &kb)
		m.MemGiB = (kb + 512<<10) >> 20
	}
	if m.Virt == "" {
		m.Virt = "bare metal"
		if hyper {
			m.Virt = "virtual machine"
			if b, err := os.ReadFile("/sys/class/dmi/id/sys_vendor"); err == nil && strings.TrimSpace(string(b)) != "" {
				m.Virt += " (" + strings.TrimSpace(string(b)) + ")"
			}
		}
	}
	return m
}
