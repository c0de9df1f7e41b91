// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package engine

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/socksplice/socksplice/pkg/node"
)

func TestMain(m *testing.M) {
	MaybeRunSelfTestChild() // the self-test re-executes this binary
	os.Exit(m.Run())
}

// TestSelfTestRunsAndCaches runs the behavioural self-test against this
// kernel, checks that the verdict agrees with its own measurements, and
// that the second decision comes from the node cache.
func TestSelfTestRunsAndCaches(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (netns, cgroup, BPF)")
	}
	b := make([]byte, 4)
	rand.Read(b)
	pin := "/sys/fs/bpf/socksplice-enginetest-" + hex.EncodeToString(b)
	t.Cleanup(func() { os.RemoveAll(pin) })
	o, err := node.Load(pin)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f := Probe()
	if err := f.SockmapReady(); err != nil {
		t.Fatalf("this kernel should run sockmap: %v", err)
	}
	d, err := Decide(Auto, f, o, exe)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("auto on %s -> %s: %s | %s", f.Kernel, d.Engine, d.Reason, strings.Join(d.Detail, " | "))
	if d.Cached || len(d.Detail) != 4 {
		t.Fatalf("first decision should come from a fresh self-test with four checks: %+v", d)
	}
	allOK := true
	for _, l := range d.Detail {
		allOK = allOK && strings.Contains(l, "ok=true")
	}
	if (d.Engine == Sockmap) != allOK {
		t.Errorf("verdict %s disagrees with the measurements %v", d.Engine, d.Detail)
	}
	d2, err := Decide(Auto, f, o, exe)
	if err != nil || !d2.Cached || d2.Engine != d.Engine {
		t.Errorf("second decision %+v (%v), want the cached %s", d2, err, d.Engine)
	}
	// The self-test leaves no enrollment and no cgroup behind.
	var k uint64
	var v [80]byte
	if o.Enroll.Iterate().Next(&k, &v) {
		t.Errorf("self-test left netns %d enrolled", k)
	}
}
