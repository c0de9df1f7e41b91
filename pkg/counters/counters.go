// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package counters reads the BPF programs' counters: the node-wide ones
// from the pinned counters map (the objects' .bss: one slot of struct
// ss_counters per CPU, laid out by the ABI header), and the per-netns ones
// (struct ss_ns_counters), which it also starts at enrollment and retires
// into per-network totals when a netns leaves.
package counters

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/cilium/ebpf"

	sbpf "github.com/socksplice/socksplice/bpf"
)

// Totals are the counters summed over all CPUs. The fields are the ABI
// header's struct ss_counters, so a counter added there appears here, in
// `socksplice status` and in its JSON without a Go change.
type Totals sbpf.AbiSsCounters

const (
	slotSize = sbpf.SlotWords * 8
	// Size is the counters array's size: union ss_slot counters[SS_MAX_CPUS].
	Size = sbpf.MaxCPUs * slotSize
)

// Read sums the per-CPU counter slots of m, the node's counters map.
func Read(m *ebpf.Map) (Totals, error) {
	if n := m.ValueSize(); n != Size {
		// node.Open does not upgrade: the pins may be another build's.
		return Totals{}, fmt.Errorf("reading counters: the pinned map holds %d bytes, this build lays out %d (pinned by another build?)", n, Size)
	}
	buf := make([]byte, Size)
	if err := m.Lookup(uint32(0), &buf); err != nil {
		return Totals{}, fmt.Errorf("reading counters: %w", err)
	}
	return sum(buf)
}

// sum adds up the slots of a counters array field by field.
func sum(buf []byte) (Totals, error) {
	var total Totals
	acc := reflect.ValueOf(&total).Elem()
	for off := 0; off+slotSize <= len(buf); off += slotSize {
		var c Totals
		if _, err := binary.Decode(buf[off:off+slotSize], binary.NativeEndian, &c); err != nil {
			return total, fmt.Errorf("reading counters: %w", err)
		}
		v := reflect.ValueOf(c)
		for i := range v.NumField() {
			if f := acc.Field(i); f.CanSet() && f.Kind() == reflect.Uint64 {
				f.SetUint(f.Uint() + v.Field(i).Uint())
			}
		}
	}
	return total, nil
}

// MarshalJSON names each counter after its field in the ABI header, in
// lowerCamelCase (splice_abi_mismatch: "spliceAbiMismatch").
func (t Totals) MarshalJSON() ([]byte, error) { return marshalCamel(reflect.ValueOf(t)) }

func marshalCamel(v reflect.Value) ([]byte, error) {
	out := map[string]uint64{}
	for i := range v.NumField() {
		if f := v.Type().Field(i); f.IsExported() && f.Type.Kind() == reflect.Uint64 {
			out[string(f.Name[0]+'a'-'A')+f.Name[1:]] = v.Field(i).Uint()
		}
	}
	return json.Marshal(out)
}
