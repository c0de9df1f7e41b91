// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

// What socksplice costs the flows it does not accelerate (issue 16, item
// 10): a node with socksplice attached runs its sock_ops program on every
// connection of an enrolled container, also on those it then leaves on
// TCP (a port outside the allowlist, a peer that is not enrolled, as a
// peer outside the node is not). Two workloads between two containers on
// a CNI bridge, side by side with the same containers' flows without
// socksplice: connect + request/response + close (netperf's TCP_CRR,
// where the per-connection cost shows) and request/response on one
// connection (TCP_RR). Each round runs every path once per workload, in
// an order that rotates from round to round, and each path's figures are
// divided by the baseline's of the same round. Besides the rate, each
// run reads the CPU time both ends spent from the kernel's accounting
// (getrusage of the two processes over the loop, and the cpu.stat of
// their two cgroups over the run): on a shared machine the wall-clock
// rate moves with the neighbours, the CPU time per connection much less.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/conf"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/test/testenv"
)

// ohPath is one way the flows are set up.
type ohPath struct {
	name   string
	engine string         // "" for the baseline, else the engine it needs
	plugin map[string]any // socksplice config of the network
	// srvOptOut: the server's pod has socksplice.io/mode: off, so its
	// netns is not enrolled; only the client's program runs.
	srvOptOut bool
	paired    bool // the flows pair: the accelerated reference
}

// The overhead paths. Ports [9] allows a port the workloads never use.
var ohPaths = []ohPath{
	{name: "tcp", plugin: map[string]any{"mode": "off"}},
	{name: "sockmap, port not allowed", engine: PathSockmap, plugin: map[string]any{"mode": "sockmap", "ports": []int{9}}},
	{name: "sockmap, peer not enrolled", engine: PathSockmap, plugin: map[string]any{"mode": "sockmap"}, srvOptOut: true},
	{name: "sockmap, paired", engine: PathSockmap, plugin: map[string]any{"mode": "sockmap"}, paired: true},
	{name: "splice, port not allowed", engine: PathSplice, plugin: map[string]any{"mode": "splice", "ports": []int{9}}},
	{name: "splice, peer not enrolled", engine: PathSplice, plugin: map[string]any{"mode": "splice"}, srvOptOut: true},
	{name: "splice, paired", engine: PathSplice, plugin: map[string]any{"mode": "splice"}, paired: true},
}

// OverheadSettings are the measurement's knobs.
type OverheadSettings struct {
	Rounds   int           `json:"rounds"`
	Duration time.Duration `json:"duration"` // per run
	Warmup   time.Duration `json:"warmup"`   // one discarded run per path and workload
	Size     int           `json:"size"`     // request = response bytes
}

// Overhead is the measurement's result.
type Overhead struct {
	Settings OverheadSettings `json:"settings"`
	Cells    []OverheadCell   `json:"cells"`
}

// OverheadCell is one workload on one path over every round.
type OverheadCell struct {
	Kind   string `json:"kind"` // "crr" or "rr"
	Path   string `json:"path"`
	Rounds int    `json:"rounds"` // measured
	// Per run: connections (crr) or transactions (rr) per second,
	// latency of one, and CPU microseconds per one of both ends: from
	// getrusage over the loop, and from the two cgroups' cpu.stat
	// usage_usec over the run (process start and exit included).
	Rate      Stat `json:"rate"`
	P50us     Stat `json:"p50us"`
	P99us     Stat `json:"p99us"`
	CPUus     Stat `json:"cpuUsPerOp"`
	CgroupCPU Stat `json:"cgroupCpuUsPerOp"`
	// socksplice's BPF programs (sock_ops, sk_msg, splice) per op: their
	// run time and runs, from the kernel's BPF statistics; and that run
	// time per round over the baseline's CPU time per op.
	ProgNs    Stat  `json:"progNsPerOp"`
	ProgRuns  Stat  `json:"progRunsPerOp"`
	ProgShare Ratio `json:"progShareOfBaselineCpu,omitzero"`
	// Per round, against the baseline's run of the same round.
	RateRatio   Ratio  `json:"rateRatio,omitzero"`
	P50Ratio    Ratio  `json:"p50Ratio,omitzero"`
	CPURatio    Ratio  `json:"cpuRatio,omitzero"`
	CgroupRatio Ratio  `json:"cgroupCpuRatio,omitzero"`
	Verified    string `json:"verified,omitempty"`
	Err         string `json:"err,omitempty"`
}

// Ratio is a path's figure over the baseline's, one per round: their
// median with a distribution-free 95 % confidence interval of the median
// (order statistics; none below 6 rounds), and their range.
type Ratio struct {
	N      int       `json:"n"`
	Median float64   `json:"median"`
	Lo     float64   `json:"ciLo,omitempty"`
	Hi     float64   `json:"ciHi,omitempty"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Rounds []float64 `json:"rounds"`
}

// ratioOf summarizes per-round ratios.
func ratioOf(xs []float64) Ratio {
	if len(xs) == 0 {
		return Ratio{}
	}
	st := summarize(xs)
	r := Ratio{N: len(xs), Median: st.Median, Min: st.Min, Max: st.Max, Rounds: xs}
	r.Lo, r.Hi, _ = medianCI(xs, 0.95)
	return r
}

// ohSite is one path's network and containers.
type ohSite struct {
	path     ohPath
	net      *testenv.Network
	srv, cli *testenv.Container
}

// ohSample is one run.
type ohSample struct {
	rate, p50, p99, cpu, cgcpu float64
	progNs, progRuns           float64 // socksplice's programs, per op
	verified                   string
}

// overhead measures every path the kernel can run (engines: as rep.Paths
// says) and adds the result to rep.
func (b *bench) overhead(set OverheadSettings) {
	var sites []*ohSite
	for i, p := range ohPaths {
		if p.engine != "" && !available(b.rep.Paths, p.engine) {
			continue
		}
		pin := fmt.Sprintf("/sys/fs/bpf/socksplice-bench-%d-oh%d", os.Getpid(), i)
		n := testenv.NewNetwork(b.t, testenv.NetOpts{Subnet: fmt.Sprintf("10.235.%d.0/24", i), PinDir: pin, Plugin: p.plugin})
		b.t.Cleanup(func() { os.RemoveAll(pin) })
		s := &ohSite{path: p, net: n, srv: testenv.NewContainer(b.t, "osrv"), cli: testenv.NewContainer(b.t, "ocli")}
		if p.srvOptOut {
			s.srv.Annotations = map[string]string{conf.ModeAnnotation: string(conf.ModeOff)}
		}
		n.MustAdd(b.t, s.srv)
		n.MustAdd(b.t, s.cli)
		sites = append(sites, s)
	}
	// The programs' run time and runs (BPF_ENABLE_STATS, while the
	// measurement runs): their own cost, which the noise of a shared
	// machine does not blur. It adds two clock reads to every run of
	// every program on the node.
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.rep.Failures = append(b.rep.Failures, fmt.Sprintf("overhead: enabling BPF statistics: %v", err))
	} else {
		defer stats.Close()
	}
	oh := &Overhead{Settings: set}
	for _, kind := range []string{"crr", "rr"} {
		logf("overhead %s %d B: %d path(s), %d round(s) of %v", kind, set.Size, len(sites), set.Rounds, set.Duration)
		samples, errs := rotate(len(sites), set.Rounds, set.Duration, set.Warmup,
			func(i int, d time.Duration) (ohSample, error) { return b.ohOnce(sites[i], kind, set.Size, d) },
			func(i int) string { return sites[i].path.name })
		for i, s := range sites {
			c := ohCell(kind, s.path.name, samples[i], samples[0], errs[i])
			if c.Err != "" {
				b.rep.Failures = append(b.rep.Failures, fmt.Sprintf("overhead %s %s: %s", kind, s.path.name, c.Err))
			} else {
				logf("  %-28s %8.0f/s (x%.3f)  p50 %6.1f us  CPU %6.2f us/op (x%.3f, 95%% CI %.3f-%.3f)  programs %.0f ns/op in %.1f runs (%.2f%% of tcp's CPU)",
					s.path.name, c.Rate.Median, c.RateRatio.Median, c.P50us.Median, c.CPUus.Median, c.CPURatio.Median, c.CPURatio.Lo, c.CPURatio.Hi,
					c.ProgNs.Median, c.ProgRuns.Median, 100*c.ProgShare.Median)
			}
			oh.Cells = append(oh.Cells, c)
		}
	}
	b.rep.Overhead = oh
}

// ohCell summarizes one path's samples, with ratios to base's of the
// same round (the baseline's own ratios are left out).
func ohCell(kind, path string, xs, base []ohSample, err string) OverheadCell {
	c := OverheadCell{Kind: kind, Path: path, Rounds: len(xs), Err: err}
	c.Rate = column(xs, func(x ohSample) float64 { return x.rate })
	c.P50us = column(xs, func(x ohSample) float64 { return x.p50 })
	c.P99us = column(xs, func(x ohSample) float64 { return x.p99 })
	c.CPUus = column(xs, func(x ohSample) float64 { return x.cpu })
	c.CgroupCPU = column(xs, func(x ohSample) float64 { return x.cgcpu })
	c.ProgNs = column(xs, func(x ohSample) float64 { return x.progNs })
	c.ProgRuns = column(xs, func(x ohSample) float64 { return x.progRuns })
	if len(xs) > 0 {
		c.Verified = xs[len(xs)-1].verified
	}
	if path == ohPaths[0].name || len(base) != len(xs) {
		return c
	}
	ratio := func(f func(ohSample) float64) Ratio {
		var r []float64
		for i := range xs {
			if f(base[i]) > 0 {
				r = append(r, f(xs[i])/f(base[i]))
			}
		}
		return ratioOf(r)
	}
	c.RateRatio = ratio(func(x ohSample) float64 { return x.rate })
	c.P50Ratio = ratio(func(x ohSample) float64 { return x.p50 })
	c.CPURatio = ratio(func(x ohSample) float64 { return x.cpu })
	c.CgroupRatio = ratio(func(x ohSample) float64 { return x.cgcpu })
	var share []float64
	for i := range xs {
		if base[i].cpu > 0 {
			share = append(share, xs[i].progNs/1e3/base[i].cpu)
		}
	}
	c.ProgShare = ratioOf(share)
	return c
}

// ohOnce runs one workload on one site for d and checks that the path
// did what its name says: the baseline's and unpaired flows' bytes on the
// veths with nothing paired, and, for the unpaired ones, socksplice's
// program having seen and refused every connection; the paired flows'
// sockets paired.
func (b *bench) ohOnce(s *ohSite, kind string, size int, d time.Duration) (ohSample, error) {
	var x ohSample
	b.port++
	addr := fmt.Sprintf("%s:%d", s.srv.IP(s.net), 20000+b.port%20000)
	spec := EndSpec{Kind: kind, Family: "tcp", Addr: addr, Size: size, Duration: d}
	m := s.net.Meter(b.t, s.srv, s.cli)
	p0, err := progStats(s.net.PinDir)
	if err != nil {
		return x, err
	}
	cg0, err := cgroupUsage(s.srv, s.cli)
	if err != nil {
		return x, err
	}
	sr, cr, err := b.runEnds(s.srv, s.cli, spec)
	if err != nil {
		return x, err
	}
	cg1, err := cgroupUsage(s.srv, s.cli)
	if err != nil {
		return x, err
	}
	if cr.Txns == 0 || sr.Txns != cr.Txns || cr.Seconds <= 0 {
		return x, fmt.Errorf("client counted %d, server %d", cr.Txns, sr.Txns)
	}
	ops := float64(cr.Txns)
	x.rate = ops / cr.Seconds
	x.p50, x.p99 = cr.P50us, cr.P99us
	x.cpu = (cr.UserS + cr.SysS + sr.UserS + sr.SysS) * 1e6 / ops
	x.cgcpu = float64(cg1-cg0) / ops
	p1, err := progStats(s.net.PinDir)
	if err != nil {
		return x, err
	}
	x.progNs = float64(p1.Runtime-p0.Runtime) / ops
	x.progRuns = float64(p1.RunCount-p0.RunCount) / ops

	v := m.VethBytes()
	wire := v[0] + v[1]
	payload := uint64(2 * int64(size) * cr.Txns)
	dc := m.Counters()
	conns := uint64(1)
	if kind == "crr" {
		conns = uint64(cr.Txns) + 1 // and the last one
	}
	paired := dc.Paired + dc.SplicePaired
	p := s.path
	switch {
	case p.paired:
		// Each connection's handshake and FINs cross the veths whatever
		// the path: for crr the payload is checked by the engine's count.
		offWire := kind == "crr" || wire <= payload/10+64<<10
		if p.engine == PathSockmap && dc.RedirectBytes < payload {
			offWire = false
		}
		if paired < 2*conns || !offWire {
			return x, fmt.Errorf("not accelerated: paired +%d of %d sockets, redirected %d B, veths carried %d B of %d B payload",
				paired, 2*conns, dc.RedirectBytes, wire, payload)
		}
		x.verified = fmt.Sprintf("paired +%d sockets for %d connections, veths carried %d B for %d B payload", paired, conns, wire, payload)
	default:
		if paired != 0 || wire < payload {
			return x, fmt.Errorf("not plain TCP: paired +%d, veths carried %d B of %d B payload", paired, wire, payload)
		}
		x.verified = fmt.Sprintf("veths carried %d B for %d B payload, nothing paired", wire, payload)
		// The program saw every connection and refused it: both ends
		// (policy) or the client (no enrolled peer).
		refused, want, why := dc.PolicyRefused, 2*conns, "refused by policy"
		if p.srvOptOut {
			refused, want, why = dc.NoPeer, conns, "without an enrolled peer"
		}
		if p.engine != "" {
			if refused < want {
				return x, fmt.Errorf("socksplice's program did not see every connection: %d sockets %s, want %d", refused, why, want)
			}
			x.verified += fmt.Sprintf("; %d sockets %s", refused, why)
		}
	}
	return x, nil
}

// progStats sums the statistics of the programs pinned under pinDir
// (none while nothing is loaded there: the baseline).
func progStats(pinDir string) (ebpf.ProgramStats, error) {
	var sum ebpf.ProgramStats
	dir := filepath.Join(pinDir, node.ProgsDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return sum, nil
	}
	if err != nil {
		return sum, err
	}
	for _, e := range ents {
		p, err := ebpf.LoadPinnedProgram(filepath.Join(dir, e.Name()), nil)
		if err != nil {
			return sum, err
		}
		st, err := p.Stats()
		p.Close()
		if err != nil {
			return sum, err
		}
		sum.Runtime += st.Runtime
		sum.RunCount += st.RunCount
	}
	return sum, nil
}

// cgroupUsage sums usage_usec of the containers' cgroups' cpu.stat.
func cgroupUsage(cs ...*testenv.Container) (uint64, error) {
	var sum uint64
	for _, c := range cs {
		b, err := os.ReadFile(filepath.Join(c.Cgroup, "cpu.stat"))
		if err != nil {
			return 0, err
		}
		v, ok := statField(string(b), "usage_usec")
		if !ok {
			return 0, fmt.Errorf("%s/cpu.stat has no usage_usec", c.Cgroup)
		}
		sum += v
	}
	return sum, nil
}

func statField(stat, key string) (uint64, bool) {
	for _, l := range strings.Split(stat, "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// writeOverhead renders the measurement: per workload, each path's
// figures and its ratios to the baseline.
func writeOverhead(b *strings.Builder, oh *Overhead) {
	if oh == nil {
		return
	}
	st := oh.Settings
	b.WriteString("## Cost when nothing is paired\n\n")
	fmt.Fprintf(b, "Two containers on a CNI bridge, %d B requests and responses; %d rounds of %v per path and workload after a %v warm-up, "+
		"the paths in an order that rotates from round to round. Ratios are per round, to tcp in the same round: "+
		"median [95 %% confidence interval of the median] (lowest-highest round). CPU is user + system time of both "+
		"ends per connection (connect) or transaction (RR), from getrusage over the loop; cgroup CPU is usage_usec of "+
		"both containers' cgroups over the whole run. The column 3 %% says whether the CPU ratio resolves a 3 %% overhead: "+
		"below 1.03 or above it with 95 %% confidence, or not resolved. The last two columns are socksplice's own BPF programs "+
		"(kernel BPF statistics, enabled during the measurement): their run time per connection or transaction and how "+
		"many times they ran, and that run time over tcp's CPU time per connection or transaction in the same round "+
		"(median [95 %% CI]); the calls into them and the splice module's socket code outside them are not in it.\n\n",
		st.Size, st.Rounds, st.Duration, st.Warmup)
	for _, kind := range []string{"crr", "rr"} {
		title := "connect + request/response + close"
		unit := "connections/s"
		if kind == "rr" {
			title, unit = "request/response on one connection", "transactions/s"
		}
		fmt.Fprintf(b, "### %s\n\n", title)
		fmt.Fprintf(b, "| path | %s | ratio | p50 µs | p50 ratio | CPU µs each | CPU ratio | cgroup CPU ratio | 3 %% | programs ns each (runs) | programs / tcp's CPU |\n", unit)
		b.WriteString("|---|---:|---|---:|---|---:|---|---|---|---:|---|\n")
		for _, c := range oh.Cells {
			if c.Kind != kind {
				continue
			}
			if c.Err != "" {
				fmt.Fprintf(b, "| %s | could not run: %s | | | | | | | | | |\n", c.Path, escapeCell(shortErr(c.Err)))
				continue
			}
			prog, share := "–", "–"
			if c.ProgRuns.Median > 0 {
				prog = fmt.Sprintf("%.0f (%.1f)", c.ProgNs.Median, c.ProgRuns.Median)
				share = percentCell(c.ProgShare)
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %.2f | %s | %s | %s | %s | %s |\n", c.Path, formatCount(c.Rate.Median),
				ratioCell(c.RateRatio), formatUs(c.P50us.Median), ratioCell(c.P50Ratio), c.CPUus.Median,
				ratioCell(c.CPURatio), ratioCell(c.CgroupRatio), verdict3(c), prog, share)
		}
		b.WriteString("\n")
	}
}

func percentCell(r Ratio) string {
	if r.N == 0 {
		return "–"
	}
	if r.Lo == 0 {
		return fmt.Sprintf("%.2f %% (%.2f-%.2f)", 100*r.Median, 100*r.Min, 100*r.Max)
	}
	return fmt.Sprintf("%.2f %% [%.2f-%.2f]", 100*r.Median, 100*r.Lo, 100*r.Hi)
}

func ratioCell(r Ratio) string {
	switch {
	case r.N == 0:
		return "–"
	case r.Lo == 0:
		return fmt.Sprintf("%.3f (%.3f-%.3f)", r.Median, r.Min, r.Max)
	default:
		return fmt.Sprintf("%.3f [%.3f-%.3f] (%.3f-%.3f)", r.Median, r.Lo, r.Hi, r.Min, r.Max)
	}
}

// verdict3 says whether a cell's CPU ratio tells a 3 % overhead from
// noise; empty for the baseline and the accelerated reference.
func verdict3(c OverheadCell) string {
	r := c.CPURatio
	switch {
	case r.N == 0 || strings.HasSuffix(c.Path, ", paired"):
		return ""
	case r.Lo == 0:
		return "too few rounds"
	case r.Hi < 1.03:
		return "below"
	case r.Lo > 1.03:
		return "**above**"
	default:
		return "not resolved"
	}
}
