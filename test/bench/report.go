// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// pathOrder is the column order of every table and chart: the baseline
// first, then the accelerated paths, then the non-TCP references.
var pathOrder = []string{PathTCP, PathSockmap, PathSplice, PathSpliceBP10, PathSpliceBP, PathToolTCP, PathUnix, PathSMC}

// writeReport writes bench.json, bench.md and the charts into dir. Each
// is attempted even when another fails (a NaN makes the JSON unencodable,
// say), so one problem does not throw away a whole run's numbers.
func writeReport(dir string, rep *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var errs []error
	js, err := json.MarshalIndent(rep, "", "  ")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "bench.json"), append(js, '\n'), 0o644)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("bench.json: %w", err))
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.md"), []byte(markdown(rep)), 0o644); err != nil {
		errs = append(errs, fmt.Errorf("bench.md: %w", err))
	}
	if _, err := writeCharts(dir, rep); err != nil {
		errs = append(errs, fmt.Errorf("charts: %w", err))
	}
	return errors.Join(errs...)
}

// markdown renders rep as the human-readable bench.md.
func markdown(rep *Report) string {
	var b strings.Builder
	title := "# socksplice benchmark"
	if rep.Quick {
		title += " (quick)"
	}
	b.WriteString(title + "\n\n")
	b.WriteString(describeRun(rep) + "\n\n")

	if len(rep.Paths) > 0 {
		b.WriteString("## Paths\n\n")
		for _, p := range rep.Paths {
			if p.Available {
				fmt.Fprintf(&b, "- **%s**: available\n", p.Name)
			} else if p.Reason != "" {
				fmt.Fprintf(&b, "- **%s**: not available: %s\n", p.Name, oneLine(p.Reason))
			} else {
				fmt.Fprintf(&b, "- **%s**: not available\n", p.Name)
			}
		}
		b.WriteString("\n")
	}

	for _, topo := range topologies(rep.RR) {
		writeRRSection(&b, rep, topo)
	}
	for _, topo := range topologies(rep.Stream) {
		writeStreamSection(&b, rep, topo)
	}
	writeApps(&b, rep.Apps)
	writeCrossCheck(&b, rep.CrossCheck)
	writeCNI(&b, rep.CNI)
	writeOverhead(&b, rep.Overhead)
	writeCouldNotRun(&b, rep)

	if len(rep.Failures) > 0 {
		b.WriteString("## Failures\n\n")
		b.WriteString("Paths that should have run on this machine and did not:\n\n")
		for _, f := range rep.Failures {
			fmt.Fprintf(&b, "- %s\n", oneLine(f))
		}
		b.WriteString("\n")
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

// describeRun is the opening paragraph: where and how the numbers were
// taken, so a table is never read without its conditions.
func describeRun(rep *Report) string {
	m, s := rep.Machine, rep.Settings
	var parts []string
	if !rep.Started.IsZero() {
		run := "Run started " + rep.Started.UTC().Format("2006-01-02 15:04 UTC")
		if rep.Elapsed > 0 {
			run += " and took " + rep.Elapsed.Round(time.Second).String()
		}
		parts = append(parts, run+".")
	}
	mach := fmt.Sprintf("Machine: Linux %s on %s, %d CPUs, %d GiB memory",
		orUnknown(m.Kernel), orUnknown(m.CPUModel), m.CPUs, m.MemGiB)
	if m.Virt != "" {
		mach += ", " + m.Virt
	}
	if m.GoVersion != "" {
		mach += "; " + m.GoVersion
	}
	parts = append(parts, mach+".")
	if len(rep.RR)+len(rep.Stream) > 0 {
		parts = append(parts, fmt.Sprintf(
			"Each point is the median of %d measured runs of %s each, after one discarded %s warm-up run; paths alternate between runs.",
			s.Runs, s.Duration, s.Warmup))
	}
	parts = append(parts, fmt.Sprintf("The client is pinned to CPU %d and the server to CPU %d.", s.ClientCPU, s.ServerCPU))
	if len(rep.RR)+len(rep.Stream) > 0 {
		parts = append(parts, "Ratios are to tcp at the same topology and size; – means there is no tcp baseline to compare with.")
	}
	return strings.Join(parts, " ")
}

// writeSectionHead writes a section's title and chart and returns its
// points, paths and sizes.
func writeSectionHead(b *strings.Builder, points []Point, kind, title, topo string) ([]Point, []string, []int) {
	sel := selectPoints(points, kind, topo)
	fmt.Fprintf(b, "## %s, %s\n\n", title, topo)
	if hasChartData(points, kind, topo) {
		fmt.Fprintf(b, "![%s, %s](%s)\n\n", strings.ToLower(title), topo, chartName(kind, topo))
	}
	return sel, pathsOf(sel), sizesOf(sel)
}

func writeRRSection(b *strings.Builder, rep *Report, topo string) {
	sel, paths, sizes := writeSectionHead(b, rep.RR, "rr", "Request/response", topo)

	b.WriteString("Transactions/s, median (ratio to tcp):\n\n")
	writeTable(b, "size", paths, sizes, func(p Point) string {
		base, ok := baseline(sel, "rr", topo, p.Size)
		return formatCount(p.TPS.Median) + " " + ratioText(p.TPS.Median, base.TPS.Median, ok)
	}, sel, "rr", topo, false)

	b.WriteString("Latency in µs, p50 / p99 (medians over runs):\n\n")
	writeTable(b, "size", paths, sizes, func(p Point) string {
		return formatUs(p.P50us.Median) + " / " + formatUs(p.P99us.Median)
	}, sel, "rr", topo, true)

	writeRange(b, "Transactions/s, min–max over runs", "size", paths, sizes, func(p Point) string {
		return formatCount(p.TPS.Min) + "–" + formatCount(p.TPS.Max)
	}, sel, "rr", topo)
}

func writeStreamSection(b *strings.Builder, rep *Report, topo string) {
	sel, paths, sizes := writeSectionHead(b, rep.Stream, "stream", "Stream", topo)

	b.WriteString("Gbit/s, median (ratio to tcp):\n\n")
	writeTable(b, "write size", paths, sizes, func(p Point) string {
		base, ok := baseline(sel, "stream", topo, p.Size)
		return fmt.Sprintf("%.2f %s", p.Gbps.Median, ratioText(p.Gbps.Median, base.Gbps.Median, ok))
	}, sel, "stream", topo, false)

	// Medians of user and sys are summed: a close enough total for
	// comparing paths, and the split shows where the cost moved.
	b.WriteString("CPU seconds per GB moved, user + sys of both ends (medians):\n\n")
	writeTable(b, "write size", paths, sizes, func(p Point) string {
		u, s := p.UserSPerGB.Median, p.SysSPerGB.Median
		return fmt.Sprintf("%.2f (%.2f + %.2f)", u+s, u, s)
	}, sel, "stream", topo, true)

	b.WriteString("Mean bytes per read at the receiver (median):\n\n")
	writeTable(b, "write size", paths, sizes, func(p Point) string {
		return formatBytes(p.ReadBytes.Median)
	}, sel, "stream", topo, true)

	// Sleeps per MB show whether a path batches wake-ups or pays one per
	// write.
	b.WriteString("Voluntary context switches per MB moved, both ends (median):\n\n")
	writeTable(b, "write size", paths, sizes, func(p Point) string {
		return fmt.Sprintf("%.1f", p.CtxSwPerMB.Median)
	}, sel, "stream", topo, true)

	writeRange(b, "Gbit/s, min–max over runs", "write size", paths, sizes, func(p Point) string {
		return fmt.Sprintf("%.2f–%.2f", p.Gbps.Min, p.Gbps.Max)
	}, sel, "stream", topo)
}

// writeTableHead writes a table's header: the leading columns (head, with
// their alignment row align), then one right-aligned column per path.
func writeTableHead(b *strings.Builder, head, align string, paths []string) {
	b.WriteString(head)
	for _, p := range paths {
		b.WriteString(" " + p + " |")
	}
	b.WriteString("\n" + align)
	for range paths {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
}

// writeTable writes one size-by-path table; cell renders a point that
// ran and a size a path has no point for stays blank. Errored points show
// the start of their error, or only "error" in the secondary tables
// (brief) so the same message is not repeated down the page.
func writeTable(b *strings.Builder, first string, paths []string, sizes []int, cell func(Point) string, sel []Point, kind, topo string, brief bool) {
	writeTableHead(b, "| "+first+" |", "|---:|", paths)
	for _, size := range sizes {
		b.WriteString("| " + formatSize(size) + " |")
		for _, path := range paths {
			p, ok := findPoint(sel, kind, topo, path, size)
			var s string
			switch {
			case !ok:
				s = ""
			case p.Err != "" && brief:
				s = "error"
			case p.Err != "":
				s = "error: " + shortErr(p.Err)
			default:
				s = cell(p)
			}
			b.WriteString(" " + escapeCell(s) + " |")
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

// writeRange folds the run-to-run spread away so the main tables stay
// legible while the spread is one click from them.
func writeRange(b *strings.Builder, summary, first string, paths []string, sizes []int, cell func(Point) string, sel []Point, kind, topo string) {
	fmt.Fprintf(b, "<details><summary>%s</summary>\n\n", summary)
	writeTable(b, first, paths, sizes, cell, sel, kind, topo, true)
	b.WriteString("</details>\n\n")
}

func writeApps(b *strings.Builder, apps []AppPoint) {
	if len(apps) == 0 {
		return
	}
	type key struct {
		app, topo string
		clients   int
	}
	seen := map[string]bool{}
	var rows []key
	for _, a := range apps {
		seen[a.Path] = true
		k := key{a.App, a.Topology, a.Clients}
		if !slices.Contains(rows, k) {
			rows = append(rows, k)
		}
	}
	slices.SortStableFunc(rows, func(x, y key) int {
		if c := strings.Compare(x.app, y.app); c != 0 {
			return c
		}
		if c := topoRank(x.topo) - topoRank(y.topo); c != 0 {
			return c
		}
		if c := strings.Compare(x.topo, y.topo); c != 0 {
			return c
		}
		return x.clients - y.clients
	})
	paths := orderPaths(seen)
	find := func(k key, path string) (AppPoint, bool) {
		for _, a := range apps {
			if a.App == k.app && a.Topology == k.topo && a.Clients == k.clients && a.Path == path {
				return a, true
			}
		}
		return AppPoint{}, false
	}

	b.WriteString("## Applications\n\n")
	b.WriteString("Requests/s, median (ratio to tcp):\n\n")
	writeTableHead(b, "| app | topology | clients |", "|---|---|---:|", paths)
	for _, k := range rows {
		fmt.Fprintf(b, "| %s | %s | %d |", escapeCell(k.app), escapeCell(k.topo), k.clients)
		base, baseOK := find(k, PathTCP)
		baseOK = baseOK && base.Err == ""
		for _, path := range paths {
			a, ok := find(k, path)
			var s string
			switch {
			case !ok:
			case a.Err != "":
				s = "error: " + shortErr(a.Err)
			default:
				s = formatCount(a.RPS.Median) + " " + ratioText(a.RPS.Median, base.RPS.Median, baseOK)
			}
			b.WriteString(" " + escapeCell(s) + " |")
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

func writeCrossCheck(b *strings.Builder, cc *CrossCheck) {
	if cc == nil {
		return
	}
	b.WriteString("## Cross-check\n\n")
	at := fmt.Sprintf("%s, %s %s", cc.Topology, cc.Path, formatSize(cc.Size))
	if cc.Err != "" {
		fmt.Fprintf(b, "%s at %s could not run: %s\n\n", orUnknown(cc.Tool), at, oneLine(cc.Err))
		return
	}
	agrees := "no"
	if cc.Agrees {
		agrees = "yes"
	}
	fmt.Fprintf(b, "%s at %s: %.1f µs one-way, so %s transactions/s; this tool %s transactions/s; ratio %.2f; agrees within 15%%: **%s**.\n\n",
		orUnknown(cc.Tool), at, cc.SockperfUs, formatCount(cc.SockperfTP), formatCount(cc.ToolTPS), cc.Ratio, agrees)
}

func writeCNI(b *strings.Builder, c *CNICost) {
	if c == nil {
		return
	}
	b.WriteString("## CNI plugin cost\n\n")
	if c.Err != "" {
		fmt.Fprintf(b, "Could not measure everything: %s\n\n", oneLine(c.Err))
	}
	b.WriteString("| operation | n | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n")
	for _, r := range []struct {
		name string
		l    Latency
	}{
		{"socksplice cold ADD (first on node)", c.ColdAdd},
		{"socksplice warm ADD", c.WarmAdd},
		{"socksplice DEL", c.Del},
		{"whole chain ADD", c.ChainAdd},
		{"whole chain DEL", c.ChainDel},
	} {
		if r.l.N == 0 {
			fmt.Fprintf(b, "| %s | 0 | – | – | – |\n", r.name)
			continue
		}
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s |\n", r.name, r.l.N, formatMs(r.l.P50ms), formatMs(r.l.P99ms), formatMs(r.l.MaxMs))
	}
	b.WriteString("\n")
	if c.EnrollN > 0 {
		fmt.Fprintf(b, "Enrolled %d containers one after another through the whole chain in %.1f s", c.EnrollN, c.EnrollSecs)
		if c.EnrollMode != "" {
			fmt.Fprintf(b, " (%s)", oneLine(c.EnrollMode))
		}
		b.WriteString(".\n\n")
	}
}

// writeCouldNotRun lists every errored point in full, since table cells
// only have room for the start of the message.
func writeCouldNotRun(b *strings.Builder, rep *Report) {
	var lines []string
	for _, pts := range [][]Point{rep.RR, rep.Stream} {
		for _, p := range pts {
			if p.Err != "" {
				lines = append(lines, fmt.Sprintf("- %s %s %s %s: %s", p.Kind, p.Topology, p.Path, formatSize(p.Size), oneLine(p.Err)))
			}
		}
	}
	for _, a := range rep.Apps {
		if a.Err != "" {
			lines = append(lines, fmt.Sprintf("- %s %s %s, %d clients: %s", a.App, a.Topology, a.Path, a.Clients, oneLine(a.Err)))
		}
	}
	if len(lines) == 0 {
		return
	}
	b.WriteString("## Could not run\n\n")
	b.WriteString(strings.Join(lines, "\n") + "\n\n")
}
