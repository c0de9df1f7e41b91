// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

import (
	"bytes"
	"encoding/json"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// syntheticReport has tcp, sockmap and unix in both topologies for rr and
// stream, where sockmap is exactly 2x tcp and unix 3x, plus one errored
// tcp point (veth rr 64 KiB) so the sockmap cell beside it has no baseline.
func syntheticReport() *Report {
	rep := &Report{
		Started: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
		Elapsed: 95 * time.Second,
		Quick:   true,
		Machine: Machine{Kernel: "6.12.0", CPUModel: "Test CPU", CPUs: 2, MemGiB: 24, GoVersion: "go1.26.8", Virt: "KVM guest"},
		Settings: Settings{
			Runs: 3, Duration: 2 * time.Second, Warmup: time.Second, ClientCPU: 0, ServerCPU: 1,
			RRSizes: []int{1, 64, 1024, 16384, 65536}, StreamSizes: []int{64, 1024, 16384, 65536},
		},
		Paths: []PathInfo{
			{Name: PathTCP, Available: true},
			{Name: PathSockmap, Available: true},
			{Name: PathUnix, Available: true},
			{Name: PathSMC, Reason: "smc module not loaded"},
		},
		Failures: []string{"splice: expected to run here"},
	}
	mult := map[string]float64{PathTCP: 1, PathSockmap: 2, PathUnix: 3}
	for _, topo := range []string{TopoLoopback, TopoVeth} {
		for _, path := range []string{PathTCP, PathSockmap, PathUnix} {
			m := mult[path]
			for i, size := range rep.Settings.RRSizes {
				tps := (40000 - 5000*float64(i)) * m
				p := Point{
					Kind: "rr", Topology: topo, Path: path, Size: size, Runs: 3,
					TPS:   Stat{Median: tps, Min: tps * 0.95, Max: tps * 1.04},
					P50us: Stat{Median: 1e6 / tps, Min: 1e6 / tps, Max: 1e6 / tps},
					P99us: Stat{Median: 3e6 / tps, Min: 3e6 / tps, Max: 3e6 / tps},
				}
				if topo == TopoVeth && path == PathTCP && size == 65536 {
					p = Point{Kind: "rr", Topology: topo, Path: path, Size: size, Err: "connect: connection refused | retried 3 times and still could not reach the server"}
				}
				rep.RR = append(rep.RR, p)
			}
			for i, size := range rep.Settings.StreamSizes {
				g := (1 + 5*float64(i)) * m
				rep.Stream = append(rep.Stream, Point{
					Kind: "stream", Topology: topo, Path: path, Size: size, Runs: 3,
					Gbps:       Stat{Median: g, Min: g * 0.9, Max: g * 1.1},
					UserSPerGB: Stat{Median: 0.1 / m, Min: 0.1 / m, Max: 0.1 / m},
					SysSPerGB:  Stat{Median: 0.4 / m, Min: 0.4 / m, Max: 0.4 / m},
					ReadBytes:  Stat{Median: float64(size) * m, Min: float64(size), Max: float64(size) * m},
					Verified:   "counters",
				})
			}
		}
		rep.Apps = append(rep.Apps,
			AppPoint{App: "redis GET", Topology: topo, Path: PathTCP, Clients: 50, Requests: 100000, RPS: Stat{Median: 80000, Min: 79000, Max: 81000}},
			AppPoint{App: "redis GET", Topology: topo, Path: PathSockmap, Clients: 50, Requests: 100000, RPS: Stat{Median: 120000, Min: 119000, Max: 121000}},
		)
	}
	rep.CrossCheck = &CrossCheck{Tool: "sockperf 3.7", Topology: TopoLoopback, Path: PathTCP, Size: 64,
		SockperfUs: 14.3, SockperfTP: 34965, ToolTPS: 35000, Ratio: 1.001, Agrees: true}
	rep.CNI = &CNICost{
		ColdAdd: Latency{N: 1, P50ms: 45, P99ms: 45, MaxMs: 45}, WarmAdd: Latency{N: 20, P50ms: 3.1, P99ms: 5.2, MaxMs: 6},
		Del: Latency{N: 20, P50ms: 1.2, P99ms: 2, MaxMs: 2.5}, ChainAdd: Latency{N: 20, P50ms: 30, P99ms: 41, MaxMs: 44},
		ChainDel: Latency{N: 20, P50ms: 12, P99ms: 15, MaxMs: 16}, EnrollN: 50, EnrollSecs: 2.7, EnrollMode: "sequential",
	}
	return rep
}

func TestReportWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out") // writeReport must create it
	rep := syntheticReport()
	if err := writeReport(dir, rep); err != nil {
		t.Fatal(err)
	}

	js, err := os.ReadFile(filepath.Join(dir, "bench.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, rep) {
		t.Errorf("bench.json does not round-trip:\n got %+v\nwant %+v", back, *rep)
	}

	md, err := os.ReadFile(filepath.Join(dir, "bench.md"))
	if err != nil {
		t.Fatal(err)
	}
	if string(md) != markdown(rep) {
		t.Error("bench.md differs from markdown(rep)")
	}
	for _, f := range []string{"rr-loopback.png", "rr-veth.png", "stream-loopback.png", "stream-veth.png"} {
		if !strings.Contains(string(md), "("+f+")") {
			t.Errorf("bench.md does not link %s", f)
		}
	}
}

func TestMarkdownContent(t *testing.T) {
	md := markdown(syntheticReport())
	lines := strings.Split(md, "\n")
	row := func(prefix, contains string) string {
		t.Helper()
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) && strings.Contains(l, contains) {
				return l
			}
		}
		t.Fatalf("no line starting %q containing %q in:\n%s", prefix, contains, md)
		return ""
	}

	// rr loopback 1 B: tcp 40k, sockmap 80k, unix 120k.
	r := row("| 1 B |", "40.0k")
	for _, want := range []string{"40.0k (1.00x)", "80.0k (2.00x)", "120.0k (3.00x)"} {
		if !strings.Contains(r, want) {
			t.Errorf("rr row %q lacks %q", r, want)
		}
	}
	// Column order follows pathOrder, not input order.
	if h := row("| size |", "tcp"); h != "| size | tcp | sockmap | unix |" {
		t.Errorf("header = %q", h)
	}
	// Stream 64 KiB: tcp 16, sockmap 32 Gbit/s.
	if r := row("| 64 KiB |", "16.00"); !strings.Contains(r, "16.00 (1.00x)") || !strings.Contains(r, "32.00 (2.00x)") {
		t.Errorf("stream row = %q", r)
	}
	// CPU: sockmap 0.05 + 0.20 at every size; bytes per read 64 KiB x2.
	if r := row("| 64 KiB |", "(0.10 + 0.40)"); !strings.Contains(r, "0.25 (0.05 + 0.20)") {
		t.Errorf("cpu row = %q", r)
	}
	if r := row("| 64 KiB |", "64.0 KiB"); !strings.Contains(r, "128.0 KiB") {
		t.Errorf("read bytes row = %q", r)
	}

	// veth rr 64 KiB: tcp errored, so the sockmap cell has no baseline.
	r = row("| 64 KiB |", "error: ")
	if !strings.Contains(r, "(–)") {
		t.Errorf("row with errored baseline lacks (–): %q", r)
	}
	if !strings.Contains(r, `\|`) {
		t.Errorf("pipe in error not escaped: %q", r)
	}
	if strings.Count(r, "|")-strings.Count(r, `\|`) != 5 {
		t.Errorf("row does not have 4 cells: %q", r)
	}

	i := strings.Index(md, "## Could not run")
	if i < 0 {
		t.Fatalf("no Could not run section:\n%s", md)
	}
	if !strings.Contains(md[i:], "- rr veth tcp 64 KiB: connect: connection refused") {
		t.Errorf("errored point not listed under Could not run:\n%s", md[i:])
	}

	for _, want := range []string{
		"**smc**: not available: smc module not loaded",
		"median of 3 measured runs of 2s each",
		"CPU 0 and the server to CPU 1",
		"| redis GET | loopback | 50 | 80.0k (1.00x) | 120.0k (1.50x) |",
		"agrees within 15%: **yes**",
		"| socksplice warm ADD | 20 | 3.10 | 5.20 | 6.00 |",
		"Enrolled 50 containers",
		"## Failures",
		"- splice: expected to run here",
		"25.0 / 75.0", // loopback rr 1 B tcp latency
		"38.0k–41.6k", // loopback rr 1 B tcp range
	} {
		if !strings.Contains(md, want) {
			t.Errorf("bench.md lacks %q", want)
		}
	}
}

func TestReportNaNStillWritesMarkdown(t *testing.T) {
	dir := t.TempDir()
	rep := syntheticReport()
	rep.RR[0].TPS.Max = math.NaN()
	if err := writeReport(dir, rep); err == nil || !strings.Contains(err.Error(), "bench.json") {
		t.Errorf("err = %v, want a bench.json error", err)
	}
	for _, f := range []string{"bench.md", "rr-loopback.png"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}

func TestMarkdownNoBaseline(t *testing.T) {
	// A run where tcp could not run at all still renders, with "–".
	rep := &Report{Stream: []Point{{Kind: "stream", Topology: TopoVeth, Path: PathSockmap, Size: 1024, Gbps: Stat{Median: 5}}}}
	md := markdown(rep)
	if !strings.Contains(md, "| 1 KiB | 5.00 (–) |") {
		t.Errorf("missing baseline not shown as –:\n%s", md)
	}
	if strings.Contains(md, "Could not run") {
		t.Error("Could not run section without errors")
	}
}

func TestChartFiles(t *testing.T) {
	dir := t.TempDir()
	rep := syntheticReport()
	// A topology whose points all failed gets no chart.
	rep.Stream = append(rep.Stream, Point{Kind: "stream", Topology: "none", Path: PathTCP, Size: 64, Err: "x"})
	names, err := writeCharts(dir, rep)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"rr-loopback.png", "rr-veth.png", "stream-loopback.png", "stream-veth.png"}
	if !slices.Equal(names, want) {
		t.Errorf("charts = %v, want %v", names, want)
	}
	for _, n := range want {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("%s: no PNG magic", n)
			continue
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Errorf("%s: %v", n, err)
			continue
		}
		if sz := img.Bounds().Size(); sz.X < 850 || sz.X > 950 || sz.Y < 450 || sz.Y > 550 {
			t.Errorf("%s: size %v, want about 900x500", n, sz)
		}
	}
}

func TestReportFormatters(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{formatCount(41234), "41.2k"},
		{formatCount(950), "950"},
		{formatCount(999_970), "1.00M"},
		{formatSize(1), "1 B"},
		{formatSize(1024), "1 KiB"},
		{formatSize(65536), "64 KiB"},
		{formatSize(1500), "1500 B"},
		{ratioText(2, 1, true), "(2.00x)"},
		{ratioText(2, 0, true), "(–)"},
		{ratioText(2, 1, false), "(–)"},
		{shortErr("a\nb"), "a b"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
