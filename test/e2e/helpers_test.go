// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"net/netip"
	"testing"

	"github.com/socksplice/socksplice/test/testenv"
)

const payload = 64 << 20

// pair sets up a network and two containers on it, added with cgroupPath.
func pair(t *testing.T, plugin map[string]any, subnet string) (*testenv.Network, *testenv.Container, *testenv.Container) {
	t.Helper()
	n := testenv.NewNetwork(t, testenv.NetOpts{Subnet: subnet, PinDir: testenv.PinDir(t), Plugin: plugin})
	a, b := testenv.NewContainer(t, "a"), testenv.NewContainer(t, "b")
	n.MustAdd(t, a)
	n.MustAdd(t, b)
	return n, a, b
}

// exchange runs a server in srv and a client in cli, both sending n bytes,
// and fails the test unless each side received exactly what the other sent.
func exchange(t *testing.T, srv, cli *testenv.Container, addr netip.AddrPort, n int64, seed uint64, localPort int) (s, c testenv.XferResult) {
	t.Helper()
	s, c, err := testenv.Exchange(t, srv, cli,
		testenv.Xfer{Role: "server", Addr: addr.String(), Bytes: n, Seed: seed},
		testenv.Xfer{Role: "client", Addr: addr.String(), Bytes: n, Seed: seed + 1, LocalPort: localPort})
	if err != nil {
		t.Fatalf("transfer failed: %v", err)
	}
	return s, c
}

// wantSockmap fails t unless the sockmap engine carried what d counts: at
// least minPaired sockets paired and exactly redirected bytes moved.
func wantSockmap(t *testing.T, what string, d testenv.Counters, minPaired, redirected uint64) {
	t.Helper()
	if d.Paired < minPaired || d.RedirectBytes != redirected {
		t.Errorf("%s: paired +%d sockets, redirected +%d B; want >= %d and exactly %d B",
			what, d.Paired, d.RedirectBytes, minPaired, redirected)
	}
}

// sockmapExchange runs exchange from cli to srv's address in n on port,
// size bytes each way, and fails t unless the sockmap engine carried it
// all.
func sockmapExchange(t *testing.T, what string, n *testenv.Network, srv, cli *testenv.Container, port uint16, size int64, seed uint64) {
	t.Helper()
	m := n.Meter(t)
	exchange(t, srv, cli, netip.AddrPortFrom(srv.IP(n), port), size, seed, 0)
	wantSockmap(t, what, m.Counters(), 2, uint64(2*size))
}
