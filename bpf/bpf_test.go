// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package bpf

import (
	"encoding/binary"
	"encoding/json"
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

// The counters array decodes slot by slot and sums per field; JSON names
// the fields as the ABI header does.
func TestSumCounters(t *testing.T) {
	buf := make([]byte, CountersSize)
	slot := CountersSize / MaxCPUs
	put := func(cpu, word int, v uint64) { binary.NativeEndian.PutUint64(buf[cpu*slot+word*8:], v) }
	put(0, 0, 1) // paired
	put(MaxCPUs-1, 0, 2)
	put(3, 2, 4096) // redirect_bytes
	put(5, 11, 7)   // splice_abi_mismatch, the last field
	c, err := SumCounters(buf)
	if err != nil {
		t.Fatal(err)
	}
	if c.Paired != 3 || c.RedirectBytes != 4096 || c.SpliceAbiMismatch != 7 || c.RedirectMsgs != 0 {
		t.Errorf("summed %+v", c)
	}
	if _, err := SumCounters(buf[:len(buf)-8]); err == nil {
		t.Error("a counters array of another size was accepted")
	}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"paired":3`, `"redirectBytes":4096`, `"spliceAbiMismatch":7`, `"tcpMsgs":0`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("JSON %s lacks %s", js, want)
		}
	}
}

// The splice object tells the module the ABI version it was built with.
func TestSpliceCarriesABIVersion(t *testing.T) {
	_, splice := specs(t)
	v := splice.Variables[SpliceVarSsAbiVersion]
	if v == nil || !v.Constant() {
		t.Fatalf("splice.o has no read-only %s", SpliceVarSsAbiVersion)
	}
	var got uint32
	if err := v.Get(&got); err != nil {
		t.Fatal(err)
	}
	if got != ABIVersion {
		t.Errorf("splice.o carries ABI version %d, the header says %d", got, ABIVersion)
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
	if got, want := main.Maps[".bss"].ValueSize, uint32(CountersSize); got != want {
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
