// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

// Selecting points for the report's tables and formatting their cells.

import (
	"fmt"
	"slices"
	"strings"
)

// selectPoints keeps the points of one kind and topology.
func selectPoints(points []Point, kind, topo string) []Point {
	var out []Point
	for _, p := range points {
		if p.Kind == kind && p.Topology == topo {
			out = append(out, p)
		}
	}
	return out
}

// findPoint returns the first point matching all four keys.
func findPoint(points []Point, kind, topo, path string, size int) (Point, bool) {
	for _, p := range points {
		if p.Kind == kind && p.Topology == topo && p.Path == path && p.Size == size {
			return p, true
		}
	}
	return Point{}, false
}

// baseline is the tcp point a ratio is taken against; an errored tcp
// point is no baseline.
func baseline(points []Point, kind, topo string, size int) (Point, bool) {
	p, ok := findPoint(points, kind, topo, PathTCP, size)
	return p, ok && p.Err == ""
}

// ratioText is "(2.00x)", or "(–)" when there is nothing to divide by.
func ratioText(v, base float64, ok bool) string {
	if !ok || base <= 0 {
		return "(–)"
	}
	return fmt.Sprintf("(%.2fx)", v/base)
}

// orderPaths returns the paths in set in pathOrder, unknown ones after
// the known, alphabetically.
func orderPaths(set map[string]bool) []string {
	var out []string
	for _, p := range pathOrder {
		if set[p] {
			out = append(out, p)
		}
	}
	var rest []string
	for p := range set {
		if !slices.Contains(pathOrder, p) {
			rest = append(rest, p)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// pathsOf lists the paths with any point, errored ones included, so a
// failure shows in its column rather than the column vanishing.
func pathsOf(points []Point) []string {
	set := map[string]bool{}
	for _, p := range points {
		set[p.Path] = true
	}
	return orderPaths(set)
}

// sizesOf lists the distinct sizes, ascending.
func sizesOf(points []Point) []int {
	var out []int
	for _, p := range points {
		if !slices.Contains(out, p.Size) {
			out = append(out, p.Size)
		}
	}
	slices.Sort(out)
	return out
}

// topologies lists the topologies with points: loopback, veth, then any
// other alphabetically.
func topologies(points []Point) []string {
	var out []string
	for _, p := range points {
		if !slices.Contains(out, p.Topology) {
			out = append(out, p.Topology)
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		if c := topoRank(a) - topoRank(b); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return out
}

func topoRank(t string) int {
	switch t {
	case TopoLoopback:
		return 0
	case TopoVeth:
		return 1
	}
	return 2
}

// formatCount is a rate with an SI suffix: "950", "41.2k", "1.25M".
func formatCount(v float64) string {
	switch {
	case v < 999.5:
		return fmt.Sprintf("%.0f", v)
	case v < 999.95e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.2fM", v/1e6)
	}
}

// formatSize is a message size in binary units: "64 B", "16 KiB".
func formatSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// formatBytes is a mean byte count: "512 B", "61.2 KiB".
func formatBytes(v float64) string {
	switch {
	case v < 1024:
		return fmt.Sprintf("%.0f B", v)
	case v < 1<<20:
		return fmt.Sprintf("%.1f KiB", v/1024)
	default:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	}
}

// formatUs keeps three significant-ish digits for latencies.
func formatUs(v float64) string {
	if v < 100 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func formatMs(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// oneLine flattens a multi-line message so it cannot break a list item.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// shortErr is the start of an error, short enough for a table cell.
func shortErr(s string) string {
	const limit = 40
	s = oneLine(s)
	if r := []rune(s); len(r) > limit {
		return string(r[:limit-1]) + "…"
	}
	return s
}

// escapeCell keeps a pipe in a message from splitting a table cell.
func escapeCell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}
