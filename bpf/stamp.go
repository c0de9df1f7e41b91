// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package bpf

import "crypto/sha256"

// Policy flags, as bpf/socksplice.c reads them.
const (
	PolicyEnabled  = 1
	PolicyLoopback = 2
	MaxPorts       = 32
	MaxCPUs        = 1024
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
	NumCounters
)

// Stamp identifies this build's BPF objects: a node whose pinned objects
// carry another stamp gets its programs replaced by these.
func Stamp() [32]byte {
	return sha256.Sum256(_SockspliceBytes)
}
