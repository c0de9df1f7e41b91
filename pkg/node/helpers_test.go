// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package node_test

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/internal/nodetest"
	"github.com/socksplice/socksplice/pkg/node"
)

var mapPins = []string{"pairs", "enroll", "local_addrs", "domain_addrs", "counters", "attachments", "meta"}

// progPins are the programs a Load pins: the splice engine's only where the
// kernel has its kfuncs (the VM loads the module; this host has none).
var progPins = func() []string {
	if node.HaveSpliceKfuncs() {
		return []string{"sockops", "msg", "splice"}
	}
	return []string{"sockops", "msg"}
}()

var (
	needRoot = nodetest.NeedRoot
	pinDir   = nodetest.PinDir
	progID   = nodetest.ProgID
)

// cgroupDir creates a fresh cgroup v2 directory, nested one level below
// the root's child, that is removed when the test ends.
func cgroupDir(t *testing.T) string {
	t.Helper()
	root, err := cgroup.Root()
	if err != nil {
		t.Fatalf("cgroup.Root: %v", err)
	}
	return nodetest.NewCgroup(t, nodetest.NewCgroup(t, root))
}

func load(t *testing.T, dir string) *node.Objects {
	t.Helper()
	o, err := node.Load(dir)
	if err != nil {
		t.Fatalf("Load(%s): %v", dir, err)
	}
	return o
}

func mapID(t *testing.T, m *ebpf.Map) ebpf.MapID {
	t.Helper()
	info, err := m.Info()
	if err != nil {
		t.Fatalf("map info: %v", err)
	}
	id, ok := info.ID()
	if !ok || id == 0 {
		t.Fatalf("map has no ID")
	}
	return id
}

type ids struct {
	Maps  map[string]ebpf.MapID
	Progs map[string]ebpf.ProgramID
}

func objIDs(t *testing.T, o *node.Objects) ids {
	t.Helper()
	return ids{
		Maps: map[string]ebpf.MapID{
			"pairs":        mapID(t, o.Pairs),
			"enroll":       mapID(t, o.Enroll),
			"local_addrs":  mapID(t, o.LocalAddrs),
			"domain_addrs": mapID(t, o.DomainAddrs),
			"counters":     mapID(t, o.Counters),
			"attachments":  mapID(t, o.Attach),
			"meta":         mapID(t, o.Meta),
		},
		Progs: progIDs(t, o),
	}
}

func progIDs(t *testing.T, o *node.Objects) map[string]ebpf.ProgramID {
	t.Helper()
	out := map[string]ebpf.ProgramID{"sockops": progID(t, o.SockOps), "msg": progID(t, o.Msg)}
	if o.Splice != nil {
		out["splice"] = progID(t, o.Splice)
	}
	return out
}

// pinnedIDs opens what is pinned under dir and returns its IDs.
func pinnedIDs(t *testing.T, dir string) ids {
	t.Helper()
	out := ids{Maps: map[string]ebpf.MapID{}, Progs: map[string]ebpf.ProgramID{}}
	for _, name := range mapPins {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, node.MapsDir, name), nil)
		if err != nil {
			t.Fatalf("opening pinned map %s: %v", name, err)
		}
		out.Maps[name] = mapID(t, m)
		m.Close()
	}
	for _, name := range progPins {
		p, err := ebpf.LoadPinnedProgram(filepath.Join(dir, node.ProgsDir, name), nil)
		if err != nil {
			t.Fatalf("opening pinned program %s: %v", name, err)
		}
		out.Progs[name] = progID(t, p)
		p.Close()
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
