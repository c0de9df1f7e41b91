// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package bpf holds the BPF programs and maps of socksplice, and the Go
// side of the ABI they share with the kernel module
// (kernel/include/socksplice/abi.h). The bpf2go outputs are committed so
// that building the plugin needs no clang.
package bpf

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I../kernel/include -I/usr/include/x86_64-linux-gnu" -target bpfel Abi abi.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I../kernel/include -I/usr/include/x86_64-linux-gnu" -target bpfel -no-global-types Socksplice socksplice.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I../kernel/include -I/usr/include/x86_64-linux-gnu" -target bpfel -no-global-types Splice splice.c
//go:generate go run ./abigen -o abi_const.go -pkg bpf abi_bpfel.o
