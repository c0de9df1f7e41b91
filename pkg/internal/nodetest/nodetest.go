// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package nodetest gives the tests under pkg/ a node of their own: fresh
// pin directories and cgroups that go when the test ends, and the splice
// program with its kfunc calls stubbed.
package nodetest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/node"
)

// NeedRoot skips the test unless it runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (loads BPF programs, pins them in bpffs, creates cgroups and netns)")
	}
}

// RandHex returns 12 random hex digits, for names of the test's own.
func RandHex(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// PinDir returns a fresh, not yet existing pin directory that is removed
// when the test ends.
func PinDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/bpf", "socksplice-unittest-"+RandHex(t))
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	return dir
}

// Load loads a node under a fresh pin directory (needs root); both go when
// the test ends.
func Load(t testing.TB) *node.Objects {
	t.Helper()
	NeedRoot(t)
	o, err := node.Load(PinDir(t))
	if err != nil {
		t.Fatalf("node.Load: %v", err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// Cgroup creates the cgroup directory dir and removes it when the test
// ends. Cleanups run last-in first-out, so children go before their
// parents and processes started later are gone before their cgroup.
func Cgroup(t testing.TB, dir string) string {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("creating cgroup %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Rmdir(dir); err != nil {
			t.Errorf("rmdir %s: %v", dir, err)
		}
	})
	return dir
}

// NewCgroup creates a cgroup with a fresh name under parent, removed when
// the test ends.
func NewCgroup(t testing.TB, parent string) string {
	t.Helper()
	return Cgroup(t, filepath.Join(parent, "socksplice-unittest-"+RandHex(t)))
}

// LoadStubbedSplice replaces o's splice program with this build's, kfunc
// calls stubbed (sbpf.LoadSpliceStubbed), loaded with o's maps and pinned.
func LoadStubbedSplice(t testing.TB, o *node.Objects) {
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

// ProgID returns a program's ID.
func ProgID(t testing.TB, p *ebpf.Program) ebpf.ProgramID {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatalf("program info: %v", err)
	}
	id, ok := info.ID()
	if !ok || id == 0 {
		t.Fatal("program has no ID")
	}
	return id
}
