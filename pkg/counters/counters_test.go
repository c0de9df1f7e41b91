// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package counters_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/counters"
	"github.com/socksplice/socksplice/test/testenv"
)

func TestReadFresh(t *testing.T) {
	o := testenv.LoadNode(t)
	c, err := counters.Read(o.Counters)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if c != (counters.Totals{}) {
		t.Errorf("Read on a fresh load = %+v, want all zero", c)
	}
	// Every CPU's slot counts.
	buf := make([]byte, o.Counters.ValueSize())
	// redirect_bytes is the third field of struct ss_counters.
	buf[2*8] = 3
	buf[sbpf.SlotWords*8*5+2*8] = 4
	buf[sbpf.SlotWords*8*(sbpf.MaxCPUs-1)+11*8] = 5 // splice_abi_mismatch, the last field, last CPU
	if err := o.Counters.Update(uint32(0), buf, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	if c, err := counters.Read(o.Counters); err != nil || c != (counters.Totals{RedirectBytes: 7, SpliceAbiMismatch: 5}) {
		t.Errorf("Read = %+v, %v; want redirectBytes 7 and spliceAbiMismatch 5 only", c, err)
	}
}

// JSON names the counters as the ABI header does.
func TestJSONNames(t *testing.T) {
	js, err := json.Marshal(counters.Totals{Paired: 3, RedirectBytes: 4096, SpliceAbiMismatch: 7})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"paired":3`, `"redirectBytes":4096`, `"spliceAbiMismatch":7`, `"tcpMsgs":0`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("JSON %s lacks %s", js, want)
		}
	}
}

// A map of another layout (the 64-byte slots of older builds) is refused.
func TestReadRefusesOtherLayout(t *testing.T) {
	testenv.RequireRoot(t)
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
