// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package bpf

import "crypto/sha256"

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
