// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/socksplice/socksplice/test/cnitest"
)

const payload = 64 << 20

// exchange runs a server in srv and a client in cli, both sending n bytes,
// and fails the test unless each side received exactly what the other sent.
func exchange(t *testing.T, srv, cli *cnitest.Container, addr netip.AddrPort, n int64, seed uint64, localPort int) (s, c cnitest.XferResult) {
	t.Helper()
	s, c, err := cnitest.Exchange(t, srv, cli,
		cnitest.Xfer{Role: "server", Addr: addr.String(), Bytes: n, Seed: seed},
		cnitest.Xfer{Role: "client", Addr: addr.String(), Bytes: n, Seed: seed + 1, LocalPort: localPort})
	if err != nil {
		t.Fatalf("transfer failed: %v", err)
	}
	checkIntegrity(t, fmt.Sprintf("%s->%s", cli.ID, srv.ID), c, s, n, seed+1)
	checkIntegrity(t, fmt.Sprintf("%s->%s", srv.ID, cli.ID), s, c, n, seed)
	return s, c
}

// checkIntegrity compares what the receiver got with what the sender's seed
// produces (computed here, independently of both helpers).
func checkIntegrity(t *testing.T, what string, sender, receiver cnitest.XferResult, n int64, senderSeed uint64) {
	t.Helper()
	want := cnitest.PayloadSHA(senderSeed, n)
	if sender.SentSHA != want {
		t.Errorf("%s: sender reports sha %s, seed gives %s", what, sender.SentSHA, want)
	}
	if receiver.RecvBytes != n || receiver.RecvSHA != want {
		t.Errorf("%s: received %d bytes sha %s, want %d bytes sha %s", what, receiver.RecvBytes, receiver.RecvSHA, n, want)
	}
}
