// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/socksplice/socksplice/test/testenv"
)

// TestLoopbackPairedAndIsolated pairs 127.0.0.1 inside each of two
// containers on the same port at the same time; every byte stays in its own
// container.
func TestLoopbackPairedAndIsolated(t *testing.T) {
	testenv.RequireRoot(t)
	n, a, b := pair(t, map[string]any{"mode": "sockmap", "loopback": true}, "10.217.0.0/24")
	m := n.Meter(t)
	addr := netip.MustParseAddrPort("127.0.0.1:7000")
	const size = 16 << 20
	var wg sync.WaitGroup
	for i, c := range []*testenv.Container{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Same port, same client source port: only the netns tells
			// the two flows apart.
			exchange(t, c, c, addr, size, uint64(1000*(i+1)), 41000)
		}()
	}
	wg.Wait()
	d := m.Counters()
	lo := []uint64{a.LoBytes(t), b.LoBytes(t)}
	t.Logf("loopback: paired +%d sockets, redirected +%d B; lo carried %d B in %s and %d B in %s",
		d.Paired, d.RedirectBytes, lo[0], a.ID, lo[1], b.ID)
	if d.Paired < 4 {
		t.Errorf("paired +%d, want >= 4 (two loopback connections)", d.Paired)
	}
	for i, l := range lo {
		if l > size/100 {
			t.Errorf("container %d: lo carried %d bytes for a %d-byte exchange: not paired", i, l, size)
		}
	}
}

// TestTenantsWithIdenticalAddresses runs two networks with the same subnet
// on two bridges; in each, the same server address and port and the same
// client source port. Every byte must reach its own tenant.
func TestTenantsWithIdenticalAddresses(t *testing.T) {
	testenv.RequireRoot(t)
	pin := testenv.PinDir(t)
	var nets [2]*testenv.Network
	var srv, cli [2]*testenv.Container
	for i := range nets {
		nets[i] = testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.218.0.0/24", PinDir: pin, Plugin: map[string]any{"mode": "sockmap"}})
		srv[i], cli[i] = testenv.NewContainer(t, "srv"), testenv.NewContainer(t, "cli")
		nets[i].MustAdd(t, srv[i])
		nets[i].MustAdd(t, cli[i])
	}
	if srv[0].IP(nets[0]) != srv[1].IP(nets[1]) || cli[0].IP(nets[0]) != cli[1].IP(nets[1]) {
		t.Fatalf("tenants did not get identical addresses: %v/%v vs %v/%v",
			srv[0].IP(nets[0]), cli[0].IP(nets[0]), srv[1].IP(nets[1]), cli[1].IP(nets[1]))
	}
	m := nets[0].Meter(t) // both networks share pin
	const size = 16 << 20
	var wg sync.WaitGroup
	var res [2][2]testenv.XferResult
	for i := range nets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := netip.AddrPortFrom(srv[i].IP(nets[i]), 8080)
			s, c := exchange(t, srv[i], cli[i], addr, size, uint64(5000*(i+1)), 42000)
			res[i] = [2]testenv.XferResult{s, c}
		}()
	}
	wg.Wait()
	d := m.Counters()
	for i := range res {
		t.Logf("tenant %d: server %s <- client %s", i, res[i][0].Local, res[i][0].Remote)
	}
	if res[0][0].Remote != res[1][0].Remote || res[0][0].Local != res[1][0].Local {
		t.Errorf("the two tenants' tuples differ (%s/%s vs %s/%s): the test did not exercise identical tuples",
			res[0][0].Local, res[0][0].Remote, res[1][0].Local, res[1][0].Remote)
	}
	wantSockmap(t, "both tenants, both directions", d, 4, 4*size)
}

// TestIPv6AndV4Mapped pairs an IPv6 flow, and an IPv4 client talking to a
// server that listens on [::] (its socket sees a v4-mapped IPv6 peer).
func TestIPv6AndV4Mapped(t *testing.T) {
	testenv.RequireRoot(t)
	n := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.222.0.0/24", Subnet6: "fd00:5a:222::/64",
		PinDir: testenv.PinDir(t), Plugin: map[string]any{"mode": "sockmap"}})
	a, b := testenv.NewContainer(t, "a"), testenv.NewContainer(t, "b")
	n.MustAdd(t, a)
	n.MustAdd(t, b)
	if !b.IP6(n).IsValid() {
		t.Fatalf("no IPv6 address assigned")
	}
	for _, tc := range []struct {
		name   string
		listen string
		dial   netip.AddrPort
	}{
		{"ipv6", "", netip.AddrPortFrom(b.IP6(n), 6101)},
		{"v4-mapped", "[::]:6102", netip.AddrPortFrom(b.IP(n), 6102)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := n.Meter(t)
			const size = 4 << 20
			listen := tc.listen
			if listen == "" {
				listen = tc.dial.String()
			}
			s, _, err := testenv.Exchange(t, b, a,
				testenv.Xfer{Role: "server", Addr: listen, Bytes: size, Seed: 900},
				testenv.Xfer{Role: "client", Addr: tc.dial.String(), Bytes: size, Seed: 901})
			if err != nil {
				t.Fatal(err)
			}
			d := m.Counters()
			t.Logf("%s: server %s <- %s; paired +%d, redirected +%d B", tc.name, s.Local, s.Remote, d.Paired, d.RedirectBytes)
			wantSockmap(t, tc.name, d, 2, 2*size)
		})
	}
}
