// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package enroll

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/node"
)

func randHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// loadNode loads a node under a fresh pin directory; both go at cleanup.
func loadNode(t *testing.T) *node.Objects {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (loads BPF programs, pins them, creates cgroups and netns)")
	}
	dir := filepath.Join("/sys/fs/bpf", "socksplice-unittest-"+randHex(t))
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	o, err := node.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// cgroupDir creates a fresh cgroup v2 directory, removed at cleanup.
func cgroupDir(t *testing.T) string {
	t.Helper()
	root, err := cgroup.Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "socksplice-unittest-"+strconv.Itoa(os.Getpid())+"-"+randHex(t))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Rmdir(dir); err != nil {
			t.Errorf("rmdir %s: %v", dir, err)
		}
	})
	return dir
}

// newNetns creates a network namespace, removed at cleanup.
func newNetns(t *testing.T) ns.NetNS {
	t.Helper()
	n, err := testutils.NewNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Close()
		if err := testutils.UnmountNS(n); err != nil {
			t.Errorf("removing netns %s: %v", n.Path(), err)
		}
	})
	return n
}
