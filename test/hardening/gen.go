// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package hardening has one job: reproduce, inside the test VM, the
// splice module's safety hazards listed in issue 14 (object lifetime under
// concurrent teardown, unload, busy-poll with MSG_PEEK, RST on close,
// bytes around pairing, ring memory and memory cgroups, kTLS, repair and
// zerocopy receive, forged pairing keys, the pending table's bound,
// sk_user_data shared with sockmap, the counters' files), so that each
// fails while the hazard is real and guards the fix afterwards. Every
// test's name contains "Hardening"; they run with
// `make vm-test PKGS=test/hardening RUN=Hardening` (DEBUG=1 for KASAN and
// lockdep).
package hardening

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I../../kernel/include -I/usr/include/x86_64-linux-gnu" -target bpfel -no-global-types Forge forge.c
