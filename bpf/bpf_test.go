// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package bpf

import (
	"bytes"
	"os"
	"slices"
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

// The splice object is loaded with the main object's pinned maps:
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

// Both objects load on kernels whose tcp_sock has no is_mptcp (built
// without CONFIG_MPTCP, as the project's test kernel) and on kernels that
// would keep it as a one-bit field: CO-RE relocates the read against this
// kernel's tcp_sock edited accordingly, and the verifier accepts it.
func TestLoadsWhateverIsMPTCPIs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (loads BPF)")
	}
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	var tcp *btf.Struct
	if err := kernel.TypeByName("tcp_sock", &tcp); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(tcp.Members, func(m btf.Member) bool { return m.Name == "is_mptcp" })
	if i < 0 {
		t.Skip("SKIP: this kernel's tcp_sock has no is_mptcp to edit")
	}
	for name, edit := range map[string]func(s *btf.Struct){
		"absent": func(s *btf.Struct) { s.Members = slices.Delete(s.Members, i, i+1) },
		"bitfield": func(s *btf.Struct) {
			s.Members[i].Type = &btf.Int{Name: "u8", Size: 1}
			s.Members[i].BitfieldSize = 1
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := btf.Copy(tcp).(*btf.Struct)
			edit(s)
			b, err := btf.NewBuilder([]btf.Type{s}, nil)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := b.Marshal(nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			types, err := btf.LoadSpecFromReader(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			main, err := LoadSocksplice()
			if err != nil {
				t.Fatal(err)
			}
			splice, err := LoadSpliceStubbed()
			if err != nil {
				t.Fatal(err)
			}
			for _, spec := range []*ebpf.CollectionSpec{main, splice} {
				coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: types}})
				if err != nil {
					t.Fatalf("tcp_sock.is_mptcp %s: %v", name, err)
				}
				coll.Close()
			}
		})
	}
}
