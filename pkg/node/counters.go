// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package node

import (
	"encoding/binary"
	"fmt"

	sbpf "github.com/socksplice/socksplice/bpf"
)

// Counters are the BPF programs' counters summed over all CPUs.
type Counters struct {
	Paired         uint64 `json:"paired"`
	RedirectMsgs   uint64 `json:"redirectMsgs"`
	RedirectBytes  uint64 `json:"redirectBytes"`
	LookupMiss     uint64 `json:"lookupMiss"`
	TCPMsgs        uint64 `json:"tcpMsgs"`
	NoPeer         uint64 `json:"noPeer"`
	PolicyRefused  uint64 `json:"policyRefused"`
	InsertFailures uint64 `json:"insertFailures"`
}

// ReadCounters sums the per-CPU counter slots.
func (o *Objects) ReadCounters() (Counters, error) {
	var c Counters
	buf := make([]byte, o.Counters.ValueSize())
	if err := o.Counters.Lookup(uint32(0), &buf); err != nil {
		return c, fmt.Errorf("reading counters: %w", err)
	}
	var sum [sbpf.NumCounters]uint64
	const slot = sbpf.NumCounters * 8
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
	return c, nil
}
