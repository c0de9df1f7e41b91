// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

import (
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
