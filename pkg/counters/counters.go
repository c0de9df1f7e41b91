// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package counters reads the BPF programs' counters from the node's pinned
// counters map (the objects' .bss: one slot of counters per CPU).
package counters

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf"

	sbpf "github.com/socksplice/socksplice/bpf"
)

// Totals are the BPF programs' counters summed over all CPUs.
type Totals struct {
	Paired           uint64 `json:"paired"`
	RedirectMsgs     uint64 `json:"redirectMsgs"`
	RedirectBytes    uint64 `json:"redirectBytes"`
	LookupMiss       uint64 `json:"lookupMiss"`
	TCPMsgs          uint64 `json:"tcpMsgs"`
	NoPeer           uint64 `json:"noPeer"`
	PolicyRefused    uint64 `json:"policyRefused"`
	InsertFailures   uint64 `json:"insertFailures"`
	SplicePaired     uint64 `json:"splicePaired"`     // sockets the splice module took (pending or paired)
	SpliceRefused    uint64 `json:"spliceRefused"`    // sockets it refused: plain TCP
	SpliceListenFail uint64 `json:"spliceListenFail"` // listeners it could not prepare
}

// Read sums the per-CPU counter slots of m, the node's counters map.
func Read(m *ebpf.Map) (Totals, error) {
	var c Totals
	const slot = sbpf.SlotWords * 8 // bytes per CPU; the unused tail is zero
	if n := m.ValueSize(); n != sbpf.MaxCPUs*slot {
		// node.Open does not upgrade: the pins may be another build's.
		return c, fmt.Errorf("reading counters: the pinned map holds %d bytes, this build lays out %d (pinned by another build?)", n, sbpf.MaxCPUs*slot)
	}
	buf := make([]byte, m.ValueSize())
	if err := m.Lookup(uint32(0), &buf); err != nil {
		return c, fmt.Errorf("reading counters: %w", err)
	}
	var sum [sbpf.NumCounters]uint64
	for off := 0; off+slot <= len(buf); off += slot {
		for i := range sum {
			sum[i] += binary.NativeEndian.Uint64(buf[off+i*8:])
		}
	}
	c.Paired = sum[sbpf.CounterPaired]
	c.RedirectMsgs = sum[sbpf.CounterRedirectMsgs]
	c.RedirectBytes = sum[sbpf.CounterRedirectBytes]
	c.LookupMiss = sum[sbpf.CounterLookupMiss]
	c.TCPMsgs = sum[sbpf.CounterTCPMsgs]
	c.NoPeer = sum[sbpf.CounterNoPeer]
	c.PolicyRefused = sum[sbpf.CounterPolicy]
	c.InsertFailures = sum[sbpf.CounterInsertFail]
	c.SplicePaired = sum[sbpf.CounterSplicePaired]
	c.SpliceRefused = sum[sbpf.CounterSpliceRefused]
	c.SpliceListenFail = sum[sbpf.CounterSpliceListenFail]
	return c, nil
}
