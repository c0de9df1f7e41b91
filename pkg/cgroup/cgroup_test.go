// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package cgroup_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/test/testenv"
)

// The processes that Resolve finds in a netns are testenv's idle helpers.
func TestMain(m *testing.M) { testenv.TestMain(m) }

func TestRoot(t *testing.T) {
	r, err := cgroup.Root()
	if err != nil {
		t.Fatalf("Root: %v", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(r, &st); err != nil {
		t.Fatalf("statfs %s: %v", r, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Fatalf("Root() = %s, which is not a cgroup2 mount (fs type %#x)", r, st.Type)
	}
	// On a unified host the root is /sys/fs/cgroup, on a hybrid host (such
	// as the one these tests were written on) /sys/fs/cgroup/unified.
	want := "/sys/fs/cgroup/unified"
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		want = "/sys/fs/cgroup"
	}
	if r != want {
		t.Fatalf("Root() = %s, want %s", r, want)
	}
}

func TestResolveRuntimePath(t *testing.T) {
	testenv.RequireRoot(t)
	r := testenv.CgroupRoot(t)
	parent := testenv.NewCgroup(t, r)
	c1 := testenv.Cgroup(t, filepath.Join(parent, "c1"))
	rel := "/" + filepath.Base(parent) + "/c1"

	for _, tc := range []struct {
		name, runtime, netns string
		wantDir              string
		wantHow              cgroup.How
	}{
		{"relative to root", rel, "", c1, cgroup.FromRuntime},
		{"relative without slash", rel[1:], "", c1, cgroup.FromRuntime},
		{"absolute", c1, "", c1, cgroup.FromRuntime},
		{"missing, no netns", rel + "/does-not-exist", "", r, cgroup.NodeLevel},
		{"missing absolute, no netns", c1 + "-missing", "", r, cgroup.NodeLevel},
		{"equal to root", r, "", r, cgroup.NodeLevel},
		{"slash", "/", "", r, cgroup.NodeLevel},
		{"empty", "", "", r, cgroup.NodeLevel},
		{"netns path that does not exist", "", filepath.Join(t.TempDir(), "no-netns"), r, cgroup.NodeLevel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, how, err := cgroup.Resolve(r, tc.runtime, tc.netns)
			if err != nil {
				t.Fatalf("Resolve(%q, %q, %q): %v", r, tc.runtime, tc.netns, err)
			}
			if dir != tc.wantDir || how != tc.wantHow {
				t.Errorf("Resolve(%q, %q, %q) = %q, %q; want %q, %q", r, tc.runtime, tc.netns, dir, how, tc.wantDir, tc.wantHow)
			}
		})
	}
}

// TestResolveFromNetns: a process in the netns names its cgroup; the
// runtime's path wins when it exists.
func TestResolveFromNetns(t *testing.T) {
	testenv.RequireRoot(t)
	r := testenv.CgroupRoot(t)
	c := testenv.NewContainer(t, "resolve")
	c.StartIdle(t, "")

	dir, how, err := cgroup.Resolve(r, "", c.Netns)
	if err != nil || dir != c.Cgroup || how != cgroup.FromNetns {
		t.Errorf("Resolve(root, \"\", %s) = %q, %q, %v; want %q, %q", c.Netns, dir, how, err, c.Cgroup, cgroup.FromNetns)
	}
	// A runtime path that does not exist yet falls back to the netns.
	dir, how, err = cgroup.Resolve(r, c.CgroupRel+"/not-yet", c.Netns)
	if err != nil || dir != c.Cgroup || how != cgroup.FromNetns {
		t.Errorf("Resolve with a missing runtime path = %q, %q, %v; want %q, %q", dir, how, err, c.Cgroup, cgroup.FromNetns)
	}
	// An existing runtime path wins over the netns.
	c2 := testenv.NewCgroup(t, r)
	dir, how, err = cgroup.Resolve(r, c2, c.Netns)
	if err != nil || dir != c2 || how != cgroup.FromRuntime {
		t.Errorf("Resolve with an existing runtime path = %q, %q, %v; want %q, %q", dir, how, err, c2, cgroup.FromRuntime)
	}
}

// TestResolveFromNetnsCommonAncestor: processes of one netns in two
// cgroups (containers of a pod) name the deepest cgroup they share.
func TestResolveFromNetnsCommonAncestor(t *testing.T) {
	testenv.RequireRoot(t)
	r := testenv.CgroupRoot(t)
	pod := testenv.NewContainer(t, "pod")
	a := testenv.Cgroup(t, filepath.Join(pod.Cgroup, "a"))
	b := testenv.Cgroup(t, filepath.Join(pod.Cgroup, "b"))
	pod.StartIdle(t, a)
	pod.StartIdle(t, b)

	dir, how, err := cgroup.Resolve(r, "", pod.Netns)
	if err != nil || dir != pod.Cgroup || how != cgroup.FromNetns {
		t.Errorf("Resolve with processes in %s and %s = %q, %q, %v; want %q, %q", a, b, dir, how, err, pod.Cgroup, cgroup.FromNetns)
	}
}

func TestResolveEmptyNetns(t *testing.T) {
	testenv.RequireRoot(t)
	r := testenv.CgroupRoot(t)
	c := testenv.NewContainer(t, "empty")
	dir, how, err := cgroup.Resolve(r, "", c.Netns)
	if err != nil || dir != r || how != cgroup.NodeLevel {
		t.Errorf("Resolve for a netns without processes = %q, %q, %v; want %q, %q", dir, how, err, r, cgroup.NodeLevel)
	}
}

// waitAttached polls AttachedIDs until it equals want: the kernel releases
// a link whose last pin is removed asynchronously.
func waitAttached(t *testing.T, dir string, want []ebpf.ProgramID) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := cgroup.AttachedIDs(dir)
		if err != nil {
			t.Fatalf("AttachedIDs(%s): %v", dir, err)
		}
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("AttachedIDs(%s) = %v, want %v", dir, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustID(t *testing.T, dir string) uint64 {
	t.Helper()
	id, err := cgroup.ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestAttachDetach(t *testing.T) {
	o := testenv.LoadNode(t)
	pinDir := o.Dir
	parent := testenv.NewCgroup(t, testenv.CgroupRoot(t))
	cg := testenv.Cgroup(t, filepath.Join(parent, "c1"))
	id := testenv.ProgID(t, o.SockOps)

	if got, err := cgroup.AttachedIDs(cg); err != nil || len(got) != 0 {
		t.Fatalf("AttachedIDs of a new cgroup = %v, %v; want none", got, err)
	}

	pin := filepath.Join(pinDir, node.ContainersDir, "c1")
	if err := cgroup.Attach(cg, o.SockOps, pin); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if _, err := os.Stat(pin); err != nil {
		t.Fatalf("link pin missing after Attach: %v", err)
	}
	got, err := cgroup.AttachedIDs(cg)
	if err != nil {
		t.Fatalf("AttachedIDs: %v", err)
	}
	if !slices.Equal(got, []ebpf.ProgramID{id}) {
		t.Fatalf("AttachedIDs after Attach = %v, want [%d]", got, id)
	}
	// The parent sees nothing: only programs attached directly count.
	if got, err := cgroup.AttachedIDs(parent); err != nil || len(got) != 0 {
		t.Errorf("AttachedIDs of the parent = %v, %v; want none", got, err)
	}

	// Attach again with the same pin: a no-op (the same link).
	first := testenv.PinnedLink(t, pin).ID
	if err := cgroup.Attach(cg, o.SockOps, pin); err != nil {
		t.Fatalf("second Attach: %v", err)
	}
	if got, err := cgroup.AttachedIDs(cg); err != nil || !slices.Equal(got, []ebpf.ProgramID{id}) {
		t.Fatalf("AttachedIDs after the second Attach = %v, %v; want [%d]", got, err, id)
	}
	if l := testenv.PinnedLink(t, pin).ID; l != first {
		t.Errorf("the second Attach replaced link %d by %d, want it kept", first, l)
	}
	if at, err := cgroup.LinkCgroup(pin); err != nil || at != mustID(t, cg) {
		t.Errorf("LinkCgroup = %d, %v; want %s's ID %d", at, err, cg, mustID(t, cg))
	}

	// The same pin for another cgroup: the link moves there.
	cg2 := testenv.Cgroup(t, filepath.Join(parent, "c2"))
	if err := cgroup.Attach(cg2, o.SockOps, pin); err != nil {
		t.Fatalf("Attach of the pin to another cgroup: %v", err)
	}
	waitAttached(t, cg, nil)
	if got, err := cgroup.AttachedIDs(cg2); err != nil || !slices.Equal(got, []ebpf.ProgramID{id}) {
		t.Fatalf("AttachedIDs of the other cgroup = %v, %v; want [%d]", got, err, id)
	}

	// Detached by hand (the pin stays): LinkCgroup says 0, and Attach
	// attaches again.
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Detach(); err != nil {
		t.Fatalf("detaching by hand: %v", err)
	}
	l.Close()
	if at, err := cgroup.LinkCgroup(pin); err != nil || at != 0 {
		t.Errorf("LinkCgroup of a detached link = %d, %v; want 0", at, err)
	}
	if err := cgroup.Attach(cg2, o.SockOps, pin); err != nil {
		t.Fatalf("Attach over a detached link: %v", err)
	}
	if got, err := cgroup.AttachedIDs(cg2); err != nil || !slices.Equal(got, []ebpf.ProgramID{id}) {
		t.Fatalf("AttachedIDs after attaching over a detached link = %v, %v; want [%d]", got, err, id)
	}

	if err := cgroup.Detach(pin); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("link pin still there after Detach: %v", err)
	}
	waitAttached(t, cg, nil)

	if err := cgroup.Detach(pin); err != nil {
		t.Errorf("Detach of a missing pin = %v, want nil", err)
	}
	if err := cgroup.Detach(filepath.Join(pinDir, node.ContainersDir, "never-pinned")); err != nil {
		t.Errorf("Detach of a never-pinned path = %v, want nil", err)
	}

	// Errors are reported, not swallowed.
	if err := cgroup.Attach(filepath.Join(parent, "no-such-cgroup"), o.SockOps, filepath.Join(pinDir, node.ContainersDir, "bad")); err == nil {
		t.Errorf("Attach to a missing cgroup succeeded")
	}
	if _, err := os.Stat(filepath.Join(pinDir, node.ContainersDir, "bad")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed Attach left a pin behind: %v", err)
	}
	if _, err := cgroup.AttachedIDs(filepath.Join(parent, "no-such-cgroup")); err == nil {
		t.Errorf("AttachedIDs of a missing cgroup succeeded")
	}
}
