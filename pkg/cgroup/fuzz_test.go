// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package cgroup

// Fuzz targets for the cgroup paths the plugin is handed or reads: the
// runtime's cgroupPath (Resolve), the paths in /proc/PID/cgroup
// (commonAncestor) and the mount table (Root). Run by make fuzz; plain go
// test runs their corpora in testdata/fuzz.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzResolve resolves an arbitrary runtime cgroupPath against a root
// holding pod/c1: the answer is never outside the root, is an existing
// directory named by the path when there is one, and the root otherwise.
func FuzzResolve(f *testing.F) {
	base := f.TempDir()
	root := filepath.Join(base, "root")
	for _, d := range []string{filepath.Join(root, "pod", "c1"), filepath.Join(base, "outside")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, runtimePath string) {
		dir, how, err := Resolve(root, runtimePath, "")
		if err != nil {
			t.Fatalf("Resolve(%q): %v", runtimePath, err)
		}
		if dir != root && !strings.HasPrefix(dir, root+"/") || filepath.Clean(dir) != dir {
			t.Fatalf("Resolve(%q) = %q, not a clean path under the root %q", runtimePath, dir, root)
		}
		switch how {
		case NodeLevel:
			if dir != root {
				t.Errorf("Resolve(%q) = %q at node level, want the root", runtimePath, dir)
			}
		case FromRuntime:
			if st, err := os.Stat(dir); err != nil || !st.IsDir() || dir == root {
				t.Errorf("Resolve(%q) = %q from the runtime, which is no directory below the root", runtimePath, dir)
			}
		default:
			t.Errorf("Resolve(%q) = %q, %q: without a netns only the runtime's path or the root", runtimePath, dir, how)
		}
		// A path naming the container's directory must find it: relative
		// to the root (absolute, or relative without climbing out of the
		// root first), or under the root's own path.
		c := filepath.Clean(runtimePath)
		if (c == "/pod/c1" || c == "pod/c1" || c == root+"/pod/c1") && (how != FromRuntime || dir != filepath.Join(root, "pod", "c1")) {
			t.Errorf("Resolve(%q) = %q, %q; want %s/pod/c1 from the runtime", runtimePath, dir, how, root)
		}
	})
}

// FuzzCommonAncestor checks the deepest shared cgroup of two paths: an
// ancestor (or the path itself) of both, symmetric, and no deeper one
// exists.
func FuzzCommonAncestor(f *testing.F) {
	f.Fuzz(func(t *testing.T, a, b string) {
		if !strings.HasPrefix(a, "/") || !strings.HasPrefix(b, "/") {
			return // /proc/PID/cgroup gives absolute paths
		}
		a, b = filepath.Clean(a), filepath.Clean(b)
		got := commonAncestor(a, b)
		if got != commonAncestor(b, a) {
			t.Errorf("commonAncestor(%q, %q) = %q but the other way round %q", a, b, got, commonAncestor(b, a))
		}
		within := func(p string) bool { return got == "/" || p == got || strings.HasPrefix(p, got+"/") }
		if !within(a) || !within(b) {
			t.Fatalf("commonAncestor(%q, %q) = %q, not an ancestor of both", a, b, got)
		}
		// One element deeper along a is no longer shared with b.
		if rest := strings.TrimPrefix(strings.TrimPrefix(a, got), "/"); rest != "" {
			deeper := strings.TrimSuffix(got, "/") + "/" + strings.SplitN(rest, "/", 2)[0]
			if b == deeper || strings.HasPrefix(b, deeper+"/") {
				t.Errorf("commonAncestor(%q, %q) = %q, but %q is shared too", a, b, got, deeper)
			}
		}
		if commonAncestor(a, a) != a {
			t.Errorf("commonAncestor(%q, itself) = %q", a, commonAncestor(a, a))
		}
	})
}

// mangle escapes a path as the kernel does in /proc/PID/mountinfo.
func mangle(p string) string {
	var b strings.Builder
	for _, c := range []byte(p) {
		if c == ' ' || c == '\t' || c == '\n' || c == '\\' {
			fmt.Fprintf(&b, "\\%03o", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// FuzzMountinfo reads the cgroup v2 mount point from an arbitrary mount
// table (no panic; an answer is an absolute path, from a table with a
// cgroup2 line), and from one
// whose cgroup2 mount point is an arbitrary path: it is that path, as it
// was before the kernel escaped it.
func FuzzMountinfo(f *testing.F) {
	f.Fuzz(func(t *testing.T, table []byte, mountPoint string) {
		if got, err := rootFrom(bytes.NewReader(table)); err == nil && (!strings.HasPrefix(got, "/") || !bytes.Contains(table, []byte(" - cgroup2"))) {
			t.Errorf("found cgroup2 at %q: not an absolute path from a cgroup2 line", got)
		}
		if !strings.HasPrefix(mountPoint, "/") || strings.ContainsRune(mountPoint, 0) || filepath.Clean(mountPoint) != mountPoint {
			return // the kernel lists clean absolute paths
		}
		mi := "22 1 0:21 / /proc rw,nosuid - proc proc rw\n" +
			"30 22 0:26 / " + mangle(mountPoint) + " rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
		got, err := rootFrom(strings.NewReader(mi))
		if err != nil || got != mountPoint {
			t.Errorf("cgroup2 mounted at %q: read %q, %v", mountPoint, got, err)
		}
	})
}
