//go:build !vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

// Not in the VM's suite (build tag vmtest): the steps are the same Go code
// on every kernel, and under QEMU TCG one run of the kills did not finish
// in 20 minutes.

import (
	"bufio"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/socksplice/socksplice/pkg/crashpoint"
	"github.com/socksplice/socksplice/test/testenv"
)

// newFaultRun makes a run with the plugin in mode; want holds the clean
// run's states (nil: this is the clean run).
func newFaultRun(t *testing.T, mode string, want map[string][]string) *faultRun {
	t.Helper()
	r := &faultRun{t: t, want: want, states: map[string][]string{}, trace: filepath.Join(t.TempDir(), "steps")}
	r.n = testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.231.0.0/24", PinDir: testenv.PinDir(t), Plugin: map[string]any{"mode": mode}})
	r.x, r.y = testenv.NewContainer(t, "x"), testenv.NewContainer(t, "y")
	r.view = newStateView(t, r.n, map[string]*testenv.Container{"X": r.x, "Y": r.y})
	return r
}

// victim runs cmd with the plugin killed at step (none: a clean run,
// traced) and returns its error and the steps the plugin completed.
func (r *faultRun) victim(step string, cmd func() error) (error, []string) {
	r.t.Helper()
	env := []string{crashpoint.EnvTrace + "=" + r.trace}
	if step != "" {
		env = append(env, crashpoint.EnvKillAt+"="+step)
	}
	os.Remove(r.trace)
	r.n.PluginEnv(r.t, env...)
	err := cmd()
	r.n.PluginEnv(r.t)
	f, ferr := os.Open(r.trace)
	if ferr != nil {
		r.t.Fatalf("the plugin traced no step: %v", ferr)
	}
	defer f.Close()
	var steps []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		steps = append(steps, sc.Text())
	}
	return err, steps
}

// checkpoint records the state (clean run) or compares it with the clean
// run's at the same point.
func (r *faultRun) checkpoint(name string) {
	r.t.Helper()
	got := r.view.state(r.t)
	if r.want == nil {
		r.states[name] = got
		return
	}
	want, ok := r.want[name]
	if !ok {
		r.t.Fatalf("the clean run has no checkpoint %q", name)
	}
	if d := diffState(want, got); d != "" {
		r.t.Errorf("%s: the state differs from the clean run's:%s", name, d)
	}
	r.compared++
}

// readdXY: ADD of X again, CHECK of both, then DEL of both.
func (r *faultRun) readdXY() {
	r.t.Helper()
	r.must("ADD X again", r.add(r.x))
	r.must("CHECK X", r.check(r.x))
	r.must("CHECK Y", r.check(r.y))
	r.checkpoint("after ADD X again")
	r.must("DEL X", r.n.Del(r.t, r.x))
	r.must("DEL Y", r.n.Del(r.t, r.y))
	r.checkpoint("after DEL of both")
}

// addYDelX follows a first ADD of X: ADD of Y, then the DEL of X that a
// runtime runs after a failed ADD, then readdXY.
func addYDelX(r *faultRun, killed bool) {
	r.t.Helper()
	r.must("ADD Y", r.add(r.y))
	r.must("CHECK Y", r.check(r.y))
	r.must("DEL X", r.n.Del(r.t, r.x))
	r.checkpoint("after DEL X")
	r.readdXY()
}

// faultScenario is a sequence of commands on X and Y, one of which (the
// victim) the fault runs kill, each at another step.
type faultScenario struct {
	name, mode string
	// samePath names an earlier scenario with the same setup: where
	// this one's steps so far are that one's, the kill there was tested.
	samePath string
	setup    func(r *faultRun)
	victim   func(r *faultRun) error
	// after recovers and checks; killed: the victim was killed.
	after func(r *faultRun, killed bool)
}

var faultScenarios = []faultScenario{
	{
		// The first ADD on a node: it installs the node's objects.
		name: "first ADD", mode: "sockmap",
		victim: func(r *faultRun) error { return r.add(r.x) },
		after:  addYDelX,
	},
	{
		// An ADD beside an enrolled container, its leftovers reclaimed
		// by GC (a runtime that died with the plugin never DELs).
		name: "ADD, then GC", mode: "sockmap",
		setup:  func(r *faultRun) { r.must("ADD Y", r.add(r.y)) },
		victim: func(r *faultRun) error { return r.add(r.x) },
		after: func(r *faultRun, killed bool) {
			r.must("GC keeping Y", r.gc(r.y))
			r.must("CHECK Y", r.check(r.y))
			r.checkpoint("after GC")
			r.must("DEL X", r.n.Del(r.t, r.x))
			r.checkpoint("after DEL X")
			r.readdXY()
		},
	},
	{
		// The first ADD with mode auto: it also runs the self-test.
		name: "first ADD, auto", mode: "auto", samePath: "first ADD",
		victim: func(r *faultRun) error { return r.add(r.x) },
		after:  addYDelX,
	},
	{
		// DEL of a container that paired a connection (its counters
		// move to the network's retired ones).
		name: "DEL", mode: "sockmap",
		setup: func(r *faultRun) {
			r.must("ADD X", r.add(r.x))
			r.must("ADD Y", r.add(r.y))
			exchange(r.t, r.y, r.x, netip.AddrPortFrom(r.y.IP(r.n), 5031), 64<<10, 3100, 0)
		},
		victim: func(r *faultRun) error { return r.n.Del(r.t, r.x) },
		after: func(r *faultRun, killed bool) {
			if err := r.check(r.x); err == nil {
				r.t.Errorf("CHECK X after its DEL (killed=%v) succeeded, want an error", killed)
			}
			r.must("CHECK Y", r.check(r.y))
			r.must("DEL X", r.n.Del(r.t, r.x))
			r.checkpoint("after DEL X")
			r.must("ADD X again", r.add(r.x))
			r.must("CHECK X", r.check(r.x))
			r.must("GC keeping both", r.gc(r.x, r.y))
			r.checkpoint("after GC keeping both")
			r.must("DEL X", r.n.Del(r.t, r.x))
			r.must("DEL Y", r.n.Del(r.t, r.y))
			r.checkpoint("after DEL of both")
		},
	},
}

// TestFaultKilledPlugin kills the plugin with SIGKILL right after each
// side-effecting step of ADD and of DEL (pkg/crashpoint names them; a
// clean run of each scenario says which it reaches, and together they
// must reach every one), through libcni with the real bridge and
// host-local plugins. After each kill the next ADD, DEL, CHECK and GC of
// that container and of another one succeed, CHECK fails where the
// attachment is incomplete, STATUS answers, and every checkpoint's state
// (socksplice status, the attachment records, the enrollment, address,
// counters and pair maps, the pins, the links, the programs attached to
// each cgroup, self-test cgroups) is the clean run's.
func TestFaultKilledPlugin(t *testing.T) {
	testenv.RequireRoot(t)
	reached := map[crashpoint.Step]bool{}
	traces := map[string][]string{}
	runs, compared, shared := 0, 0, 0
	for _, sc := range faultScenarios {
		// The clean run: the steps it completes and its states.
		var steps []string
		var want map[string][]string
		ran := t.Run(sc.name+"/clean", func(t *testing.T) {
			r := newFaultRun(t, sc.mode, nil)
			if sc.setup != nil {
				sc.setup(r)
			}
			var err error
			err, steps = r.victim("", func() error { return sc.victim(r) })
			r.must("the victim, not killed", err)
			sc.after(r, false)
			want = r.states
		})
		if !ran || want == nil {
			continue // failed, or not selected by -run
		}
		if len(steps) == 0 {
			t.Errorf("%s: the clean run reached no step", sc.name)
		}
		for _, s := range steps {
			name, _, _ := strings.Cut(s, "#")
			if !slices.Contains(crashpoint.Steps, crashpoint.Step(name)) {
				t.Errorf("%s: the plugin reached step %q, which crashpoint.Steps does not list", sc.name, name)
			}
			reached[crashpoint.Step(name)] = true
		}
		t.Logf("%s: %d steps: %s", sc.name, len(steps), strings.Join(steps, " "))
		traces[sc.name] = steps
		for i, step := range steps {
			if prev := traces[sc.samePath]; len(prev) > i && slices.Equal(prev[:i+1], steps[:i+1]) {
				shared++
				continue
			}
			t.Run(sc.name+"/"+step, func(t *testing.T) {
				r := newFaultRun(t, sc.mode, want)
				if sc.setup != nil {
					sc.setup(r)
				}
				err, done := r.victim(step, func() error { return sc.victim(r) })
				if err == nil {
					t.Fatalf("killed at %s, the command succeeded", step)
				}
				if len(done) == 0 || done[len(done)-1] != step {
					t.Fatalf("killed at %s, the plugin's last step was %v (err %v)", step, done[max(0, len(done)-1):], err)
				}
				r.afterKill()
				sc.after(r, true)
				runs++
				compared += r.compared
			})
		}
	}
	var missed []string
	for _, s := range crashpoint.Steps {
		if !reached[s] {
			missed = append(missed, string(s))
		}
	}
	if len(missed) > 0 {
		t.Errorf("no scenario reached steps %v: a step that is never killed at is not tested", missed)
	}
	t.Logf("summary: %d scenarios, %d kills (SIGKILL after each step a clean run reached, but %d on a path already killed at; %d of %d named steps), %d states compared with the clean runs', all equal unless reported above",
		len(faultScenarios), runs, shared, len(reached), len(crashpoint.Steps), compared)
}
