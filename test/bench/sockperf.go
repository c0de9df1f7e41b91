// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

// The sockperf mode (-sockperf; make vm-bench-sockperf): socksplice's
// paths against plain TCP as the field measures them, with sockperf 3.7
// (Debian's), not with this tool's own ends. Ping-pong and throughput,
// loopback and two containers on veth+bridge and on a netkit pair, the
// paths taking turns within each workload, the CPU time of both sockperf
// processes per request, and every run checked to have taken its path.
// It writes sockperf.json, sockperf.md and PNG charts beside the tool's
// own bench.* in the results directory.

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/test/testenv"
)

// sockperfOptions are the sockperf mode's flags.
type sockperfOptions struct {
	on                      bool
	topos, paths, workloads string
}

const (
	spDefaultTopos = TopoLoopback + "," + TopoVeth + "," + TopoNetkit
	spDefaultPaths = PathTCP + "," + PathSockmap + "," + PathSplice + "," + PathSpliceBP10 + "," + PathSpliceBP + "," + PathUnix
	// 65507 bytes stands for 64 KiB: it is the largest message sockperf
	// 3.7 takes.
	spDefaultWorkloads = "pp:64,pp:1024,pp:16384,tp:1024,tp:4096,tp:65507"
	spMaxMsg           = 65507
)

// spWorkload is one sockperf workload: a client mode and a message size.
type spWorkload struct {
	Mode string `json:"mode"` // spPingPong or spThroughput
	Size int    `json:"size"`
}

// kind is the report's kind for the workload: "rr" for ping-pong,
// "stream" for throughput.
func (w spWorkload) kind() string {
	if w.Mode == spPingPong {
		return "rr"
	}
	return "stream"
}

func (w spWorkload) String() string { return w.Mode + " " + formatSize(w.Size) }

// parseSPWorkloads reads -sockperf-workloads: "pp:BYTES" or "tp:BYTES",
// comma separated.
func parseSPWorkloads(s string) ([]spWorkload, error) {
	var out []spWorkload
	for _, f := range commaList(s) {
		mode, size, ok := strings.Cut(f, ":")
		n, err := strconv.Atoi(size)
		if !ok || err != nil {
			return nil, fmt.Errorf("-sockperf-workloads: %q: want pp:BYTES or tp:BYTES, e.g. pp:1024", f)
		}
		w := spWorkload{Size: n}
		switch mode {
		case "pp":
			w.Mode = spPingPong
		case "tp":
			w.Mode = spThroughput
		default:
			return nil, fmt.Errorf("-sockperf-workloads: %q: mode is pp (ping-pong) or tp (throughput)", f)
		}
		if n < 14 || n > spMaxMsg {
			return nil, fmt.Errorf("-sockperf-workloads: %q: sockperf 3.7 takes messages of 14 (its header) to %d bytes (its UDP-sized buffer: the server drops a TCP client that sends more)", f, spMaxMsg)
		}
		if slices.Contains(out, w) {
			return nil, fmt.Errorf("-sockperf-workloads: %q twice", f)
		}
		out = append(out, w)
	}
	if len(out) == 0 {
		return nil, errors.New("-sockperf-workloads: no workload")
	}
	return out, nil
}

// commaList splits a comma-separated flag value into its items, spaces
// around them trimmed, empty ones left out.
func commaList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseNames reads a comma-separated list whose every entry is in known.
func parseNames(flag, s string, known []string) ([]string, error) {
	var out []string
	for _, f := range commaList(s) {
		if !slices.Contains(known, f) {
			return nil, fmt.Errorf("%s: %q is not one of %s", flag, f, strings.Join(known, ", "))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: empty", flag)
	}
	return out, nil
}

// spPathDefs are the sockperf mode's paths, in column order.
var spPathDefs = []pathDef{allPaths[0], allPaths[1], allPaths[2], spliceBP10, allPaths[3], allPaths[4]}

// SockperfReport is what the sockperf mode measured: sockperf.json.
type SockperfReport struct {
	Started  time.Time        `json:"started"`
	Elapsed  time.Duration    `json:"elapsed"`
	Machine  Machine          `json:"machine"`
	Settings SockperfSettings `json:"settings"`
	Tool     string           `json:"tool"` // "sockperf 3.7"
	// Topologies and Paths say which ran, and why the others did not.
	Topologies []PathInfo `json:"topologies"`
	Paths      []PathInfo `json:"paths"`
	Points     []Point    `json:"points"`
	Failures   []string   `json:"failures,omitempty"`
}

// SockperfSettings are the sockperf mode's knobs.
type SockperfSettings struct {
	Runs      int           `json:"runs"`
	Duration  time.Duration `json:"duration"` // sockperf -t: whole seconds
	Warmup    time.Duration `json:"warmup"`   // the tool's ends only
	ClientCPU int           `json:"clientCPU"`
	ServerCPU int           `json:"serverCPU"`
	Workloads []spWorkload  `json:"workloads"`
}

// spSample is one verified run of one path.
type spSample struct {
	latUs, tps, msgps, gbps float64
	cliCPUUs, srvCPUUs      float64 // per request
	bpHitPct, bpPolls       float64 // NaN off the busy-poll paths
	verified                string
	tool                    string // "sockperf 3.7", or "bench"
}

// runSockperfMode is the sockperf mode: every workload on every path and
// topology asked for, in one run, then the report.
func runSockperfMode(r testenv.T, o options) {
	set := Settings{Runs: 3, Duration: 5 * time.Second, Warmup: 300 * time.Millisecond}
	o.apply(r, &set)
	// sockperf -t takes whole seconds.
	set.Duration = max(time.Duration(math.Ceil(set.Duration.Seconds()))*time.Second, time.Second)
	if o.out == "" {
		o.out = "results/bench"
	}
	works, err := parseSPWorkloads(o.sp.workloads)
	if err != nil {
		r.Fatal(err)
	}
	topos, err := parseNames("-sockperf-topologies", o.sp.topos, []string{TopoLoopback, TopoVeth, TopoNetkit})
	if err != nil {
		r.Fatal(err)
	}
	var known []string
	for _, d := range spPathDefs {
		known = append(known, d.name)
	}
	names, err := parseNames("-sockperf-paths", o.sp.paths, known)
	if err != nil {
		r.Fatal(err)
	}
	var defs []pathDef
	for _, d := range spPathDefs {
		if slices.Contains(names, d.name) {
			defs = append(defs, d)
		}
	}
	if !slices.Contains(names, PathTCP) {
		r.Fatalf("-sockperf-paths: every ratio is to %s: keep it", PathTCP)
	}

	rep := &SockperfReport{Started: time.Now().UTC(), Machine: machine(o.virt), Tool: "sockperf",
		Settings: SockperfSettings{Runs: set.Runs, Duration: set.Duration, Warmup: set.Warmup,
			ClientCPU: set.ClientCPU, ServerCPU: set.ServerCPU, Workloads: works}}
	if msg := missing("sockperf", "sockperf", "taskset"); msg != "" {
		r.Fatal(msg)
	}
	rep.Paths = availability(engine.Probe(), defs)
	for _, p := range rep.Paths {
		if !p.Available {
			logf("path %s: not available: %s", p.Name, p.Reason)
		}
	}
	sites := buildSites(r, defs, rep.Paths)
	for _, topo := range topos {
		ti := PathInfo{Name: topo, Available: true}
		if topo == TopoNetkit {
			if why := buildNetkit(r, defs, sites); why != "" {
				ti.Available, ti.Reason = false, why
				logf("topology %s: not available: %s", topo, why)
			}
		}
		rep.Topologies = append(rep.Topologies, ti)
	}
	b := &bench{t: r, set: set, defs: defs, sites: sites}
	for _, ti := range rep.Topologies {
		if !ti.Available {
			continue
		}
		for _, w := range works {
			pts, fails := b.sockperfPoint(ti.Name, w)
			rep.Points = append(rep.Points, pts...)
			rep.Failures = append(rep.Failures, fails...)
			for _, p := range pts {
				if strings.HasPrefix(p.Tool, "sockperf ") {
					rep.Tool = p.Tool
				}
			}
		}
	}
	rep.Elapsed = time.Since(rep.Started).Round(time.Second)
	md := sockperfMarkdown(rep)
	if err := writeSockperfReport(o.out, rep, md); err != nil {
		r.Fatal(err)
	}
	fmt.Println(md)
	logf("wrote %s/sockperf.{json,md} and charts in %v", o.out, rep.Elapsed)
	if len(rep.Failures) > 0 {
		r.Fatalf("%d run(s) failed:\n  %s", len(rep.Failures), strings.Join(rep.Failures, "\n  "))
	}
}

// spCase is one column of a workload: a path measured with sockperf, or
// with the tool's own ends (unix, and tcp as its baseline).
type spCase struct {
	path string
	s    *site
	tool bool
}

// sockperfPoint measures one workload in one topology on every path:
// Runs rounds in which the paths take turns in a rotating order, so that
// drift spreads over all of them. sockperf discards its own first 400 ms;
// the tool's ends get a discarded warm-up run first.
func (b *bench) sockperfPoint(topo string, w spWorkload) ([]Point, []string) {
	var cases []spCase
	for _, s := range b.order() {
		if s.def.family != "unix" {
			cases = append(cases, spCase{path: s.def.name, s: s})
		}
	}
	if u, tcp := b.sites[PathUnix], b.sites[PathTCP]; u != nil && tcp != nil {
		cases = append(cases, spCase{path: PathToolTCP, s: tcp, tool: true}, spCase{path: PathUnix, s: u, tool: true})
	}
	logf("sockperf %v, %s: %d path(s), %d run(s) of %v", w, topo, len(cases), b.set.Runs, b.set.Duration)
	// A warm-up of 0 marks rotate's discarded round: the tool's ends run
	// their warm-up then, sockperf none (it discards its own first 400 ms).
	samples, errs := rotate(len(cases), b.set.Runs, b.set.Duration, 0, func(i int, d time.Duration) (spSample, error) {
		c := cases[i]
		if d == 0 {
			var err error
			if c.tool {
				_, err = b.once(c.s, w.kind(), topo, w.Size, b.set.Warmup)
			}
			return spSample{}, err
		}
		run := b.sockperfOn
		if c.tool {
			run = b.toolSample
		}
		x, err := run(c.s, topo, w)
		if err == nil {
			fig := fmt.Sprintf("%8.1f us one-way", x.latUs)
			if w.Mode == spThroughput {
				fig = fmt.Sprintf("%8.0f msg/s", x.msgps)
			}
			logf("  %-18s %s  CPU/req %.1f + %.1f us  (%s)", c.path, fig, x.cliCPUUs, x.srvCPUUs, x.verified)
		}
		return x, err
	}, func(i int) string { return cases[i].path })
	var pts []Point
	var fails []string
	for i, c := range cases {
		p := Point{Kind: w.kind(), Topology: topo, Path: c.path, Size: w.Size, Runs: len(samples[i]), Err: errs[i], Tool: "sockperf"}
		if c.tool {
			p.Tool = "bench"
		}
		if n := len(samples[i]); n > 0 {
			p.Tool = samples[i][n-1].tool
		}
		col := func(f func(spSample) float64) Stat { return column(samples[i], f) }
		if w.Mode == spPingPong {
			p.LatUs = col(func(s spSample) float64 { return s.latUs })
			p.TPS = col(func(s spSample) float64 { return s.tps })
		} else {
			p.MsgPS = col(func(s spSample) float64 { return s.msgps })
			p.Gbps = col(func(s spSample) float64 { return s.gbps })
		}
		p.CliCPUUs = col(func(s spSample) float64 { return s.cliCPUUs })
		p.SrvCPUUs = col(func(s spSample) float64 { return s.srvCPUUs })
		p.BusyPollHitPct = col(func(s spSample) float64 { return s.bpHitPct })
		p.BusyPolls = col(func(s spSample) float64 { return s.bpPolls })
		if n := len(samples[i]); n > 0 {
			p.Verified = samples[i][n-1].verified
		}
		if p.Err != "" {
			fails = append(fails, fmt.Sprintf("sockperf %v %s %s: %s", w, topo, c.path, p.Err))
		}
		pts = append(pts, p)
	}
	return pts, fails
}

// sockperfOn runs sockperf once on s in topo and checks that the run took
// s's path.
func (b *bench) sockperfOn(s *site, topo string, w spWorkload) (spSample, error) {
	x := spSample{bpHitPct: math.NaN(), bpPolls: math.NaN()}
	srvC, cliC := s.ends(topo)
	w0, c0 := s.wireBytes(b.t, topo), s.counters(b.t, topo)
	splice := s.def.name == PathSplice || s.def.name == PathSpliceBP || s.def.name == PathSpliceBP10
	bp := splice && s.def.name != PathSplice
	var m0 map[string]int64
	if splice {
		m0 = testenv.ModuleStats(b.t)
	}
	out, err := sockperfOnce(b.t, srvC, cliC, spRun{Mode: w.Mode, Addr: s.serverIP(topo), Size: w.Size,
		Dur: b.set.Duration, SrvCPU: b.set.ServerCPU, CliCPU: b.set.ClientCPU})
	if err != nil && splice && out.Sent > 0 {
		// Where missing messages went: the rings took what the client
		// wrote (both directions in ping-pong).
		ring := testenv.ModuleStats(b.t)["ring_bytes"] - m0["ring_bytes"]
		want := out.Sent * int64(w.Size)
		if w.Mode == spPingPong {
			want += out.Received * int64(w.Size)
		}
		return x, fmt.Errorf("%w; the module's rings took %d B, the client's %d messages are %d B", err, ring, out.Sent, want)
	}
	if err != nil {
		return x, err
	}
	if os.Getenv("SOCKSPLICE_BENCH_PIDS") != "" {
		// kernel/vm/guest-bench-profile.sh splits its profile by these.
		logf("  pids %s %s %s:%d: server %d client %d", s.def.name, topo, w.Mode, w.Size, out.SrvPID, out.CliPID)
	}
	wire, c1 := s.wireBytes(b.t, topo)-w0, s.counters(b.t, topo)
	moved := float64(out.ServerMsgs) * float64(w.Size)
	if w.Mode == spPingPong {
		moved *= 2
	}
	v, err := s.verify(topo, moved, wire, c0, c1)
	if err != nil {
		return x, err
	}
	x.tool = strings.TrimSpace("sockperf " + out.Version)
	x.verified = fmt.Sprintf("%s; %d of %d messages; %s", x.tool, out.ServerMsgs, out.Sent, v)
	var m1 map[string]int64
	if splice {
		m1 = testenv.ModuleStats(b.t)
	}
	if splice && w.Mode == spThroughput {
		// One way only: the rings took exactly the bytes of the messages
		// the server handled, no byte lost or duplicated, and none of a
		// message the client counted but did not send.
		if ring := m1["ring_bytes"] - m0["ring_bytes"]; ring != int64(moved) {
			return x, fmt.Errorf("the module's rings took %d B, the %d messages the server handled are %.0f B", ring, out.ServerMsgs, moved)
		}
		x.verified += "; the rings took exactly the handled messages' bytes"
	}
	if bp {
		polls, hits := m1["busy_polls"]-m0["busy_polls"], m1["busy_poll_hits"]-m0["busy_poll_hits"]
		x.bpPolls = float64(polls)
		if polls > 0 {
			x.bpHitPct = 100 * float64(hits) / float64(polls)
		}
		x.verified += fmt.Sprintf("; busy-poll found data in %d of %d polls", hits, polls)
		// Adaptive busy-poll (a module without it has no such counter).
		if skips, ok := m1["busy_poll_skips"]; ok {
			x.verified += fmt.Sprintf(", %d blocking reads slept without a spin", skips-m0["busy_poll_skips"])
		}
	}
	if !out.CliSetupSampled {
		x.verified += "; client CPU includes its start-up"
	}
	x.cliCPUUs = out.CliCPU / float64(max(out.Sent, 1)) * 1e6
	x.srvCPUUs = out.SrvCPU / float64(max(out.ServerMsgs, 1)) * 1e6
	if w.Mode == spPingPong {
		x.latUs = out.AvgLatencyUs
		x.tps = 1e6 / (2 * out.AvgLatencyUs)
	} else {
		// Delivered, not sent: what the buffers held when the client
		// stopped counts only once it arrived.
		x.msgps = float64(out.ServerMsgs) / (out.RunSec + out.DrainS)
		x.gbps = x.msgps * float64(w.Size) * 8 / 1e9
	}
	return x, nil
}

// toolSample runs the tool's own ends once on s in topo, in the shape of
// sockperf's workload: request/response for ping-pong, a stream for
// throughput.
func (b *bench) toolSample(s *site, topo string, w spWorkload) (spSample, error) {
	x := spSample{bpHitPct: math.NaN(), bpPolls: math.NaN()}
	smp, err := b.once(s, w.kind(), topo, w.Size, b.set.Duration)
	if err != nil {
		return x, err
	}
	x.tool, x.verified = "bench", "the tool's ends; "+smp.verified
	if w.Mode == spPingPong {
		// One request in flight: the mean round trip is 1/tps.
		x.tps, x.latUs = smp.tps, 1e6/(2*smp.tps)
	} else {
		x.gbps = smp.gbps
		x.msgps = smp.gbps * 1e9 / 8 / float64(w.Size)
	}
	x.cliCPUUs = smp.cliCPU / max(smp.reqs, 1) * 1e6
	x.srvCPUUs = smp.srvCPU / max(smp.reqs, 1) * 1e6
	return x, nil
}

// spBase is the point p's ratio is taken against: tcp measured the same
// way (the tool's tcp for unix), and sockperf's tcp for the tool's tcp,
// which so shows how far the two tools agree.
func spBase(points []Point, p Point) (Point, bool) {
	base := PathTCP
	if p.Path == PathUnix {
		base = PathToolTCP
	}
	b, ok := findPoint(points, p.Kind, p.Topology, base, p.Size)
	return b, ok && b.Err == "" && b.Runs > 0
}

// spRatio is how many times better p is than its base: latency down for
// ping-pong, messages per second up for throughput.
func spRatio(points []Point, p Point) (float64, bool) {
	b, ok := spBase(points, p)
	if !ok || p.Err != "" || p.Runs == 0 {
		return 0, false
	}
	if p.Kind == "rr" {
		if p.LatUs.Median <= 0 {
			return 0, false
		}
		return b.LatUs.Median / p.LatUs.Median, true
	}
	if b.MsgPS.Median <= 0 {
		return 0, false
	}
	return p.MsgPS.Median / b.MsgPS.Median, true
}

// spLabel is a path's column head.
func spLabel(path string) string {
	switch path {
	case PathSpliceBP10:
		return "splice + busy-poll 10 us"
	case PathSpliceBP:
		return "splice + busy-poll 50 us"
	case PathToolTCP:
		return "tcp (tool)"
	case PathUnix:
		return "unix (tool)"
	}
	return path
}

// spTopoText describes a topology for its section head.
func spTopoText(topo string) string {
	switch topo {
	case TopoLoopback:
		return "both ends in one container, 127.0.0.1"
	case TopoVeth:
		return "two containers on a bridge (veth pairs), made by the CNI chain bridge + host-local + socksplice"
	case TopoNetkit:
		return "two containers joined by one netkit pair (L3, no BPF program), enrolled by socksplice ADD through libcni"
	}
	return topo
}

// spChartName is the file a sockperf chart is written to.
func spChartName(kind, topo string) string { return "sockperf-" + chartName(kind, topo) }

// writeSockperfReport writes sockperf.json, sockperf.md (md) and the
// charts into dir, each attempted even when another fails.
func writeSockperfReport(dir string, rep *SockperfReport, md string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var errs []error
	js, err := json.MarshalIndent(rep, "", "  ")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "sockperf.json"), append(js, '\n'), 0o644)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("sockperf.json: %w", err))
	}
	if err := os.WriteFile(filepath.Join(dir, "sockperf.md"), []byte(md), 0o644); err != nil {
		errs = append(errs, fmt.Errorf("sockperf.md: %w", err))
	}
	for _, topo := range topologies(rep.Points) {
		for _, k := range []struct{ kind, title, xlabel, ylabel string }{
			{"rr", "sockperf ping-pong", "message size", "round trips/s (median; whiskers min–max)"},
			{"stream", "sockperf throughput", "message size", "Gbit/s delivered (median; whiskers min–max)"},
		} {
			if !hasChartData(rep.Points, k.kind, topo) {
				continue
			}
			ytick := axisCount
			if k.kind == "stream" {
				ytick = axisNumber
			}
			name := spChartName(k.kind, topo)
			if err := drawChart(filepath.Join(dir, name), rep.Points, k.kind, topo, k.title+", "+topo+": higher is better",
				k.xlabel, k.ylabel, ytick); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// sockperfMarkdown renders the report: per topology the figures with
// their ratios, the CPU per request, and the busy-poll hit rates.
func sockperfMarkdown(rep *SockperfReport) string {
	var b strings.Builder
	s, m := rep.Settings, rep.Machine
	b.WriteString("# sockperf: socksplice's paths against plain TCP\n\n")
	fmt.Fprintf(&b, "Run started %s and took %v. Machine: Linux %s on %s, %d CPUs, %d GiB memory, %s. ",
		rep.Started.UTC().Format("2006-01-02 15:04 UTC"), rep.Elapsed, orUnknown(m.Kernel), orUnknown(m.CPUModel), m.CPUs, m.MemGiB, m.Virt)
	fmt.Fprintf(&b, "Measured with %s: a fresh server per run, one connection, blocking I/O, client on CPU %d, server on CPU %d (taskset). "+
		"Each cell is the median of %d runs of `-t %.0f`; within each workload the paths take turns in a rotating order, all in this one run. ",
		rep.Tool, s.ClientCPU, s.ServerCPU, s.Runs, s.Duration.Seconds())
	b.WriteString("Ping-pong: sockperf's mean one-way latency (RTT / 2, one message in flight), ratio = tcp's latency / the path's. " +
		"Throughput: messages the server received per second, from the client's start until the server read the last byte, ratio to tcp. " +
		"CPU: user + system time of the sockperf client and server (/proc/PID/stat) per request (ping-pong: a round trip; throughput: a message), " +
		"the client's from the 2 s sleep it takes after connecting to its exit, so without its start-up. " +
		"Every run is checked to have taken its path: tcp put the payload on the wire, an engine paired both ends and left the wire nearly empty, " +
		"the server handled every message the client sent (but the one sockperf 3.7 counts when the end-of-test signal interrupts a send before its first byte), " +
		"and in throughput the splice module's rings took exactly the bytes of the messages the server handled. " +
		"sockperf 3.7 has no AF_UNIX (`--addr unix:` came in 3.8), so unix and its baseline tcp (tool) run the benchmark's own blocking ends " +
		"(the same loop; CPU from getrusage); tcp (tool)'s ratio is to sockperf's tcp, which shows how far the two tools agree.\n\n")
	for _, t := range rep.Topologies {
		if !t.Available {
			fmt.Fprintf(&b, "- topology **%s**: not available: %s\n", t.Name, oneLine(t.Reason))
		}
	}
	for _, p := range rep.Paths {
		if !p.Available {
			fmt.Fprintf(&b, "- path **%s**: not available: %s\n", p.Name, oneLine(p.Reason))
		}
	}
	b.WriteString("\n")
	for _, topo := range topologies(rep.Points) {
		sel := selectPoints(rep.Points, "rr", topo)
		sel = append(sel, selectPoints(rep.Points, "stream", topo)...)
		paths := pathsOf(sel)
		fmt.Fprintf(&b, "## %s: %s\n\n", topo, spTopoText(topo))
		for _, kind := range []string{"rr", "stream"} {
			if hasChartData(rep.Points, kind, topo) {
				fmt.Fprintf(&b, "![%s %s](%s) ", kind, topo, spChartName(kind, topo))
			}
		}
		b.WriteString("\n\n")
		head := func(first string) {
			b.WriteString("| " + first + " |")
			for _, p := range paths {
				b.WriteString(" " + spLabel(p) + " |")
			}
			b.WriteString("\n|---|" + strings.Repeat("---:|", len(paths)) + "\n")
		}
		rows := func(cell func(Point) string) {
			for _, w := range s.Workloads {
				b.WriteString("| " + w.String() + " |")
				for _, path := range paths {
					p, ok := findPoint(sel, w.kind(), topo, path, w.Size)
					switch {
					case !ok:
						b.WriteString(" |")
					case p.Err != "":
						b.WriteString(" error: " + escapeCell(shortErr(p.Err)) + " |")
					default:
						b.WriteString(" " + cell(p) + " |")
					}
				}
				b.WriteString("\n")
			}
		}
		head("workload: one-way us (ping-pong) or msg/s (throughput), ratio")
		rows(func(p Point) string {
			v := formatUs(p.LatUs.Median)
			if p.Kind == "stream" {
				v = formatCount(p.MsgPS.Median)
			}
			if r, ok := spRatio(rep.Points, p); ok {
				v += fmt.Sprintf(" (%.2fx)", r)
			}
			return v
		})
		b.WriteString("\n")
		head("CPU us per request: client + server")
		rows(func(p Point) string {
			return fmt.Sprintf("%s + %s", formatUs(p.CliCPUUs.Median), formatUs(p.SrvCPUUs.Median))
		})
		b.WriteString("\n")
		var bp []string
		for _, path := range paths {
			if path == PathSpliceBP10 || path == PathSpliceBP {
				bp = append(bp, path)
			}
		}
		if len(bp) > 0 {
			b.WriteString("Busy-poll: the share of the module's busy polls that found data, of how many polls a run (medians).\n\n| workload |")
			for _, p := range bp {
				b.WriteString(" " + spLabel(p) + " |")
			}
			b.WriteString("\n|---|" + strings.Repeat("---:|", len(bp)) + "\n")
			for _, w := range s.Workloads {
				b.WriteString("| " + w.String() + " |")
				for _, path := range bp {
					p, ok := findPoint(sel, w.kind(), topo, path, w.Size)
					switch {
					case !ok || p.Err != "" || p.Runs == 0:
						b.WriteString(" |")
					case p.BusyPolls.Max == 0:
						b.WriteString(" no polls |")
					default:
						fmt.Fprintf(&b, " %.0f %% of %.0f |", p.BusyPollHitPct.Median, p.BusyPolls.Median)
					}
				}
				b.WriteString("\n")
			}
			b.WriteString("\n")
		}
	}
	if len(rep.Failures) > 0 {
		b.WriteString("## Failures\n\n")
		for _, f := range rep.Failures {
			fmt.Fprintf(&b, "- %s\n", oneLine(f))
		}
		b.WriteString("\n")
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}
