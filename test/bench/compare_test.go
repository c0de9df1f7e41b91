// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseCases(t *testing.T) {
	cs, err := parseCases("sockperf:1024,stream:65536@splice, close:64@splice+busypoll", "splice,splice+busypoll")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs {
		got = append(got, c.String())
	}
	want := "sockperf 1 KiB splice|sockperf 1 KiB splice+busypoll|stream 64 KiB splice|close 64 B splice+busypoll"
	if strings.Join(got, "|") != want {
		t.Fatalf("cases %q, want %q", strings.Join(got, "|"), want)
	}
	for _, bad := range []string{"sockperf:8", "rr", "rr:x", "udp:64", "rr:64@tcp"} {
		if _, err := parseCases(bad, "splice"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := parseCases("rr:64", "tcp"); err == nil {
		t.Error("-paths tcp: no error")
	}
}

// Each module's median is over its own rounds only; errors are left out.
func TestCaseStats(t *testing.T) {
	c := cmpCase{Kind: "rr", Size: 64, Path: PathSplice}
	smp := func(v float64, e string) []cmpSample { return []cmpSample{{Case: c, Value: v, Err: e}} }
	rounds := []CmpRound{
		{Module: "a", Samples: smp(100, "")}, {Module: "b", Samples: smp(90, "")},
		{Module: "b", Samples: smp(96, "")}, {Module: "a", Samples: smp(120, "")},
		{Module: "a", Samples: smp(110, "")}, {Module: "b", Samples: smp(1, "broken")},
	}
	st := caseStats([]cmpCase{c}, rounds, []string{"a", "b"})[0]
	if st.OldN != 3 || st.NewN != 2 || st.Old.Median != 110 || st.New.Median != 93 {
		t.Fatalf("stats %+v", st)
	}
	if r := st.Ratio; r < 0.845 || r > 0.846 {
		t.Fatalf("ratio %v, want 93/110", r)
	}
	md := compareMarkdown(&CompareReport{Modules: []CmpModule{{Label: "a"}, {Label: "b"}}, Cases: []CmpCaseStat{st}, Rounds: rounds})
	if !strings.Contains(md, "| rr 64 B | splice | txn/s | 110 (3) | 93 (2) | **0.845** |") {
		t.Fatalf("markdown:\n%s", md)
	}
}

// The server closing first still counts the same transactions on both
// ends, and the client sees the close after its last answer.
func TestServerCloses(t *testing.T) {
	spec := EndSpec{Kind: "rr", Family: "tcp", Addr: freeLoopback(t), Size: 64, Duration: 50 * time.Millisecond, ServerCloses: true}
	srv, cli, serr, cerr := runPair(spec)
	if serr != nil || cerr != nil {
		t.Fatalf("server: %v client: %v", serr, cerr)
	}
	if cli.Txns == 0 || srv.Txns != cli.Txns {
		t.Fatalf("transactions: client %d server %d", cli.Txns, srv.Txns)
	}
}

// The interval for the median: binomial order statistics (n = 12: the
// 3rd and 10th of the sorted ratios, 96.1 %; n = 5 is too few for 95 %).
func TestMedianCI(t *testing.T) {
	xs := []float64{1.12, 0.91, 1.05, 0.97, 1.30, 1.01, 0.88, 1.08, 0.99, 1.03, 1.20, 0.95}
	lo, hi, cov := medianCI(xs, 0.95)
	if lo != 0.95 || hi != 1.12 || math.Abs(cov-0.9614) > 0.0005 {
		t.Errorf("n=12: [%v, %v] at %.4f, want [0.95, 1.12] at 0.9614", lo, hi, cov)
	}
	if lo, hi, cov := medianCI(xs[:6], 0.95); lo != 0.91 || hi != 1.30 || math.Abs(cov-0.96875) > 1e-9 {
		t.Errorf("n=6: [%v, %v] at %v, want the extremes at 0.96875", lo, hi, cov)
	}
	if _, _, cov := medianCI(xs[:5], 0.95); cov != 0 {
		t.Errorf("n=5: coverage %v, want none", cov)
	}
}

// Each round's ratio pairs that round's two turns; a round with a failed
// turn gives none.
func TestRoundRatios(t *testing.T) {
	c := cmpCase{Kind: "sockperf", Size: 64, Path: PathSplice}
	smp := func(vs ...float64) []cmpSample {
		var out []cmpSample
		for _, v := range vs {
			out = append(out, cmpSample{Case: c, Value: v})
		}
		return out
	}
	rounds := []CmpRound{
		{Round: 1, Module: "old", Samples: smp(100, 120, 110)}, {Round: 1, Module: "new", Samples: smp(99)},
		{Round: 2, Module: "new", Samples: smp(300)}, {Round: 2, Module: "old", Samples: smp(200)},
		{Round: 3, Module: "old", Samples: smp(50)}, {Round: 3, Module: "new", Samples: []cmpSample{{Case: c, Err: "x"}}},
	}
	got := roundRatios(c, rounds, []string{"old", "new"})
	if len(got) != 2 || got[0] != 0.9 || got[1] != 1.5 {
		t.Fatalf("ratios %v, want [0.9 1.5]", got)
	}
}
