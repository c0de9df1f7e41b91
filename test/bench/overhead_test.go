// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

import (
	"strings"
	"testing"
)

// Per-round ratios: median, range and the interval of the median
// (medianCI: the 3rd smallest and largest of 12 cover it with 96 %).
func TestRatioOf(t *testing.T) {
	r := ratioOf([]float64{1.05, 0.99, 1.01, 1.00, 1.02, 0.98, 1.03, 1.00, 0.97, 1.01, 1.04, 0.99})
	if r.N != 12 || r.Lo != 0.99 || r.Hi != 1.03 || r.Min != 0.97 || r.Max != 1.05 || r.Median != 1.005 {
		t.Errorf("ratioOf = %+v", r)
	}
}

func TestOverheadMarkdown(t *testing.T) {
	base := OverheadCell{Kind: "crr", Path: "tcp", Rate: Stat{Median: 3000}, CPUus: Stat{Median: 50}}
	mk := func(path string, lo, hi float64) OverheadCell {
		c := base
		c.Path = path
		c.CPURatio = Ratio{N: 12, Median: (lo + hi) / 2, Lo: lo, Hi: hi, Min: lo - 0.01, Max: hi + 0.01}
		return c
	}
	oh := &Overhead{Settings: OverheadSettings{Rounds: 12, Size: 64}, Cells: []OverheadCell{base,
		mk("sockmap, port not allowed", 1.00, 1.02), mk("sockmap, peer not enrolled", 1.04, 1.06),
		mk("splice, port not allowed", 1.01, 1.05), mk("sockmap, paired", 0.8, 0.9),
		{Kind: "rr", Path: "sockmap, port not allowed", ProgNs: Stat{Median: 500}, ProgRuns: Stat{Median: 4},
			ProgShare: Ratio{N: 12, Median: 0.0025, Lo: 0.002, Hi: 0.003}},
		{Kind: "rr", Path: "splice, paired", Err: "not accelerated: paired +0"}}}
	var b strings.Builder
	writeOverhead(&b, oh)
	md := b.String()
	for _, want := range []string{"## Cost when nothing is paired", "### connect + request/response + close",
		"| sockmap, port not allowed | 3.0k | – |", "| below |", "| **above** |", "| not resolved |",
		"| splice, paired | could not run: not accelerated", "| 500 (4.0) | 0.25 % [0.20-0.30] |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
