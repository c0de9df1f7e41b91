// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package counters_test

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/counters"
	"github.com/socksplice/socksplice/pkg/node"
)

func TestReadFresh(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (loads BPF programs and pins them)")
	}
	b := make([]byte, 6)
	rand.Read(b)
	dir := "/sys/fs/bpf/socksplice-unittest-" + hex.EncodeToString(b)
	defer os.RemoveAll(dir)
	o, err := node.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()

	c, err := counters.Read(o.Counters)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if c != (counters.Totals{}) {
		t.Errorf("Read on a fresh load = %+v, want all zero", c)
	}
	// Every CPU's slot counts.
	buf := make([]byte, o.Counters.ValueSize())
	buf[sbpf.CounterRedirectBytes*8] = 3
	buf[sbpf.SlotWords*8*5+sbpf.CounterRedirectBytes*8] = 4
	if err := o.Counters.Update(uint32(0), buf, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	if c, err := counters.Read(o.Counters); err != nil || c != (counters.Totals{RedirectBytes: 7}) {
		t.Errorf("Read = %+v, %v; want redirectBytes 7 only", c, err)
	}
}

// A map of another layout (the 64-byte slots of older builds) is refused.
func TestReadRefusesOtherLayout(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (creates a BPF map)")
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4,
		ValueSize: sbpf.MaxCPUs * 8 * 8, MaxEntries: 1, Flags: unix.BPF_F_MMAPABLE})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if _, err := counters.Read(old); err == nil {
		t.Errorf("Read parsed a map of the old layout")
	}
}
