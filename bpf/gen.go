// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package bpf holds the BPF programs and maps of socksplice. The bpf2go
// outputs are committed so that building the plugin needs no clang.
package bpf

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type pair_key -type policy -type local_key -type domain_key Socksplice socksplice.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel Splice splice.c
