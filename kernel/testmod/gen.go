// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package testmod proves the test kernel's sock_ops kfunc path with a tiny
// module (socksplice_testmod.c) and a sock_ops program that calls it. Its
// test runs inside the VM only (build tag vmtest): the host kernel cannot
// load modules.
package testmod

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel Kfunc kfunc.c
