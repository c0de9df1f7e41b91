// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package node_test

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/test/testenv"
)

// The loopback connections of splice_test.go run in testenv helpers.
func TestMain(m *testing.M) { testenv.TestMain(m) }

var mapPins = []string{"pairs", "holds", "enroll", "local_addrs", "domain_addrs", "counters", "ns_counters", "retired_counters", "retiring", "selftest", "attachments", "meta"}

// progPins are the programs a Load pins: the splice engine's only where the
// kernel has its kfuncs (the VM loads the module; this host has none).
var progPins = func() []string {
	if node.HaveSpliceKfuncs() {
		return []string{"sockops", "msg", "splice"}
	}
	return []string{"sockops", "msg"}
}()

// cgroupDir creates a fresh cgroup v2 directory, nested one level below
// the root's child, that is removed when the test ends.
func cgroupDir(t *testing.T) string {
	t.Helper()
	return testenv.NewCgroup(t, testenv.NewCgroup(t, testenv.CgroupRoot(t)))
}

func load(t *testing.T, dir string) *node.Objects {
	t.Helper()
	o, err := node.Load(dir)
	if err != nil {
		t.Fatalf("Load(%s): %v", dir, err)
	}
	return o
}

type ids struct {
	Maps  map[string]ebpf.MapID
	Progs map[string]ebpf.ProgramID
}

func objIDs(t *testing.T, o *node.Objects) ids {
	t.Helper()
	return ids{
		Maps: map[string]ebpf.MapID{
			"pairs":            testenv.MapID(t, o.Pairs),
			"holds":            testenv.MapID(t, o.Holds),
			"enroll":           testenv.MapID(t, o.Enroll),
			"local_addrs":      testenv.MapID(t, o.LocalAddrs),
			"domain_addrs":     testenv.MapID(t, o.DomainAddrs),
			"counters":         testenv.MapID(t, o.Counters),
			"ns_counters":      testenv.MapID(t, o.NsCounters),
			"retired_counters": testenv.MapID(t, o.Retired),
			"retiring":         testenv.MapID(t, o.Retiring),
			"selftest":         testenv.MapID(t, o.SelfTestNetns),
			"attachments":      testenv.MapID(t, o.Attach),
			"meta":             testenv.MapID(t, o.Meta),
		},
		Progs: progIDs(t, o),
	}
}

func progIDs(t *testing.T, o *node.Objects) map[string]ebpf.ProgramID {
	t.Helper()
	out := map[string]ebpf.ProgramID{"sockops": testenv.ProgID(t, o.SockOps), "msg": testenv.ProgID(t, o.Msg)}
	if o.Splice != nil {
		out["splice"] = testenv.ProgID(t, o.Splice)
	}
	return out
}

// pinnedIDs opens what is pinned under dir and returns its IDs.
func pinnedIDs(t *testing.T, dir string) ids {
	t.Helper()
	return ids{
		Maps:  pinned(t, filepath.Join(dir, node.MapsDir), mapPins, ebpf.LoadPinnedMap, testenv.MapID),
		Progs: pinned(t, filepath.Join(dir, node.ProgsDir), progPins, ebpf.LoadPinnedProgram, testenv.ProgID),
	}
}

// pinned opens each of names pinned in dir and returns its ID.
func pinned[O io.Closer, I any](t *testing.T, dir string, names []string,
	open func(string, *ebpf.LoadPinOptions) (O, error), id func(testenv.T, O) I) map[string]I {
	t.Helper()
	out := map[string]I{}
	for _, name := range names {
		o, err := open(filepath.Join(dir, name), nil)
		if err != nil {
			t.Fatalf("opening pinned %s: %v", filepath.Join(dir, name), err)
		}
		out[name] = id(t, o)
		o.Close()
	}
	return out
}

func sameIDs(a, b ids) bool {
	if len(a.Maps) != len(b.Maps) || len(a.Progs) != len(b.Progs) {
		return false
	}
	for k, v := range a.Maps {
		if b.Maps[k] != v {
			return false
		}
	}
	for k, v := range a.Progs {
		if b.Progs[k] != v {
			return false
		}
	}
	return true
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func sorted(s []string) []string {
	c := slices.Clone(s)
	sort.Strings(c)
	return c
}
