// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package bpf

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"reflect"
)

// Counters are the programs' counters (struct ss_counters in the ABI
// header), summed over the per-CPU slots.
type Counters = AbiSsCounters

// CountersSize is the size of the counters array (union ss_slot
// counters[SS_MAX_CPUS]), the objects' .bss.
const CountersSize = MaxCPUs * slotSize

const slotSize = SlotWords * 8

// SumCounters adds up the per-CPU slots of a counters array as read from
// the objects' .bss map.
func SumCounters(bss []byte) (Counters, error) {
	var sum Counters
	if len(bss) != CountersSize {
		return sum, fmt.Errorf("counters: %d bytes, this build lays out %d (pinned by another build?)", len(bss), CountersSize)
	}
	total := reflect.ValueOf(&sum).Elem()
	for off := 0; off < len(bss); off += slotSize {
		var c Counters
		if _, err := binary.Decode(bss[off:off+slotSize], binary.NativeEndian, &c); err != nil {
			return sum, fmt.Errorf("counters: %w", err)
		}
		v := reflect.ValueOf(c)
		for i := range v.NumField() {
			if f := total.Field(i); f.CanSet() && f.Kind() == reflect.Uint64 {
				f.SetUint(f.Uint() + v.Field(i).Uint())
			}
		}
	}
	return sum, nil
}

// MarshalJSON names each counter as the ABI header does, in lowerCamelCase
// (splice_abi_mismatch: "spliceAbiMismatch").
func (c AbiSsCounters) MarshalJSON() ([]byte, error) {
	out := map[string]uint64{}
	v := reflect.ValueOf(c)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if f.IsExported() && f.Type.Kind() == reflect.Uint64 {
			out[string(f.Name[0]+'a'-'A')+f.Name[1:]] = v.Field(i).Uint()
		}
	}
	return json.Marshal(out)
}
