// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package bpf

import (
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

func specs(t *testing.T) (main, splice *ebpf.CollectionSpec) {
	t.Helper()
	main, err := LoadSocksplice()
	if err != nil {
		t.Fatal(err)
	}
	splice, err = LoadSplice()
	if err != nil {
		t.Fatal(err)
	}
	return main, splice
}

// The Go counter indexes must be enum counter's in common.h (clang emits no
// BTF for the enum: only inlined functions use it).
func TestCounterIndexes(t *testing.T) {
	want := []struct {
		name string
		idx  int
	}{
		{"C_PAIRED", CounterPaired},
		{"C_REDIRECT_MSGS", CounterRedirectMsgs},
		{"C_REDIRECT_BYTES", CounterRedirectBytes},
		{"C_LOOKUP_MISS", CounterLookupMiss},
		{"C_TCP_MSGS", CounterTCPMsgs},
		{"C_NO_PEER", CounterNoPeer},
		{"C_POLICY", CounterPolicy},
		{"C_INSERT_FAIL", CounterInsertFail},
		{"C_SPLICE_PAIRED", CounterSplicePaired},
		{"C_SPLICE_REFUSED", CounterSpliceRefused},
		{"C_SPLICE_LISTEN_FAIL", CounterSpliceListenFail},
		{"C_MAX", NumCounters},
	}
	src, err := os.ReadFile("common.h")
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := strings.Cut(string(src), "enum counter {")
	body, _, ok2 := strings.Cut(body, "};")
	if !ok || !ok2 {
		t.Fatal("enum counter not found in common.h")
	}
	var got []string
	for _, line := range strings.Split(body, "\n") {
		if f := strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }); len(f) > 0 && strings.HasPrefix(f[0], "C_") {
			got = append(got, f[0])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("enum counter is %v, Go knows %d values", got, len(want))
	}
	for _, w := range want {
		if got[w.idx] != w.name {
			t.Errorf("Go puts %s at %d, common.h has %s there", w.name, w.idx, got[w.idx])
		}
	}
	if NumCounters > SlotWords {
		t.Errorf("%d counters do not fit a %d-word slot", NumCounters, SlotWords)
	}
}

// The splice object is loaded with the main object's maps (MapReplacements):
// the shared maps, .bss included, must have identical layouts.
func TestSharedMapsMatch(t *testing.T) {
	main, splice := specs(t)
	for _, name := range []string{"enroll", "local_addrs", "domain_addrs", ".bss"} {
		a, b := main.Maps[name], splice.Maps[name]
		if a == nil || b == nil {
			t.Fatalf("map %s: in socksplice.o %v, in splice.o %v", name, a != nil, b != nil)
		}
		if a.Type != b.Type || a.KeySize != b.KeySize || a.ValueSize != b.ValueSize ||
			a.MaxEntries != b.MaxEntries || a.Flags != b.Flags {
			t.Errorf("map %s differs: %+v vs %+v", name, a, b)
		}
	}
	if got, want := main.Maps[".bss"].ValueSize, uint32(MaxCPUs*SlotWords*8); got != want {
		t.Errorf(".bss is %d bytes, want %d (counters only)", got, want)
	}
	// Same globals at the same offsets: the counters and nothing else.
	vars := func(spec *ebpf.CollectionSpec) []btf.VarSecinfo {
		ds, ok := spec.Maps[".bss"].Value.(*btf.Datasec)
		if !ok {
			t.Fatalf(".bss value is %T, want a Datasec", spec.Maps[".bss"].Value)
		}
		return ds.Vars
	}
	a, b := vars(main), vars(splice)
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf(".bss holds %d and %d globals, want only counters in each", len(a), len(b))
	}
	if a[0].Type.TypeName() != "counters" || b[0].Type.TypeName() != "counters" ||
		a[0].Offset != b[0].Offset || a[0].Size != b[0].Size {
		t.Errorf(".bss globals differ: %+v vs %+v", a[0], b[0])
	}
}

func TestStampCoversBothObjects(t *testing.T) {
	s := Stamp()
	saved := _SpliceBytes
	defer func() { _SpliceBytes = saved }()
	_SpliceBytes = append([]byte(nil), saved...)
	_SpliceBytes[len(_SpliceBytes)-1] ^= 1
	if Stamp() == s {
		t.Errorf("changing splice.o left the stamp unchanged")
	}
}
