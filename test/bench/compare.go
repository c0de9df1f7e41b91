// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

// The splice module against another build of itself, side by side in one
// run (make vm-bench-compare): the parent loads one module, runs the
// workloads in a child invocation of this binary that makes and tears
// down its own containers and networks (so that no BPF program, link or
// socket of the run outlives it), unloads the module, loads the other,
// and so on for several rounds in alternating order. It prints, per
// workload, each module's median and the ratio new/old, and writes
// compare.json and compare.md.

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/test/testenv"
)

// compareOptions are the command line's for the comparison.
type compareOptions struct {
	oldKo, newKo     string
	labels           string
	rounds           int
	workloads, paths string
	unloadTimeout    time.Duration
	measure          string // child mode: write samples here
	virt             string // for the report
	// liveNetns: unload while the containers' network namespaces still
	// exist (DEL done, programs unpinned), before they are deleted.
	liveNetns bool
}

// cmpCase is one workload on one splice path, over veth between two
// containers.
type cmpCase struct {
	// "sockperf" (sockperf ping-pong), "rr" (the tool's request/response),
	// "close" (rr whose server closes first: the accepted socket ends in
	// TIME_WAIT) or "stream"
	Kind string `json:"kind"`
	Size int    `json:"size"`
	Path string `json:"path"`
}

func (c cmpCase) String() string {
	return fmt.Sprintf("%s %s %s", c.Kind, sizeText(c.Size), c.Path)
}

// unit is what a case's figure counts; higher is better for all.
func (c cmpCase) unit() string {
	if c.Kind == "stream" {
		return "Gbit/s"
	}
	return "txn/s"
}

func sizeText(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// parseCases reads -workloads ("kind:size[@path]", comma separated) and
// -paths: a workload without @path runs on every path.
func parseCases(workloads, paths string) ([]cmpCase, error) {
	ps, err := parseNames("-paths", paths, []string{PathSplice, PathSpliceBP})
	if err != nil {
		return nil, err
	}
	var out []cmpCase
	for _, w := range commaList(workloads) {
		spec, only, restricted := strings.Cut(w, "@")
		kind, size, ok := strings.Cut(spec, ":")
		n, err := strconv.Atoi(size)
		if !ok || err != nil || n <= 0 {
			return nil, fmt.Errorf("-workloads: %q: want kind:bytes[@path], e.g. sockperf:1024 or stream:65536@splice", w)
		}
		switch kind {
		case "sockperf", "rr", "stream", "close":
		default:
			return nil, fmt.Errorf("-workloads: %q: kind is sockperf, rr, close or stream", w)
		}
		if kind == "sockperf" && n < 14 {
			return nil, fmt.Errorf("-workloads: %q: sockperf messages are at least 14 bytes", w)
		}
		for _, p := range ps {
			if !restricted || only == p {
				out = append(out, cmpCase{Kind: kind, Size: n, Path: p})
			}
		}
		if restricted && only != PathSplice && only != PathSpliceBP {
			return nil, fmt.Errorf("-workloads: %q: unknown path %q", w, only)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no workload to run (-workloads, -paths)")
	}
	return out, nil
}

// cmpSample is one measured run of one case.
type cmpSample struct {
	Case     cmpCase `json:"case"`
	Value    float64 `json:"value"`               // txn/s or Gbit/s
	LatUs    float64 `json:"latencyUs,omitempty"` // sockperf: mean RTT/2
	Verified string  `json:"verified,omitempty"`
	Err      string  `json:"err,omitempty"`
}

// measureModule is the child: it runs every case runs times on the module
// that is loaded, in containers it makes and removes, and writes the
// samples to o.measure.
func measureModule(r testenv.T, o compareOptions, set Settings) {
	cases, err := parseCases(o.workloads, o.paths)
	if err != nil {
		r.Fatal(err)
	}
	testenv.RequireSpliceModule(r)
	var paths []PathInfo
	for _, c := range cases {
		if !available(paths, c.Path) {
			paths = append(paths, PathInfo{Name: c.Path, Available: true})
		}
	}
	b := &bench{t: r, set: set, defs: allPaths, sites: buildSites(r, allPaths, paths)}
	var out []cmpSample
	for _, c := range cases {
		s := b.sites[c.Path]
		// A discarded warm-up with the tool, which also shows the path
		// pairs before anything is measured on it.
		kind := "rr"
		if c.Kind == "stream" {
			kind = "stream"
		}
		if _, err := b.once(s, kind, TopoVeth, c.Size, set.Warmup); err != nil {
			out = append(out, cmpSample{Case: c, Err: "warm-up: " + err.Error()})
			logf("%v: warm-up: %v", c, err)
			continue
		}
		for i := 0; i < set.Runs; i++ {
			x := b.measureCase(s, c)
			if x.Err != "" {
				logf("%v: %s", c, x.Err)
			} else {
				logf("%-28v %12.2f %s  (%s)", c, x.Value, c.unit(), x.Verified)
			}
			out = append(out, x)
		}
	}
	buf, err := json.Marshal(out)
	if err != nil {
		r.Fatal(err)
	}
	if err := os.WriteFile(o.measure, buf, 0o644); err != nil {
		r.Fatal(err)
	}
	if !o.liveNetns {
		return
	}
	// What the module's unload waits for on a node whose containers keep
	// running: every connection closed, DEL run for every container and
	// the programs unpinned, but the network namespaces still there. The
	// parent unloads now, then lets this process remove the rest.
	for _, s := range b.sites {
		for _, c := range []*testenv.Container{s.srv, s.cli} {
			if err := s.net.Del(r, c); err != nil {
				r.Fatalf("DEL %s: %v", c.ID, err)
			}
		}
		if err := os.RemoveAll(s.net.PinDir); err != nil {
			r.Fatal(err)
		}
	}
	if err := os.WriteFile(o.measure+".ready", nil, 0o644); err != nil {
		r.Fatal(err)
	}
	for deadline := time.Now().Add(o.unloadTimeout + time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(o.measure + ".go"); err == nil {
			return
		}
	}
	logf("the parent did not say go: removing the containers anyway")
}

// measureCase runs one case once and checks that it took the splice path.
func (b *bench) measureCase(s *site, c cmpCase) cmpSample {
	x := cmpSample{Case: c}
	if c.Kind != "sockperf" {
		smp, err := b.once(s, c.Kind, TopoVeth, c.Size, b.set.Duration)
		if err != nil {
			x.Err = err.Error()
			return x
		}
		x.Value, x.Verified = smp.tps, smp.verified
		if c.Kind == "stream" {
			x.Value = smp.gbps
		}
		return x
	}
	smp, err := b.sockperfOn(s, TopoVeth, spWorkload{Mode: spPingPong, Size: c.Size})
	if err != nil {
		x.Err = err.Error()
		return x
	}
	x.Value, x.LatUs, x.Verified = smp.tps, smp.latUs, smp.verified
	return x
}

// CompareReport is what one comparison run measured: compare.json.
type CompareReport struct {
	Started  time.Time      `json:"started"`
	Elapsed  time.Duration  `json:"elapsed"`
	Machine  Machine        `json:"machine"`
	Settings CompareSetting `json:"settings"`
	Modules  []CmpModule    `json:"modules"` // [old, new]
	Rounds   []CmpRound     `json:"rounds"`  // in the order they ran
	Cases    []CmpCaseStat  `json:"cases"`
	Failures []string       `json:"failures,omitempty"`
}

// CompareSetting are the knobs of the comparison.
type CompareSetting struct {
	Rounds        int           `json:"rounds"`
	RunsPerRound  int           `json:"runsPerRound"`
	Duration      time.Duration `json:"duration"`
	Warmup        time.Duration `json:"warmup"`
	ClientCPU     int           `json:"clientCPU"`
	ServerCPU     int           `json:"serverCPU"`
	Workloads     string        `json:"workloads"`
	Paths         string        `json:"paths"`
	UnloadTimeout time.Duration `json:"unloadTimeout"`
}

// CmpModule is one of the two module builds.
type CmpModule struct {
	Label string `json:"label"`
	Path  string `json:"path"`
	Size  int64  `json:"size"`
}

// CmpRound is one module's turn: load, measure, unload.
type CmpRound struct {
	Round  int     `json:"round"`
	Module string  `json:"module"`
	Secs   float64 `json:"measureSecs"`
	Refcnt int     `json:"refcntAtUnload"` // at the first delete_module
	// NetnsLive: the first unload ran with the containers' namespaces
	// still there (every connection closed, DEL run, programs unpinned);
	// UnloadWait is how long delete_module was refused then.
	NetnsLive  bool    `json:"netnsLive"`
	UnloadWait float64 `json:"unloadWaitSecs"`
	// AfterNetns: the module was unloaded (UnloadAfterNetns: after how
	// long) once the measuring child had removed everything it made,
	// because the first unload did not succeed or was not tried
	// (-live-netns=false).
	AfterNetns       bool        `json:"unloadAfterNetns"`
	UnloadAfterNetns float64     `json:"unloadAfterNetnsSecs"`
	UnloadTries      int         `json:"unloadTries"`
	Samples          []cmpSample `json:"samples"`
	Err              string      `json:"err,omitempty"`
}

// CmpCaseStat is one case's result: each module's median over every
// round, and new/old.
type CmpCaseStat struct {
	Case  cmpCase `json:"case"`
	Unit  string  `json:"unit"`
	Old   Stat    `json:"old"`
	New   Stat    `json:"new"`
	OldN  int     `json:"oldN"`
	NewN  int     `json:"newN"`
	Ratio float64 `json:"ratio"` // New.Median / Old.Median
	// RoundRatios: new/old within each round (each module's median in
	// its turn), where both turns measured the case. Adjacent turns share
	// the host's state of the moment, so their ratio cancels the drift
	// that the medians over all rounds keep.
	RoundRatios []float64 `json:"roundRatios,omitempty"`
	RoundRatio  Stat      `json:"roundRatio"`
	// RatioCI: a distribution-free interval for RoundRatios' median
	// (order statistics, binomial), at level RatioCILevel; zero when
	// there are too few rounds (fewer than 6) for a 95 % one.
	RatioCI      [2]float64 `json:"ratioCI"`
	RatioCILevel float64    `json:"ratioCILevel,omitempty"`
}

// compareModules is the parent: it alternates the two modules in one
// boot and reports the medians and ratios.
func compareModules(r testenv.T, o compareOptions, set Settings, out string) {
	cases, err := parseCases(o.workloads, o.paths)
	if err != nil {
		r.Fatal(err)
	}
	labels := []string{"old", "new"}
	if l := strings.Split(o.labels, ","); o.labels != "" && len(l) == 2 {
		labels = l
	}
	rep := &CompareReport{Started: time.Now().UTC(), Machine: machine(o.virt),
		Settings: CompareSetting{Rounds: o.rounds, RunsPerRound: set.Runs, Duration: set.Duration, Warmup: set.Warmup,
			ClientCPU: set.ClientCPU, ServerCPU: set.ServerCPU, Workloads: o.workloads, Paths: o.paths, UnloadTimeout: o.unloadTimeout}}
	for i, p := range []string{o.oldKo, o.newKo} {
		st, err := os.Stat(p)
		if err != nil {
			r.Fatal(err)
		}
		rep.Modules = append(rep.Modules, CmpModule{Label: labels[i], Path: p, Size: st.Size()})
	}
	name := sbpf.SpliceModule
	if _, err := os.Stat("/sys/module/" + name); err == nil {
		logf("compare: %s is loaded already: unloading it first", name)
		if w, _, _, err := unloadModule(name, o.unloadTimeout); err != nil {
			r.Fatalf("unloading the %s loaded before the run: %v", name, err)
		} else {
			logf("compare: unloaded after %.1f s", w)
		}
	}
	self, err := os.Executable()
	if err != nil {
		r.Fatal(err)
	}
	dir := r.TempDir()
	logf("compare: %d case(s), %d round(s); old = %s, new = %s", len(cases), o.rounds, labels[0], labels[1])
rounds:
	for round := 0; round < o.rounds; round++ {
		order := []int{0, 1}
		if round%2 == 1 {
			order = []int{1, 0}
		}
		for _, m := range order {
			mod := rep.Modules[m]
			cr := CmpRound{Round: round + 1, Module: mod.Label}
			logf("compare: round %d: loading %s (%s)", round+1, mod.Label, mod.Path)
			if err := loadModule(mod.Path); err != nil {
				cr.Err = "loading: " + err.Error()
				rep.Rounds = append(rep.Rounds, cr)
				rep.Failures = append(rep.Failures, fmt.Sprintf("round %d %s: %s", round+1, mod.Label, cr.Err))
				break rounds
			}
			file := filepath.Join(dir, fmt.Sprintf("round%d-%s.json", round+1, labels[m]))
			t0 := time.Now()
			cmd := exec.Command(self, "-measure", file, "-workloads", o.workloads, "-paths", o.paths,
				"-runs", strconv.Itoa(set.Runs), "-duration", set.Duration.String(), "-warmup", set.Warmup.String(),
				"-cpus", fmt.Sprintf("%d,%d", set.ClientCPU, set.ServerCPU),
				"-unload-timeout", o.unloadTimeout.String(), "-live-netns="+strconv.FormatBool(o.liveNetns))
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Start(); err != nil {
				r.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			var cerr, err error
			exited := false
			// The child says when only its namespaces are left (-live-netns).
			for !exited && o.liveNetns {
				if _, err := os.Stat(file + ".ready"); err == nil {
					break
				}
				select {
				case cerr = <-done:
					exited = true
				case <-time.After(50 * time.Millisecond):
				}
			}
			cr.Secs = time.Since(t0).Seconds()
			if !exited && o.liveNetns {
				cr.NetnsLive = true
				cr.UnloadWait, cr.UnloadTries, cr.Refcnt, err = unloadModule(name, o.unloadTimeout)
				os.WriteFile(file+".go", nil, 0o644)
			}
			if !exited {
				cerr = <-done
			}
			if cerr != nil {
				cr.Err = "measuring: " + cerr.Error()
			} else if b, err := os.ReadFile(file); err != nil {
				cr.Err = err.Error()
			} else if err := json.Unmarshal(b, &cr.Samples); err != nil {
				cr.Err = err.Error()
			}
			for _, s := range cr.Samples {
				if s.Err != "" {
					rep.Failures = append(rep.Failures, fmt.Sprintf("round %d %s %v: %s", round+1, mod.Label, s.Case, s.Err))
				}
			}
			if cr.Err != "" {
				rep.Failures = append(rep.Failures, fmt.Sprintf("round %d %s: %s", round+1, mod.Label, cr.Err))
			}
			if !cr.NetnsLive || err != nil {
				// Still loaded: retry now that the child removed everything.
				if err != nil {
					logf("compare: round %d: %s: %v with the namespaces alive; retrying after their removal", round+1, mod.Label, err)
				}
				var tries, refcnt int
				cr.AfterNetns = true
				cr.UnloadAfterNetns, tries, refcnt, err = unloadModule(name, o.unloadTimeout)
				cr.UnloadTries += tries
				if !cr.NetnsLive {
					cr.Refcnt = refcnt
				}
			}
			waits := fmt.Sprintf("%.1f s with the namespaces alive", cr.UnloadWait)
			if cr.AfterNetns {
				waits = fmt.Sprintf("%.1f s after the namespaces were removed", cr.UnloadAfterNetns)
				if cr.NetnsLive {
					waits = fmt.Sprintf("more than %.1f s with the namespaces alive, then %s", cr.UnloadWait, waits)
				}
			}
			logf("compare: round %d: %s measured in %.0f s; unload waited %s (%d delete_module calls, refcnt %d at the first)",
				round+1, mod.Label, cr.Secs, waits, cr.UnloadTries, cr.Refcnt)
			rep.Rounds = append(rep.Rounds, cr)
			if err != nil {
				msg := fmt.Sprintf("round %d %s: unloading: %v", round+1, mod.Label, err)
				rep.Rounds[len(rep.Rounds)-1].Err = strings.TrimPrefix(strings.Join([]string{cr.Err, msg}, "; "), "; ")
				rep.Failures = append(rep.Failures, msg)
				break rounds
			}
		}
	}
	rep.Cases = caseStats(cases, rep.Rounds, labels)
	rep.Elapsed = time.Since(rep.Started).Round(time.Second)
	if err := os.MkdirAll(out, 0o755); err != nil {
		r.Fatal(err)
	}
	buf, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		r.Fatal(err)
	}
	md := compareMarkdown(rep)
	if err := os.WriteFile(filepath.Join(out, "compare.json"), append(buf, '\n'), 0o644); err != nil {
		r.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "compare.md"), []byte(md), 0o644); err != nil {
		r.Fatal(err)
	}
	fmt.Println(md)
	logf("compare: wrote %s/compare.{json,md} in %v", out, rep.Elapsed)
	if len(rep.Failures) > 0 {
		r.Fatalf("%d failure(s):\n  %s", len(rep.Failures), strings.Join(rep.Failures, "\n  "))
	}
}

// caseStats takes each case's samples of each module over all rounds.
func caseStats(cases []cmpCase, rounds []CmpRound, labels []string) []CmpCaseStat {
	var out []CmpCaseStat
	for _, c := range cases {
		var xs [2][]float64
		for _, rd := range rounds {
			m := slices.Index(labels, rd.Module)
			if m < 0 {
				continue
			}
			for _, s := range rd.Samples {
				if s.Case == c && s.Err == "" {
					xs[m] = append(xs[m], s.Value)
				}
			}
		}
		st := CmpCaseStat{Case: c, Unit: c.unit(), Old: summarize(xs[0]), New: summarize(xs[1]), OldN: len(xs[0]), NewN: len(xs[1])}
		if st.Old.Median > 0 && st.NewN > 0 {
			st.Ratio = st.New.Median / st.Old.Median
		}
		st.RoundRatios = roundRatios(c, rounds, labels)
		st.RoundRatio = summarize(st.RoundRatios)
		st.RatioCI[0], st.RatioCI[1], st.RatioCILevel = medianCI(st.RoundRatios, 0.95)
		out = append(out, st)
	}
	return out
}

// roundRatios pairs the two turns of each round: new/old of the medians
// of the samples each module took of c in its turn.
func roundRatios(c cmpCase, rounds []CmpRound, labels []string) []float64 {
	turns := map[int]*[2][]float64{}
	for _, rd := range rounds {
		m := slices.Index(labels, rd.Module)
		if m < 0 {
			continue
		}
		if turns[rd.Round] == nil {
			turns[rd.Round] = &[2][]float64{}
		}
		for _, s := range rd.Samples {
			if s.Case == c && s.Err == "" {
				turns[rd.Round][m] = append(turns[rd.Round][m], s.Value)
			}
		}
	}
	var out []float64
	for _, n := range slices.Sorted(maps.Keys(turns)) {
		t := turns[n]
		if len(t[0]) == 0 || len(t[1]) == 0 {
			continue
		}
		if old := summarize(t[0]).Median; old > 0 {
			out = append(out, summarize(t[1]).Median/old)
		}
	}
	return out
}

// medianCI is the widest-coverage-first interval [x(k), x(n+1-k)] of
// the sorted sample whose coverage of the median, 1 - 2 P(Bin(n, 1/2) <
// k), is at least level: it assumes nothing of the distribution, only
// that the rounds are independent. It returns the coverage reached, or
// zeros when n is too small for level.
func medianCI(xs []float64, level float64) (lo, hi, coverage float64) {
	n := len(xs)
	s := slices.Clone(xs)
	slices.Sort(s)
	// cdf: P(Bin(n, 1/2) <= j), built term by term.
	term, cdf := math.Pow(0.5, float64(n)), 0.0
	k := 0
	for j := 0; j < n/2; j++ {
		cdf += term
		term *= float64(n-j) / float64(j+1)
		if 1-2*cdf < level {
			break
		}
		k = j + 1
	}
	if k == 0 {
		return 0, 0, 0
	}
	// Coverage of [x(k), x(n+1-k)] (1-based): 1 - 2 P(X <= k-1).
	tail, t := 0.0, math.Pow(0.5, float64(n))
	for j := 0; j < k; j++ {
		tail += t
		t *= float64(n-j) / float64(j+1)
	}
	return s[k-1], s[n-k], 1 - 2*tail
}

// compareMarkdown renders the comparison: the ratio table, then every
// round's figures and unload waits.
func compareMarkdown(rep *CompareReport) string {
	var b strings.Builder
	old, nw := rep.Modules[0].Label, rep.Modules[1].Label
	s := rep.Settings
	fmt.Fprintf(&b, "# Splice module: %s (new) against %s (old)\n\n", nw, old)
	fmt.Fprintf(&b, "Kernel %s, %d CPUs (%s), %s. %d round(s), each module once per round, alternating "+
		"(old/new, then new/old); in each turn %d run(s) of %v per case after a %v warm-up, client on CPU %d, server on CPU %d, "+
		"two containers on a CNI bridge. Total %v.\n\n",
		rep.Machine.Kernel, rep.Machine.CPUs, rep.Machine.CPUModel, rep.Machine.Virt, s.Rounds, s.RunsPerRound, s.Duration, s.Warmup,
		s.ClientCPU, s.ServerCPU, rep.Elapsed)
	fmt.Fprintf(&b, "| workload | path | unit | %s median (n) | %s median (n) | new/old |\n|---|---|---|---:|---:|---:|\n", old, nw)
	for _, c := range rep.Cases {
		ratio := "–"
		if c.Ratio > 0 {
			ratio = fmt.Sprintf("%.3f", c.Ratio)
			if c.Ratio < 0.95 {
				ratio = "**" + ratio + "**"
			}
		}
		fmt.Fprintf(&b, "| %s %s | %s | %s | %s (%d) | %s (%d) | %s |\n", c.Case.Kind, sizeText(c.Case.Size), c.Case.Path, c.Unit,
			figure(c.Old.Median, c.Unit), c.OldN, figure(c.New.Median, c.Unit), c.NewN, ratio)
	}
	b.WriteString("\nA ratio below 0.95 (a loss of more than 5 %) is in bold.\n\n")
	b.WriteString("Per round: new/old of the two adjacent turns of each round (each turn's median), which cancels " +
		"the host's drift between rounds; the interval is distribution-free (order statistics of the rounds' ratios).\n\n" +
		"| workload | path | rounds | per-round new/old: median | min | max | interval for the median (coverage) |\n" +
		"|---|---|---:|---:|---:|---:|---|\n")
	for _, c := range rep.Cases {
		ci := "too few rounds"
		if c.RatioCILevel > 0 {
			ci = fmt.Sprintf("%.3f – %.3f (%.1f %%)", c.RatioCI[0], c.RatioCI[1], 100*c.RatioCILevel)
		}
		fmt.Fprintf(&b, "| %s %s | %s | %d | %.3f | %.3f | %.3f | %s |\n", c.Case.Kind, sizeText(c.Case.Size), c.Case.Path,
			len(c.RoundRatios), c.RoundRatio.Median, c.RoundRatio.Min, c.RoundRatio.Max, ci)
	}
	b.WriteString("\n")
	b.WriteString("## Rounds\n\nUnload wait: how long delete_module was refused once every connection had closed, " +
		"DEL had run for every container and the programs were unpinned, while the containers' network namespaces " +
		"still existed (as on a node whose containers keep running); then, if the module was still loaded, how long " +
		"after those namespaces were deleted too. refcnt: the module's reference count at the first attempt.\n\n")
	b.WriteString("| round | module | measured in | unload wait, netns alive | after netns deleted | delete_module calls | refcnt |")
	for _, c := range rep.Cases {
		fmt.Fprintf(&b, " %s %s %s |", c.Case.Kind, sizeText(c.Case.Size), c.Case.Path)
	}
	b.WriteString("\n|---:|---|---:|---:|---:|---:|---:|")
	for range rep.Cases {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, rd := range rep.Rounds {
		live := "–"
		if rd.NetnsLive {
			live = fmt.Sprintf("%.1f s", rd.UnloadWait)
		}
		after := "–"
		if rd.AfterNetns {
			after = fmt.Sprintf("%.1f s", rd.UnloadAfterNetns)
		}
		fmt.Fprintf(&b, "| %d | %s | %.0f s | %s | %s | %d | %d |", rd.Round, rd.Module, rd.Secs, live, after, rd.UnloadTries, rd.Refcnt)
		for _, c := range rep.Cases {
			var vs []string
			for _, x := range rd.Samples {
				if x.Case == c.Case {
					if x.Err != "" {
						vs = append(vs, "error")
					} else {
						vs = append(vs, figure(x.Value, c.Unit))
					}
				}
			}
			fmt.Fprintf(&b, " %s |", strings.Join(vs, ", "))
		}
		b.WriteString("\n")
	}
	if len(rep.Failures) > 0 {
		b.WriteString("\n## Failures\n\n")
		for _, f := range rep.Failures {
			fmt.Fprintf(&b, "* %s\n", f)
		}
	}
	return b.String()
}

func figure(v float64, unit string) string {
	if unit == "Gbit/s" {
		return fmt.Sprintf("%.3f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// loadModule loads the module file at path (finit_module).
func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil {
		return fmt.Errorf("finit_module %s: %w", path, err)
	}
	return nil
}

// unloadModule retries delete_module until the kernel lets the module go
// or timeout passes, and says how long that took, how many calls it made
// and the module's reference count at the first call.
func unloadModule(name string, timeout time.Duration) (waited float64, tries, refcnt int, err error) {
	refcnt = -1
	if b, err := os.ReadFile("/sys/module/" + name + "/refcnt"); err == nil {
		refcnt, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	start := time.Now()
	for {
		tries++
		err = unix.DeleteModule(name, unix.O_NONBLOCK)
		waited = time.Since(start).Seconds()
		if err == nil {
			return waited, tries, refcnt, nil
		}
		if (err != unix.EBUSY && err != unix.EAGAIN && err != unix.EWOULDBLOCK) || time.Since(start) > timeout {
			return waited, tries, refcnt, fmt.Errorf("delete_module %s: %w after %.1f s", name, err, waited)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
