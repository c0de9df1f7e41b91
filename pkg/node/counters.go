// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package node

import (
	"fmt"

	sbpf "github.com/socksplice/socksplice/bpf"
)

// Counters are the BPF programs' counters summed over all CPUs.
type Counters = sbpf.Counters

// ReadCounters sums the per-CPU counter slots.
func (o *Objects) ReadCounters() (Counters, error) {
	buf := make([]byte, o.Counters.ValueSize())
	if err := o.Counters.Lookup(uint32(0), &buf); err != nil {
		return Counters{}, fmt.Errorf("reading counters: %w", err)
	}
	return sbpf.SumCounters(buf)
}
