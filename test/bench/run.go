// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

import (
	"fmt"
	"sort"
	"time"

	"github.com/socksplice/socksplice/test/testenv"
)

type bench struct {
	t     testenv.T
	set   Settings
	defs  []pathDef // the paths of the run, in the report's order
	sites map[string]*site
	rep   *Report
	port  int
}

// sample is one measured run of one path.
type sample struct {
	tps, p50, p99, gbps, userPerGB, sysPerGB, readBytes, ctxPerMB float64
	// CPU seconds (user + system, getrusage) of each end, and the
	// client's transactions (rr) or writes (stream).
	cliCPU, srvCPU, reqs float64
	verified             string
}

// order lists the sites that run, in the report's path order.
func (b *bench) order() []*site {
	var s []*site
	for _, p := range b.defs {
		if x := b.sites[p.name]; x != nil {
			s = append(s, x)
		}
	}
	return s
}

// point measures one (kind, topology, size) for every path: a discarded
// warm-up run per path, then Runs rounds in which the paths take turns in
// a rotating order, so that drift on the machine spreads over all of them.
func (b *bench) point(kind, topo string, size int) []Point {
	sites := b.order()
	logf("%s %s %d B: %d path(s), %d run(s) of %v", kind, topo, size, len(sites), b.set.Runs, b.set.Duration)
	samples, errs := rotate(len(sites), b.set.Runs, b.set.Duration, b.set.Warmup,
		func(i int, d time.Duration) (sample, error) { return b.once(sites[i], kind, topo, size, d) },
		func(i int) string { return sites[i].def.name })
	var pts []Point
	for i, st := range sites {
		p := Point{Kind: kind, Topology: topo, Path: st.def.name, Size: size, Runs: len(samples[i]), Err: errs[i]}
		col := func(f func(sample) float64) Stat { return column(samples[i], f) }
		p.TPS = col(func(s sample) float64 { return s.tps })
		p.P50us = col(func(s sample) float64 { return s.p50 })
		p.P99us = col(func(s sample) float64 { return s.p99 })
		p.Gbps = col(func(s sample) float64 { return s.gbps })
		p.UserSPerGB = col(func(s sample) float64 { return s.userPerGB })
		p.SysSPerGB = col(func(s sample) float64 { return s.sysPerGB })
		p.ReadBytes = col(func(s sample) float64 { return s.readBytes })
		p.CtxSwPerMB = col(func(s sample) float64 { return s.ctxPerMB })
		if n := len(samples[i]); n > 0 {
			p.Verified = samples[i][n-1].verified
		}
		if p.Err != "" && !(st.def.name == PathSMC && isFallback(p.Err)) {
			b.rep.Failures = append(b.rep.Failures, fmt.Sprintf("%s %s %s %d B: %s", kind, topo, st.def.name, size, p.Err))
		}
		if p.Err == "" {
			if kind == "rr" {
				logf("  %-16s %10.0f tps  p50 %7.1f us  p99 %7.1f us", st.def.name, p.TPS.Median, p.P50us.Median, p.P99us.Median)
			} else {
				logf("  %-16s %7.2f Gbit/s  %.2f s CPU/GB  %.0f B/read", st.def.name, p.Gbps.Median, p.UserSPerGB.Median+p.SysSPerGB.Median, p.ReadBytes.Median)
			}
		}
		pts = append(pts, p)
	}
	return pts
}

// rotate runs each of n paths once per round: a discarded warm-up round
// of warmup, then rounds of d, in an order that rotates from round to
// round so that drift on the machine spreads over all of them. A path
// that fails is not run again. It returns every path's samples and error.
func rotate[S any](n, rounds int, d, warmup time.Duration, run func(i int, d time.Duration) (S, error), name func(i int) string) ([][]S, []string) {
	samples := make([][]S, n)
	errs := make([]string, n)
	for round := -1; round < rounds; round++ {
		for k := 0; k < n; k++ {
			i := (k + max(round, 0)) % n
			if errs[i] != "" {
				continue
			}
			dur := d
			if round < 0 {
				dur = warmup
			}
			x, err := run(i, dur)
			if err != nil {
				errs[i] = err.Error()
				logf("  %s: %v", name(i), err)
				continue
			}
			if round >= 0 {
				samples[i] = append(samples[i], x)
			}
		}
	}
	return samples, errs
}

const smcFallback = "SMC fell back to TCP"

func isFallback(e string) bool {
	return len(e) >= len(smcFallback) && e[:len(smcFallback)] == smcFallback
}

// once runs one connection on one path and checks that it took that path.
func (b *bench) once(s *site, kind, topo string, size int, d time.Duration) (sample, error) {
	b.port++
	port := 20000 + b.port%20000
	addr := s.addr(topo, port)
	srvC, cliC := s.ends(topo)
	w0, c0 := s.wireBytes(b.t, topo), s.counters(b.t, topo)
	spec := EndSpec{Kind: kind, Family: s.def.family, Addr: addr, Size: size, Duration: d}
	if kind == "close" { // rr whose server closes first (compare.go)
		spec.Kind, spec.ServerCloses, kind = "rr", true, "rr"
	}
	sr, cr, err := b.runEnds(srvC, cliC, spec)
	if err != nil {
		return sample{}, err
	}
	wire, c1 := s.wireBytes(b.t, topo)-w0, s.counters(b.t, topo)

	var x sample
	var moved float64
	if kind == "rr" {
		if cr.Txns == 0 || sr.Txns != cr.Txns || cr.Seconds <= 0 {
			return x, fmt.Errorf("client counted %d transactions, server %d", cr.Txns, sr.Txns)
		}
		x.tps = float64(cr.Txns) / cr.Seconds
		x.p50, x.p99 = cr.P50us, cr.P99us
		moved = float64(2 * int64(size) * cr.Txns)
		x.readBytes = float64(cr.Bytes) / float64(max(cr.Reads, 1))
	} else {
		sent := int64(size) * cr.Txns
		if sr.Bytes != sent {
			return x, fmt.Errorf("sender wrote %d bytes, receiver got %d", sent, sr.Bytes)
		}
		if sr.Seconds <= 0 {
			return x, fmt.Errorf("the receiver got everything in one read (%d B): run longer", sr.Bytes)
		}
		x.gbps = float64(sr.Bytes) * 8 / sr.Seconds / 1e9
		moved = float64(sr.Bytes)
		x.readBytes = float64(sr.Bytes) / float64(max(sr.Reads, 1))
	}
	x.userPerGB = (cr.UserS + sr.UserS) / (moved / 1e9)
	x.sysPerGB = (cr.SysS + sr.SysS) / (moved / 1e9)
	x.ctxPerMB = float64(cr.VolCtx+sr.VolCtx) / (moved / 1e6)
	x.cliCPU, x.srvCPU, x.reqs = cr.UserS+cr.SysS, sr.UserS+sr.SysS, float64(cr.Txns)
	x.verified, err = s.verify(topo, moved, wire, c0, c1)
	if s.def.family == "unix" {
		x.verified = "AF_UNIX stream socket at " + addr
	}
	return x, err
}

// verify checks that a run on s in topo that moved payload bytes took
// the path s is named for, from what the wire carried meanwhile and the
// network's counters before (c0) and after (c1): the baseline must put
// the payload on the wire, an engine must pair both ends and leave the
// wire nearly empty, and SMC must not fall back to TCP. It says how the
// run was shown to take its path.
func (s *site) verify(topo string, moved float64, wire uint64, c0, c1 testenv.Counters) (string, error) {
	switch s.def.name {
	case PathTCP:
		if wire < uint64(moved) {
			return "", fmt.Errorf("baseline: the wire carried %d B of %.0f B payload", wire, moved)
		}
		return fmt.Sprintf("%s carried %d B for %.0f B payload", wireName(topo), wire, moved), nil
	case PathSockmap, PathSplice, PathSpliceBP, PathSpliceBP10:
		paired, redir := c1.Paired-c0.Paired, c1.RedirectBytes-c0.RedirectBytes
		if s.def.name != PathSockmap {
			paired, redir = c1.SplicePaired-c0.SplicePaired, 0 // the ring's bytes are the module's counter
		}
		if paired < 2 || wire > uint64(moved)/10+64<<10 {
			return "", fmt.Errorf("not accelerated: paired +%d, redirected %d B, %s carried %d B of %.0f B payload", paired, redir, wireName(topo), wire, moved)
		}
		return fmt.Sprintf("paired +%d, redirected %d B, %s carried %d B", paired, redir, wireName(topo), wire), nil
	case PathSMC:
		if wire > uint64(moved)/10+64<<10 {
			return "", fmt.Errorf("%s: %s carried %d B of %.0f B payload", smcFallback, wireName(topo), wire, moved)
		}
		return fmt.Sprintf("%s carried %d B of %.0f B payload (SMC-D)", wireName(topo), wire, moved), nil
	}
	return "", nil
}

// runEnds runs spec's server in srv and its client in cli, pinned to
// their CPUs, and returns what each reported.
func (b *bench) runEnds(srv, cli *testenv.Container, spec EndSpec) (sr, cr EndResult, err error) {
	spec.Role = "server"
	sp, err := startEnd(b.t, srv, b.set.ServerCPU, spec)
	if err != nil {
		return sr, cr, err
	}
	spec.Role = "client"
	cp, err := startEnd(b.t, cli, b.set.ClientCPU, spec)
	if err != nil {
		sp.Kill()
		sp.Wait()
		return sr, cr, err
	}
	cerr := cp.Result(&cr, spec.Duration+60*time.Second)
	if cerr != nil {
		sp.Kill()
	}
	serr := sp.Result(&sr, 60*time.Second)
	if cerr != nil || serr != nil {
		return sr, cr, fmt.Errorf("client: %v; server: %v", cerr, serr)
	}
	return sr, cr, nil
}

func wireName(topo string) string {
	switch topo {
	case TopoVeth:
		return "veths"
	case TopoNetkit:
		return "netkit devices"
	}
	return "lo"
}

// crossCheck runs sockperf and the tool's own baseline RR 1 KiB over veth
// in alternation, so that both see the same machine.
func (b *bench) crossCheck() {
	s := b.sites[PathTCP]
	if s == nil {
		return
	}
	var tool, sp, lat []float64
	var cc CrossCheck
	for i := 0; i < max(b.set.Runs, 1); i++ {
		x, err := b.once(s, "rr", TopoVeth, 1024, b.set.Duration)
		if err != nil {
			cc.Err = "tool: " + err.Error()
			break
		}
		tool = append(tool, x.tps)
		cc = runSockperf(b.t, s.srv, s.cli, s.serverIP(TopoVeth), 1024, max(b.set.Duration, time.Second), b.set.ServerCPU, b.set.ClientCPU)
		if cc.Err != "" {
			break
		}
		sp = append(sp, cc.SockperfTP)
		lat = append(lat, cc.SockperfUs)
	}
	cc.Topology, cc.Path, cc.Size = TopoVeth, PathTCP, 1024
	if cc.Err == "" && len(sp) > 0 {
		sort.Float64s(tool)
		cc.ToolTPS = summarize(tool).Median
		cc.SockperfTP = summarize(sp).Median
		cc.SockperfUs = summarize(lat).Median
		cc.Ratio = cc.ToolTPS / cc.SockperfTP
		cc.Agrees = cc.Ratio >= 0.85 && cc.Ratio <= 1.15
		logf("cross-check RR 1 KiB veth tcp: tool %.0f tps, %s %.0f tps, ratio %.3f", cc.ToolTPS, cc.Tool, cc.SockperfTP, cc.Ratio)
	} else {
		logf("cross-check: %s", cc.Err)
		b.rep.Failures = append(b.rep.Failures, "sockperf cross-check: "+cc.Err)
	}
	b.rep.CrossCheck = &cc
}

// redis runs redis-benchmark GET between the two containers of every CNI
// path, taking turns per round like the socket points.
func (b *bench) redis(requests int) {
	var sites []*site
	for _, s := range b.order() {
		if s.def.plugin != nil {
			sites = append(sites, s)
		}
	}
	for _, clients := range []int{1, 50} {
		n := requests
		if clients > 1 {
			n = requests * 5
		}
		rps := make([][]float64, len(sites))
		p50 := make([][]float64, len(sites))
		errs := make([]string, len(sites))
		for round := 0; round < b.set.Runs; round++ {
			for k := range sites {
				i := (k + round) % len(sites)
				if errs[i] != "" {
					continue
				}
				s := sites[i]
				ap := runRedis(b.t, s.srv, s.cli, s.srv.IP(s.net), s.def.name, TopoVeth, clients, n, 1, b.set.ServerCPU, b.set.ClientCPU)
				if ap.Err != "" {
					errs[i] = ap.Err
					continue
				}
				rps[i] = append(rps[i], ap.RPS.Median)
				p50[i] = append(p50[i], ap.P50ms)
			}
		}
		for i, s := range sites {
			ap := AppPoint{App: "redis GET", Topology: TopoVeth, Path: s.def.name, Clients: clients, Requests: n,
				RPS: summarize(rps[i]), P50ms: summarize(p50[i]).Median, Err: errs[i]}
			logf("redis GET -c %d %s: %.0f rps %s", clients, s.def.name, ap.RPS.Median, ap.Err)
			if ap.Err != "" {
				b.rep.Failures = append(b.rep.Failures, fmt.Sprintf("redis GET -c %d %s: %s", clients, s.def.name, ap.Err))
			}
			b.rep.Apps = append(b.rep.Apps, ap)
		}
	}
}
