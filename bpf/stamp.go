// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package bpf

import "crypto/sha256"

// Policy flags, as bpf/common.h reads them.
const (
	PolicyEnabled  = 1
	PolicyLoopback = 2
	PolicySplice   = 4 // the netns runs the splice engine; the sockmap program leaves it alone
	MaxPorts       = 32
	MaxCPUs        = 1024
)

// SlotWords is how many counters one per-CPU slot holds (SLOT_WORDS).
const SlotWords = 16

// Both objects' counter slots have SlotWords counters (compile-time check).
var (
	_ [SlotWords]uint64 = SockspliceSlot{}.V
	_ [SlotWords]uint64 = SpliceSlot{}.V
)

// Counter indexes into SockspliceSlot.V, in the order of enum counter.
const (
	CounterPaired = iota
	CounterRedirectMsgs
	CounterRedirectBytes
	CounterLookupMiss
	CounterTCPMsgs
	CounterNoPeer
	CounterPolicy
	CounterInsertFail
	CounterSplicePaired
	CounterSpliceRefused
	CounterSpliceListenFail
	NumCounters
)

// The splice engine's kernel module and the kfuncs splice.c calls.
const (
	SpliceModule      = "socksplice"
	SpliceKfuncPair   = "bpf_sock_splice_pair"
	SpliceKfuncListen = "bpf_sock_splice_listen"
)

// Stamp identifies this build's BPF objects: a node whose pinned objects
// carry another stamp gets its programs replaced by these.
func Stamp() [32]byte {
	h := sha256.New()
	h.Write(_SockspliceBytes)
	h.Write(_SpliceBytes)
	var s [32]byte
	h.Sum(s[:0])
	return s
}
