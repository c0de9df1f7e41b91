// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package conf

// The limits come from the ABI header through the compiled ABI object's
// BTF, so conf imports nothing of ours and still cannot drift from it.
//go:generate go run ../bpf/abigen -o limits_gen.go -pkg conf -enums ss_limits ../bpf/abi_bpfel.o
