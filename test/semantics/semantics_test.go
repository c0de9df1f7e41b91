// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package semantics is the socket-semantics conformance suite: every case
// runs on plain TCP (the reference) and on each engine, in two topologies,
// and what the application observes must be the same. Differences are
// allowed only where known_gaps.json lists them with a reason.
package semantics

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/pkg/selftest"
	"github.com/socksplice/socksplice/test/testenv"
)

// Case is one behaviour. Run returns what the application observed, in
// words that do not depend on ports or timing; an error means the case
// could not complete as an application would expect (lost data, a hang).
type Case struct {
	Name  string
	Run   func(e *Env) (string, error)
	Topos []string // nil: both topologies
	// Data marks cases where any difference means lost, duplicated or
	// misdelivered bytes. An engine where such a case differs, or where any
	// case fails, must never be chosen by "auto".
	Data bool
}

var cases = []Case{
	{Name: "integrity-1B", Run: integrity(1), Data: true},
	{Name: "integrity-1KiB", Run: integrity(1 << 10), Data: true},
	{Name: "integrity-64KiB", Run: integrity(64 << 10), Data: true},
	{Name: "integrity-16MiB", Run: integrity(16 << 20), Data: true},
	{Name: "both-write-first", Run: bothWriteFirst, Data: true},
	{Name: "write-then-close", Run: writeThenClose, Data: true},
	{Name: "half-close", Run: halfClose, Data: true},
	{Name: "linger0-reset", Run: lingerReset},
	{Name: "close-unread-reset", Run: closeUnreadReset},
	{Name: "msg-peek", Run: peek},
	{Name: "msg-trunc", Run: msgTrunc},
	{Name: "msg-waitall", Run: waitAll},
	{Name: "fionread-outq", Run: inq},
	{Name: "so-rcvlowat", Run: rcvLowat},
	{Name: "epoll-level", Run: epollLevel},
	{Name: "epoll-edge", Run: epollEdge},
	{Name: "epoll-rdhup", Run: epollRdhup},
	{Name: "backpressure", Run: backpressure},
	{Name: "so-rcvtimeo", Run: rcvTimeout},
	{Name: "so-sndtimeo", Run: sndTimeout},
	{Name: "splice-read", Run: spliceRead, Data: true},
	{Name: "splice-write", Run: spliceWrite, Data: true},
	{Name: "sendfile", Run: sendfile, Data: true},
	{Name: "io-copy-proxy", Run: ioCopyProxy, Data: true},
	{Name: "msg-zerocopy", Run: zerocopy}, // lost data makes it fail; a missing completion only differs
	{Name: "msg-oob", Run: oob, Data: true},
	{Name: "cork-nodelay", Run: corkNodelay, Data: true},
	{Name: "keepalive", Run: keepalive},
	{Name: "churn", Run: churn, Data: true},
	{Name: "unenrolled-peer", Run: unenrolledPeer, Topos: []string{Veth}, Data: true},
	{Name: "slow-reader-memory", Run: slowReader},
}

// Paths: plain TCP first, it is the reference.
var paths = []Path{
	{Name: "tcp", Plugin: map[string]any{"mode": "off"}},
	{Name: "sockmap", Plugin: map[string]any{"mode": "sockmap"}, Paired: true},
	{Name: "splice", Plugin: map[string]any{"mode": "splice"}, Paired: true, Module: true},
}

var topologies = []string{Loopback, Veth}

// Verdicts.
const (
	Same    = "same"
	Differs = "differs"
	Fails   = "fails"
)

// Cell is one (case, path, topology) result.
type Cell struct {
	Case     string `json:"case"`
	Path     string `json:"path"`
	Topo     string `json:"topology"`
	Verdict  string `json:"verdict"` // same, differs, fails; the reference path is "same" when it passed
	Observed string `json:"observed"`
	Error    string `json:"error,omitempty"`
	Known    string `json:"knownGap,omitempty"`
	Data     bool   `json:"dataCase,omitempty"`
}

//go:embed known_gaps.json
var knownGapsJSON []byte

// knownGaps: engine -> case (or case@topology) -> one-line reason. A reason
// starting "flaky:" is a gap that shows only in some runs: its passing runs
// do not count as stale.
func knownGaps(t *testing.T) map[string]map[string]string {
	var g map[string]map[string]string
	if err := json.Unmarshal(knownGapsJSON, &g); err != nil {
		t.Fatalf("known_gaps.json: %v", err)
	}
	return g
}

func TestMain(m *testing.M) { testenv.TestMain(m) }

// TestSemantics runs the matrix. A case that is not the same as plain TCP
// fails the run unless known_gaps.json lists it for that engine; a listed
// gap that no longer shows fails it too, so the table stays true.
func TestSemantics(t *testing.T) {
	runMatrix(t, "semantics", "Semantics matrix", cases)
}

// runMatrix runs each case on every path and topology, checks the cells
// against plain TCP and known_gaps.json, watches the kernel log, writes
// results/NAME.{json,md} and checks the auto rule.
func runMatrix(t *testing.T, name, title string, cases []Case) {
	testenv.RequireRoot(t)
	gaps := knownGaps(t)
	kmsg := openKmsg(t)
	pin := testenv.PinDir(t)
	run := slices.Clone(paths)
	if !node.HaveSpliceKfuncs() {
		// Only the test kernel can load the module: make vm-test runs it.
		t.Logf("SKIP: path splice: the %s kernel module is not loaded (make vm-test runs this path)", sbpf.SpliceModule)
		run = slices.DeleteFunc(run, func(p Path) bool { return p.Module })
	}
	var cells []Cell
	for _, c := range cases {
		for _, topo := range topologies {
			if c.Topos != nil && !slices.Contains(c.Topos, topo) {
				continue
			}
			var ref *Cell
			for _, p := range run {
				cell := Cell{Case: c.Name, Path: p.Name, Topo: topo, Data: c.Data}
				ran := false
				ok := t.Run(c.Name+"/"+topo+"/"+p.Name, func(t *testing.T) {
					ran = true
					env := newEnv(t, pin, p, topo)
					obs, err := c.Run(env)
					cell.Observed = obs
					if err != nil {
						cell.Error = err.Error()
					}
				})
				if !ran { // filtered out by -run
					continue
				}
				if !ok && cell.Error == "" {
					cell.Error = "the case aborted (see its log)"
				}
				cell.Verdict = verdict(cell, ref)
				if ref == nil {
					ref = &cell
					if cell.Verdict != Same {
						t.Errorf("%s/%s fails on plain TCP, the reference: %s", c.Name, topo, cell.Error)
					}
				} else {
					cell.Known = gaps[p.Name][c.Name]
					if k := gaps[p.Name][c.Name+"@"+topo]; k != "" {
						cell.Known = k
					}
					switch {
					case cell.Verdict != Same && cell.Known == "":
						t.Errorf("NEW GAP %s on %s/%s: %s; TCP: %q, %s: %q %s",
							cell.Verdict, p.Name, topo, c.Name, ref.Observed, p.Name, cell.Observed, cell.Error)
					case cell.Verdict == Same && cell.Known != "" && !strings.HasPrefix(cell.Known, "flaky:"):
						t.Errorf("STALE GAP %s on %s/%s now behaves like TCP: remove it from known_gaps.json", c.Name, p.Name, topo)
					}
				}
				cells = append(cells, cell)
			}
		}
	}
	cells = append(cells, kmsg.check(t)...)
	md := writeMatrix(t, name, title, cells)
	fmt.Println(md)
	checkAutoRule(t, pin, cells)
}

// selfTestCovers maps the suite's data cases to the self-test check that
// catches the same kernel behaviour.
var selfTestCovers = map[string]string{
	"splice-read":                selftest.CheckSpliceRead,
	"io-copy-proxy":              selftest.CheckSpliceRead, // io.Copy reads with splice(2)
	"msg-oob":                    selftest.CheckOOB,
	"backpressure":               selftest.CheckBackpressure,
	"so-sndtimeo":                selftest.CheckBackpressure,
	"slow-reader-memory":         selftest.CheckBackpressure,
	"half-close-inflight-client": selftest.CheckHalfClose,
	"half-close-inflight-server": selftest.CheckHalfClose,
}

// checkAutoRule: for each engine, a data case (or an unbounded-memory
// case) that is not the same as TCP keeps "auto" from choosing that engine,
// and every such deterministic gap is caught by a failing check of that
// engine's self-test.
func checkAutoRule(t *testing.T, pin string, cells []Cell) {
	o, err := node.Load(pin)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	f, exe := engine.Probe(), testenv.PluginBinary(t)
	d, err := engine.Decide(engine.Auto, f, o, exe)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("auto on this node: %s (%s)", d.Engine, d.Reason)
	for _, eng := range []string{engine.Sockmap, engine.Splice} {
		v, err := engine.Verdict(eng, f, o, exe)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s self-test: %s (%s)", eng, v.Engine, v.Reason)
		failedChecks := map[string]bool{}
		for _, l := range v.Detail {
			name, _, _ := strings.Cut(l, ":")
			if strings.Contains(l, "ok=false") {
				failedChecks[name] = true
			}
		}
		for _, c := range cells {
			if c.Path != eng || c.Verdict == Same {
				continue
			}
			check, covered := selfTestCovers[c.Case]
			if !c.Data && !covered && c.Verdict != Fails {
				continue
			}
			if d.Engine == eng {
				t.Errorf("auto picks %s although %s/%s %s for it", eng, c.Case, c.Topo, c.Verdict)
			}
			switch {
			case covered && !failedChecks[check]:
				t.Errorf("%s/%s %s for %s but the self-test check %s passed", c.Case, c.Topo, c.Verdict, eng, check)
			case !covered && !strings.HasPrefix(c.Known, "flaky:"):
				t.Errorf("%s/%s %s for %s and no self-test check covers it: add one to pkg/selftest", c.Case, c.Topo, c.Verdict, eng)
			}
		}
	}
}

func verdict(c Cell, ref *Cell) string {
	switch {
	case c.Error != "":
		return Fails
	case ref == nil || c.Observed == ref.Observed:
		return Same
	default:
		return Differs
	}
}

// resultsDir is where the matrix is written: $SOCKSPLICE_RESULTS or
// results/ at the repository root.
func resultsDir() string {
	if d := os.Getenv("SOCKSPLICE_RESULTS"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "results")
}

// writeMatrix writes NAME.json and NAME.md and returns the Markdown: one
// row per case and topology, one column per path.
func writeMatrix(t *testing.T, name, title string, cells []Cell) string {
	dir := resultsDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	js, _ := json.MarshalIndent(cells, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, name+".json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	kernel := kernelRelease()
	fmt.Fprintf(&b, "%s, kernel %s (same / differs / fails, against plain TCP in the same topology)\n\n", title, kernel)
	b.WriteString("| case | topology |")
	for _, p := range paths {
		b.WriteString(" " + p.Name + " |")
	}
	b.WriteString("\n|---|---|")
	for range paths {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	type row struct{ c, topo string }
	var order []row
	byRow := map[row]map[string]Cell{}
	for _, c := range cells {
		r := row{c.Case, c.Topo}
		if byRow[r] == nil {
			byRow[r] = map[string]Cell{}
			order = append(order, r)
		}
		byRow[r][c.Path] = c
	}
	var notes []string
	for _, r := range order {
		fmt.Fprintf(&b, "| %s | %s |", r.c, r.topo)
		for _, p := range paths {
			c, ok := byRow[r][p.Name]
			v := "n/a"
			if ok {
				v = c.Verdict
				if c.Verdict != Same {
					v = "**" + v + "**"
					detail := c.Error
					if detail == "" {
						detail = c.Observed
					}
					notes = append(notes, fmt.Sprintf("- %s / %s / %s: %s (TCP: %s). Known gap: %s",
						r.c, r.topo, p.Name, detail, byRow[r][paths[0].Name].Observed, orNone(c.Known)))
				}
			}
			b.WriteString(" " + v + " |")
		}
		b.WriteString("\n")
	}
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	md := b.String()
	if err := os.WriteFile(filepath.Join(dir, name+".md"), []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	return md
}

func orNone(s string) string {
	if s == "" {
		return "NOT LISTED"
	}
	return s
}
