// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

// What the long tests of both engines share (TestLongStream*,
// TestShortConns*): a stream hashed as it flows, many short connections
// with every message checked.

import (
	"net/netip"
	"testing"
	"time"

	"github.com/socksplice/socksplice/test/testenv"
)

// past4GiB is each direction of a long stream: past 4 GiB, where a
// 32-bit byte count wraps (sockmap stalls after 2 GiB are a known failure
// of other projects).
const past4GiB = 4<<30 + 100<<20

// longStream moves size bytes each way on one connection from cli to
// srv's address in n: the xfer helpers hash what they send and receive
// as it streams (sha256), and the test checks both hashes against the
// seeds. It returns how long the exchange took.
func longStream(t *testing.T, n *testenv.Network, srv, cli *testenv.Container, port uint16, size int64, seed uint64) time.Duration {
	t.Helper()
	addr := netip.AddrPortFrom(srv.IP(n), port).String()
	// The helpers' deadline: at 1 MiB/s each way, a quarter of what the
	// splice engine does under QEMU's emulation (where hashing is slow).
	timeout := 2*time.Minute + time.Duration(size/(1<<20))*time.Second
	start := time.Now()
	_, _, err := testenv.Exchange(t, srv, cli,
		testenv.Xfer{Role: "server", Addr: addr, Bytes: size, Seed: seed, Timeout: timeout},
		testenv.Xfer{Role: "client", Addr: addr, Bytes: size, Seed: seed + 1, Timeout: timeout})
	el := time.Since(start)
	if err != nil {
		t.Fatalf("%d bytes each way after %v: %v", size, el, err)
	}
	return el
}

// shortConns is how many connections TestShortConns* make (the splice
// engine's test, under emulation, fewer in CI).
const shortConns = 10000

// connsChecked fails t unless both ends of a conns run checked every
// message of want connections (want 0: at least one) and found nothing
// foreign, corrupt or failed.
func connsChecked(t *testing.T, what string, s, c testenv.ConnsResult, want int64) {
	t.Helper()
	for _, r := range []struct {
		end string
		testenv.ConnsResult
	}{{"server", s}, {"client", c}} {
		if r.Foreign != 0 || r.Corrupt != 0 || r.Failed != 0 {
			t.Errorf("%s, %s: %d messages of another tenant, %d corrupt, %d connections failed; first: %s",
				what, r.end, r.Foreign, r.Corrupt, r.Failed, r.FirstErr)
		}
		if (want > 0 && r.Conns != want) || r.Conns == 0 || r.Msgs != r.Conns {
			t.Errorf("%s, %s: %d connections and %d messages checked, want %d of each", what, r.end, r.Conns, r.Msgs, max(want, 1))
		}
	}
	if s.Bytes != c.Bytes {
		t.Errorf("%s: the server checked %d payload bytes, the client %d", what, s.Bytes, c.Bytes)
	}
}

// shortConnsRun makes count connections from cli to srv's address in n,
// 4 at a time, each echoing 1 B to 16 KiB, and checks every message.
func shortConnsRun(t *testing.T, n *testenv.Network, srv, cli *testenv.Container, port uint16, count int) (s, c testenv.ConnsResult, el time.Duration) {
	t.Helper()
	addr := netip.AddrPortFrom(srv.IP(n), port).String()
	start := time.Now()
	// Seconds here; minutes in a guest under QEMU's emulation.
	const timeout = 20 * time.Minute
	s, c, err := testenv.ConnsExchange(t, srv, cli,
		testenv.Conns{Role: "server", Addr: addr, Tenant: srv.ID, Timeout: timeout},
		testenv.Conns{Role: "client", Addr: addr, Tenant: srv.ID, Count: count, Workers: 4, MaxBytes: 16 << 10, Seed: 77, Timeout: timeout})
	el = time.Since(start)
	if err != nil {
		t.Fatalf("after %v, %d and %d connections checked by the client and the server: %v", el, c.Conns, s.Conns, err)
	}
	connsChecked(t, "short connections", s, c, int64(count))
	return s, c, el
}
