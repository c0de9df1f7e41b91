// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package cgroup

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/pkg/internal/nodetest"
	"github.com/socksplice/socksplice/pkg/node"
)

var (
	needRoot = nodetest.NeedRoot
	randHex  = nodetest.RandHex
	mkCgroup = nodetest.Cgroup
	progID   = nodetest.ProgID
)

func root(t *testing.T) string {
	t.Helper()
	r, err := Root()
	if err != nil {
		t.Fatalf("Root: %v", err)
	}
	return r
}

// testParent creates this test's own cgroup under the cgroup v2 root.
func testParent(t *testing.T) string {
	t.Helper()
	name := "socksplice-unittest-" + strconv.Itoa(os.Getpid()) + "-" + randHex(t)
	return mkCgroup(t, filepath.Join(root(t), name))
}

// addNetns creates a named network namespace, deleted when the test ends.
func addNetns(t *testing.T) string {
	t.Helper()
	name := "socksplice-unittest-" + randHex(t)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}

// sleepIn starts `sleep 60` inside the named netns, born in the cgroup at
// cg. It is killed by PID and reaped when the test ends.
func sleepIn(t *testing.T, netns, cg string) *exec.Cmd {
	t.Helper()
	f, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("ip", "netns", "exec", netns, "sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sleep in %s: %v", netns, err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Errorf("killing %d: %v", pid, err)
		}
		_ = cmd.Wait()
	})

	// ip joins the netns after the fork: wait until the process is in it.
	var want syscall.Stat_t
	if err := syscall.Stat("/var/run/netns/"+netns, &want); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+strconv.Itoa(pid)+"/ns/net", &st) == nil && st.Dev == want.Dev && st.Ino == want.Ino {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d never entered netns %s", pid, netns)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cmd
}

func TestCommonAncestor(t *testing.T) {
	for _, tc := range []struct{ a, b, want string }{
		{"/a/b/c", "/a/b/d", "/a/b"},
		{"/a", "/b", "/"},
		{"/a/b", "/a/b", "/a/b"},
		{"/", "/x", "/"},
		{"/x", "/", "/"},
		{"/", "/", "/"},
		{"/a/b", "/a/bc", "/a"},
		{"/a/b/c/d", "/a/b", "/a/b"},
		{"/kubepods/pod1/c1", "/kubepods/pod1/c2", "/kubepods/pod1"},
	} {
		if got := commonAncestor(tc.a, tc.b); got != tc.want {
			t.Errorf("commonAncestor(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestRoot(t *testing.T) {
	r := root(t)
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
	needRoot(t)
	r := root(t)
	parent := testParent(t)
	c1 := mkCgroup(t, filepath.Join(parent, "c1"))
	rel := "/" + filepath.Base(parent) + "/c1"

	for _, tc := range []struct {
		name, runtime, netns string
		wantDir              string
		wantHow              How
	}{
		{"relative to root", rel, "", c1, FromRuntime},
		{"relative without slash", rel[1:], "", c1, FromRuntime},
		{"absolute", c1, "", c1, FromRuntime},
		{"missing, no netns", rel + "/does-not-exist", "", r, NodeLevel},
		{"missing absolute, no netns", c1 + "-missing", "", r, NodeLevel},
		{"equal to root", r, "", r, NodeLevel},
		{"slash", "/", "", r, NodeLevel},
		{"empty", "", "", r, NodeLevel},
		{"netns path that does not exist", "", "/var/run/netns/socksplice-unittest-none-" + randHex(t), r, NodeLevel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, how, err := Resolve(r, tc.runtime, tc.netns)
			if err != nil {
				t.Fatalf("Resolve(%q, %q, %q): %v", r, tc.runtime, tc.netns, err)
			}
			if dir != tc.wantDir || how != tc.wantHow {
				t.Errorf("Resolve(%q, %q, %q) = %q, %q; want %q, %q", r, tc.runtime, tc.netns, dir, how, tc.wantDir, tc.wantHow)
			}
		})
	}
}

func TestResolveFromNetns(t *testing.T) {
	needRoot(t)
	r := root(t)
	parent := testParent(t)
	c1 := mkCgroup(t, filepath.Join(parent, "c1"))
	ns := addNetns(t)
	sleepIn(t, ns, c1)
	nsPath := "/var/run/netns/" + ns

	dir, how, err := Resolve(r, "", nsPath)
	if err != nil || dir != c1 || how != FromNetns {
		t.Errorf("Resolve(root, \"\", %s) = %q, %q, %v; want %q, %q", nsPath, dir, how, err, c1, FromNetns)
	}
	// A runtime path that does not exist yet falls back to the netns.
	dir, how, err = Resolve(r, "/"+filepath.Base(parent)+"/not-yet", nsPath)
	if err != nil || dir != c1 || how != FromNetns {
		t.Errorf("Resolve with a missing runtime path = %q, %q, %v; want %q, %q", dir, how, err, c1, FromNetns)
	}
	// An existing runtime path wins over the netns.
	c2 := mkCgroup(t, filepath.Join(parent, "c2"))
	dir, how, err = Resolve(r, c2, nsPath)
	if err != nil || dir != c2 || how != FromRuntime {
		t.Errorf("Resolve with an existing runtime path = %q, %q, %v; want %q, %q", dir, how, err, c2, FromRuntime)
	}
}

func TestResolveFromNetnsCommonAncestor(t *testing.T) {
	needRoot(t)
	r := root(t)
	parent := testParent(t)
	pod := mkCgroup(t, filepath.Join(parent, "pod"))
	a := mkCgroup(t, filepath.Join(pod, "a"))
	b := mkCgroup(t, filepath.Join(pod, "b"))
	ns := addNetns(t)
	sleepIn(t, ns, a)
	sleepIn(t, ns, b)

	dir, how, err := Resolve(r, "", "/var/run/netns/"+ns)
	if err != nil || dir != pod || how != FromNetns {
		t.Errorf("Resolve with processes in %s and %s = %q, %q, %v; want %q, %q", a, b, dir, how, err, pod, FromNetns)
	}
}

func TestResolveEmptyNetns(t *testing.T) {
	needRoot(t)
	r := root(t)
	ns := addNetns(t)
	dir, how, err := Resolve(r, "", "/var/run/netns/"+ns)
	if err != nil || dir != r || how != NodeLevel {
		t.Errorf("Resolve for a netns without processes = %q, %q, %v; want %q, %q", dir, how, err, r, NodeLevel)
	}
}

// waitAttached polls AttachedIDs until it equals want: the kernel releases
// a link whose last pin is removed asynchronously.
func waitAttached(t *testing.T, dir string, want []ebpf.ProgramID) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := AttachedIDs(dir)
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

func TestAttachDetach(t *testing.T) {
	needRoot(t)
	pinDir := nodetest.PinDir(t)
	parent := testParent(t)
	cg := mkCgroup(t, filepath.Join(parent, "c1"))

	o, err := node.Load(pinDir)
	if err != nil {
		t.Fatalf("node.Load: %v", err)
	}
	t.Cleanup(func() { o.Close() })
	id := progID(t, o.SockOps)

	if got, err := AttachedIDs(cg); err != nil || len(got) != 0 {
		t.Fatalf("AttachedIDs of a new cgroup = %v, %v; want none", got, err)
	}

	pin := filepath.Join(pinDir, node.ContainersDir, "c1")
	if err := Attach(cg, o.SockOps, pin); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if _, err := os.Stat(pin); err != nil {
		t.Fatalf("link pin missing after Attach: %v", err)
	}
	got, err := AttachedIDs(cg)
	if err != nil {
		t.Fatalf("AttachedIDs: %v", err)
	}
	if !slices.Equal(got, []ebpf.ProgramID{id}) {
		t.Fatalf("AttachedIDs after Attach = %v, want [%d]", got, id)
	}
	// The parent sees nothing: only programs attached directly count.
	if got, err := AttachedIDs(parent); err != nil || len(got) != 0 {
		t.Errorf("AttachedIDs of the parent = %v, %v; want none", got, err)
	}

	// Attach again with the same pin: a no-op.
	if err := Attach(cg, o.SockOps, pin); err != nil {
		t.Fatalf("second Attach: %v", err)
	}
	if got, err := AttachedIDs(cg); err != nil || !slices.Equal(got, []ebpf.ProgramID{id}) {
		t.Fatalf("AttachedIDs after the second Attach = %v, %v; want [%d]", got, err, id)
	}

	if err := Detach(pin); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("link pin still there after Detach: %v", err)
	}
	waitAttached(t, cg, nil)

	if err := Detach(pin); err != nil {
		t.Errorf("Detach of a missing pin = %v, want nil", err)
	}
	if err := Detach(filepath.Join(pinDir, node.ContainersDir, "never-pinned")); err != nil {
		t.Errorf("Detach of a never-pinned path = %v, want nil", err)
	}

	// Errors are reported, not swallowed.
	if err := Attach(filepath.Join(parent, "no-such-cgroup"), o.SockOps, filepath.Join(pinDir, node.ContainersDir, "bad")); err == nil {
		t.Errorf("Attach to a missing cgroup succeeded")
	}
	if _, err := os.Stat(filepath.Join(pinDir, node.ContainersDir, "bad")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed Attach left a pin behind: %v", err)
	}
	if _, err := AttachedIDs(filepath.Join(parent, "no-such-cgroup")); err == nil {
		t.Errorf("AttachedIDs of a missing cgroup succeeded")
	}
}
