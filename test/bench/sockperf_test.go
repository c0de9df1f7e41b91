// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

import (
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/socksplice/socksplice/test/testenv"
)

func TestParseSPWorkloads(t *testing.T) {
	w, err := parseSPWorkloads(spDefaultWorkloads)
	if err != nil {
		t.Fatal(err)
	}
	want := []spWorkload{{spPingPong, 64}, {spPingPong, 1024}, {spPingPong, 16384},
		{spThroughput, 1024}, {spThroughput, 4096}, {spThroughput, 65507}}
	if !reflect.DeepEqual(w, want) {
		t.Errorf("got %v, want %v", w, want)
	}
	if w[0].kind() != "rr" || w[3].kind() != "stream" || w[5].String() != "throughput 65507 B" {
		t.Errorf("kind/String: %s %s %q", w[0].kind(), w[3].kind(), w[5].String())
	}
	for in, want := range map[string]string{
		"":            "no workload",
		"pp:13":       "14 (its header)",
		"tp:65536":    "to 65507 bytes",
		"rr:64":       "mode is pp",
		"pp":          "want pp:BYTES",
		"pp:64,pp:64": "twice",
	} {
		if _, err := parseSPWorkloads(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error containing %q", in, err, want)
		}
	}
	if got, err := parseNames("-x", "veth, netkit,veth", []string{"loopback", "veth", "netkit"}); err != nil || !reflect.DeepEqual(got, []string{"veth", "netkit"}) {
		t.Errorf("parseNames: %v %v", got, err)
	}
	if _, err := parseNames("-x", "lo", []string{"loopback"}); err == nil || !strings.Contains(err.Error(), `"lo" is not one of loopback`) {
		t.Errorf("parseNames of an unknown name: %v", err)
	}
}

// syntheticSockperf has, in one topology, tcp and splice (2x better) and
// the tool's tcp and unix (3x its tcp), ping-pong and throughput, and a
// splice throughput point that failed.
func syntheticSockperf() *SockperfReport {
	rep := &SockperfReport{Started: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), Elapsed: time.Minute,
		Machine: Machine{Kernel: "6.12.117", CPUModel: "Test CPU", CPUs: 2, MemGiB: 4, Virt: "QEMU TCG guest"},
		Tool:    "sockperf 3.7",
		Settings: SockperfSettings{Runs: 3, Duration: 5 * time.Second, ClientCPU: 0, ServerCPU: 1,
			Workloads: []spWorkload{{spPingPong, 1024}, {spThroughput, 4096}}},
		Topologies: []PathInfo{{Name: TopoVeth, Available: true}, {Name: TopoNetkit, Reason: "no netkit here"}},
		Paths:      []PathInfo{{Name: PathTCP, Available: true}, {Name: PathSplice, Available: true}, {Name: PathSockmap, Reason: "no sockmap"}},
	}
	st := func(v float64) Stat { return Stat{Median: v, Min: v * 0.9, Max: v * 1.1} }
	for _, c := range []struct {
		path string
		lat  float64
		mps  float64
		tool string
	}{{PathTCP, 100, 10000, "sockperf"}, {PathSplice, 50, 20000, "sockperf"}, {PathToolTCP, 90, 9000, "bench"}, {PathUnix, 30, 27000, "bench"}} {
		rr := Point{Kind: "rr", Topology: TopoVeth, Path: c.path, Size: 1024, Runs: 3, Tool: c.tool,
			LatUs: st(c.lat), TPS: st(1e6 / (2 * c.lat)), CliCPUUs: st(c.lat / 2), SrvCPUUs: st(c.lat / 3)}
		if c.path == PathSplice {
			rr.Path = PathSpliceBP
			rr.BusyPollHitPct, rr.BusyPolls = st(97), st(12000)
		}
		tp := Point{Kind: "stream", Topology: TopoVeth, Path: c.path, Size: 4096, Runs: 3, Tool: c.tool,
			MsgPS: st(c.mps), Gbps: st(c.mps * 4096 * 8 / 1e9), CliCPUUs: st(5), SrvCPUUs: st(6)}
		if c.path == PathSplice {
			tp = Point{Kind: "stream", Topology: TopoVeth, Path: c.path, Size: 4096, Tool: c.tool, Err: "not accelerated: paired +0"}
		}
		rep.Points = append(rep.Points, rr, tp)
	}
	rep.Failures = []string{"sockperf throughput 4 KiB veth splice: not accelerated: paired +0"}
	return rep
}

func TestSockperfMarkdown(t *testing.T) {
	rep := syntheticSockperf()
	md := sockperfMarkdown(rep)
	for _, want := range []string{
		"| workload: one-way us (ping-pong) or msg/s (throughput), ratio | tcp | splice | splice + busy-poll 50 us | tcp (tool) | unix (tool) |",
		// splice halves tcp's latency; the tool's tcp is compared with
		// sockperf's tcp, unix with the tool's tcp.
		"| ping-pong 1 KiB | 100 (1.00x) | | 50.0 (2.00x) | 90.0 (1.11x) | 30.0 (3.00x) |",
		"| throughput 4 KiB | 10.0k (1.00x) | error: not accelerated: paired +0 | | 9.0k (0.90x) | 27.0k (3.00x) |",
		"| ping-pong 1 KiB | 50.0 + 33.3 | | 25.0 + 16.7 | 45.0 + 30.0 | 15.0 + 10.0 |",
		"| ping-pong 1 KiB | 97 % of 12000 |",
		"topology **netkit**: not available: no netkit here",
		"path **sockmap**: not available: no sockmap",
		"## Failures",
		"![rr veth](sockperf-rr-veth.png)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	dir := t.TempDir()
	if err := writeSockperfReport(dir, rep, md); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"sockperf.json", "sockperf.md", "sockperf-rr-veth.png", "sockperf-stream-veth.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestSockperfOnce runs real sockperf ping-pong and throughput in one
// container over its lo: the server handled what the client sent, both
// processes' CPU time was read, and the run passes the baseline's path
// check (lo carried the payload).
func TestSockperfOnce(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := exec.LookPath("sockperf"); err != nil {
		t.Skip("SKIP: sockperf not installed (apt-get install sockperf)")
	}
	c := testenv.NewContainer(t, "spo")
	s := &site{def: allPaths[0], srv: c, cli: c}
	for _, mode := range []string{spPingPong, spThroughput} {
		lo0 := c.LoBytes(t)
		out, err := sockperfOnce(t, c, c, spRun{Mode: mode, Addr: netip.MustParseAddr("127.0.0.1"), Size: 1024, Dur: time.Second, SrvCPU: -1, CliCPU: -1})
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		moved := float64(out.ServerMsgs) * 1024
		if mode == spPingPong {
			moved *= 2
		}
		v, err := s.verify(TopoLoopback, moved, c.LoBytes(t)-lo0, testenv.Counters{}, testenv.Counters{})
		t.Logf("summary: sockperf %s %s: %d sent, %d handled, client %.2f s CPU (start-up left out: %v), server %.2f s CPU, drain %.3f s; %s",
			out.Version, mode, out.Sent, out.ServerMsgs, out.CliCPU, out.CliSetupSampled, out.SrvCPU, out.DrainS, v)
		if !out.CliSetupSampled {
			t.Errorf("%s: the client's start-up CPU was not sampled in its warm-up sleep", mode)
		}
		if err != nil {
			t.Error(err)
		}
		if out.Sent == 0 || out.CliCPU <= 0 || out.SrvCPU <= 0 || out.DrainS < 0 || out.DrainS > 5 || math.IsNaN(out.CliCPU) {
			t.Errorf("%s: %+v", mode, out)
		}
	}
}
