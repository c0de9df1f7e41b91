// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package counters_test

import (
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/counters"
	"github.com/socksplice/socksplice/pkg/internal/nodetest"
)

func TestReadFresh(t *testing.T) {
	o := nodetest.Load(t)
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
	nodetest.NeedRoot(t)
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
