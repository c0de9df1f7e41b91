// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package testenv

// A node of the test's own for the tests under pkg/: loaded under a fresh
// pin directory, its splice program replaceable by the one with stubbed
// kfunc calls, and the IDs of its objects.

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/node"
)

// LoadNode loads a node under a fresh pin directory (PinDir); both go at
// cleanup. It skips unless root.
func LoadNode(t T) *node.Objects {
	t.Helper()
	RequireRoot(t)
	o, err := node.Load(PinDir(t))
	if err != nil {
		t.Fatalf("node.Load: %v", err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// LoadStubbedSplice replaces o's splice program with this build's, kfunc
// calls stubbed (sbpf.LoadSpliceStubbed), loaded with o's maps and pinned.
func LoadStubbedSplice(t T, o *node.Objects) {
	t.Helper()
	if o.Splice != nil { // the real one, where the module is loaded
		o.Splice.Close()
		o.Splice = nil
	}
	spec, err := sbpf.LoadSpliceStubbed()
	if err != nil {
		t.Fatal(err)
	}
	if err := o.LoadSplice(spec); err != nil {
		t.Fatalf("loading the stubbed splice program with the node's maps: %v", err)
	}
}

// PinnedLink returns the info of the link pinned at pin: its ID, its
// program's, and (cgroup links) its cgroup's, 0 once detached.
func PinnedLink(t T, pin string) *link.Info {
	t.Helper()
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		t.Fatalf("link %s: %v", pin, err)
	}
	return info
}

// ProgID returns a program's ID.
func ProgID(t T, p *ebpf.Program) ebpf.ProgramID {
	t.Helper()
	info, err := p.Info()
	return objID[ebpf.ProgramID](t, "program", info, err)
}

// MapID returns a map's ID.
func MapID(t T, m *ebpf.Map) ebpf.MapID {
	t.Helper()
	info, err := m.Info()
	return objID[ebpf.MapID](t, "map", info, err)
}

// objID returns the ID in a program's or map's info, failing the test
// when there is none.
func objID[I comparable, Info interface{ ID() (I, bool) }](t T, what string, info Info, err error) I {
	t.Helper()
	if err != nil {
		t.Fatalf("%s info: %v", what, err)
	}
	id, ok := info.ID()
	var none I
	if !ok || id == none {
		t.Fatalf("%s has no ID", what)
	}
	return id
}
