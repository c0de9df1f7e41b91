// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/socksplice/socksplice/test/testenv"
)

// churnFor is how long the tenants of TestTenantChurn* connect: a minute
// under make soak, a short round in CI.
func churnFor() time.Duration {
	if testenv.Soak() {
		return time.Minute
	}
	return 5 * time.Second
}

// tenant is one side of a churn: its server, its client and the address
// the client dials.
type tenant struct {
	name     string
	srv, cli *testenv.Container
	addr     netip.AddrPort
}

// churn runs every tenant's server and client at once for d: each client
// connects again and again from localPort to its tenant's address, every
// message carrying the tenant's name, and every message is checked at
// the other end. It fails t on any message delivered to another tenant,
// lost or altered, and returns the clients' results.
func churn(t *testing.T, tenants []tenant, localPort int, d time.Duration) []testenv.ConnsResult {
	t.Helper()
	res := make([]testenv.ConnsResult, len(tenants))
	var wg sync.WaitGroup
	for i, tn := range tenants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := tn.addr.String()
			s, c, err := testenv.ConnsExchange(t, tn.srv, tn.cli,
				testenv.Conns{Role: "server", Addr: a, Tenant: tn.name},
				testenv.Conns{Role: "client", Addr: a, Tenant: tn.name, LocalPort: localPort, Duration: d, MaxBytes: 4096, Seed: uint64(i)})
			if err != nil {
				t.Errorf("%s: %v", tn.name, err)
				return
			}
			connsChecked(t, tn.name, s, c, 0)
			res[i] = c
			res[i].Foreign += s.Foreign
		}()
	}
	wg.Wait()
	return res
}

// churnSummary logs the figures of a churn and returns the connections
// made.
func churnSummary(t *testing.T, what string, tenants []tenant, res []testenv.ConnsResult, d time.Duration, paired uint64) {
	t.Helper()
	var conns, msgs, cross int64
	per := ""
	for i, r := range res {
		conns += r.Conns
		msgs += 2 * r.Msgs // each request and its echo
		cross += r.Foreign
		per += fmt.Sprintf("; %s %d connections", tenants[i].name, r.Conns)
	}
	t.Logf("summary: %s: %d tenants for %v with identical tuples (%s): %d connections, %d messages checked, cross-deliveries=%d; paired +%d sockets%s",
		what, len(tenants), d, tenants[0].addr, conns, msgs, cross, paired, per)
	// Most connections must take the fast path, or the round proved
	// little about it: each pairs both ends.
	if paired < uint64(2*conns*9/10) {
		t.Errorf("paired +%d sockets for %d connections: most were not paired", paired, conns)
	}
}

// TestTenantChurnOverlappingSubnets runs the two tenants of
// TestTenantsWithIdenticalAddresses (two networks, one subnet, the same
// server address and client source port) connecting again and again at
// once, for a minute under make soak: no message reaches the other
// tenant.
func TestTenantChurnOverlappingSubnets(t *testing.T) {
	testenv.RequireRoot(t)
	pin := testenv.PinDir(t)
	var tenants []tenant
	var first *testenv.Network
	for i := 0; i < 2; i++ {
		n := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.228.0.0/24", PinDir: pin, Plugin: map[string]any{"mode": "sockmap"}})
		srv, cli := testenv.NewContainer(t, "srv"), testenv.NewContainer(t, "cli")
		n.MustAdd(t, srv)
		n.MustAdd(t, cli)
		tenants = append(tenants, tenant{fmt.Sprintf("tenant-%d", i), srv, cli, netip.AddrPortFrom(srv.IP(n), 8080)})
		if i == 0 {
			first = n
		} else if tenants[0].addr != tenants[1].addr || tenants[0].cli.IP(first) != cli.IP(n) {
			t.Fatalf("tenants did not get identical addresses: %v from %v vs %v from %v",
				tenants[0].addr, tenants[0].cli.IP(first), tenants[1].addr, cli.IP(n))
		}
	}
	m := first.Meter(t) // both networks share pin
	d := churnFor()
	res := churn(t, tenants, 42000, d)
	churnSummary(t, "overlapping subnets", tenants, res, d, m.Counters().Paired)
}

// TestTenantChurnLoopback runs a server on 127.0.0.1:7000 and a client
// from port 41000 in each of two containers, connecting again and again
// at once (loopback pairing on): no message leaves its container.
func TestTenantChurnLoopback(t *testing.T) {
	testenv.RequireRoot(t)
	n, a, b := pair(t, map[string]any{"mode": "sockmap", "loopback": true}, "10.229.0.0/24")
	addr := netip.MustParseAddrPort("127.0.0.1:7000")
	tenants := []tenant{{a.ID, a, a, addr}, {b.ID, b, b, addr}}
	m := n.Meter(t)
	d := churnFor()
	res := churn(t, tenants, 41000, d)
	churnSummary(t, "loopback", tenants, res, d, m.Counters().Paired)
}
