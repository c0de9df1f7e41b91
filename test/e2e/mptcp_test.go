// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"net/netip"
	"testing"

	"github.com/socksplice/socksplice/test/testenv"
)

// mptcpWant is what an engine does with one MPTCP case.
type mptcpWant struct {
	accelerated bool   // the engine carries the payload
	mptcp       uint64 // sockets counted mptcp: each subflow once, and for splice the listener's
}

// mptcpCases are the three ways MPTCP meets a same-host connection. The
// sockets' SO_PROTOCOL and the sockmap engine's counters were measured on
// 6.18 (net.mptcp.enabled=1). The splice engine's expectations follow
// from its design, unmeasured: no kernel here has both the module and
// MPTCP (the test kernel has no MPTCP, the host cannot load modules).
var mptcpCases = []struct {
	name     string
	srv, cli bool // MPTCP on that end
	// srvProto is the accepted socket's SO_PROTOCOL: a listener hands out
	// an MPTCP socket only to an MPTCP client.
	srvProto        int
	sockmap, splice mptcpWant
}{
	{
		// Go 1.24+ servers meet ordinary clients. MPTCP falls back while
		// the child is created (subflow_ulp_fallback: no MPTCP ulp, TCP's
		// proto, is_mptcp 0), before PASSIVE_ESTABLISHED: the application
		// gets that TCP socket itself, so the sockmap engine pairs it
		// correctly (measured: paired +2, every byte redirected, mptcp
		// +0). The splice engine counts the listener's subflow at listen
		// and does not prepare it, so, as for any unprepared listener,
		// its connections stay TCP.
		name: "mptcp-listener-tcp-client", srv: true, srvProto: 6,
		sockmap: mptcpWant{accelerated: true},
		splice:  mptcpWant{mptcp: 1},
	},
	{
		// The client reads through its MPTCP socket (in fallback), whose
		// TCP subflow is what sock_ops sees: counted, not paired. The
		// plain server end may be inserted or pending alone; its peer
		// never comes, so it stays TCP (measured: paired +1, nothing
		// redirected, mptcp +1).
		name: "tcp-listener-mptcp-client", cli: true, srvProto: 6,
		sockmap: mptcpWant{mptcp: 1},
		splice:  mptcpWant{mptcp: 1},
	},
	{
		// Both ends read through MPTCP sockets; both subflows counted (and
		// the listener's, by the splice engine). Measured: paired +0,
		// mptcp +2.
		name: "mptcp-both", srv: true, cli: true, srvProto: 262,
		sockmap: mptcpWant{mptcp: 2},
		splice:  mptcpWant{mptcp: 3},
	},
}

// TestMPTCP moves 8 MiB each way between two containers for each MPTCP
// case and each engine that runs here: the bytes arrive exact, a
// connection with an MPTCP subflow at either end is never paired (the
// application reads through the MPTCP socket), and the counters say why.
// The splice engine runs where the module is loaded (the VM harness).
func TestMPTCP(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireMPTCP(t)
	const size = 8 << 20
	for _, eng := range []struct{ mode, subnet string }{
		{"sockmap", "10.227.0.0/24"},
		{"splice", "10.228.0.0/24"},
	} {
		t.Run(eng.mode, func(t *testing.T) {
			if eng.mode == "splice" {
				testenv.RequireSpliceModule(t)
			}
			n, a, b := pair(t, map[string]any{"mode": eng.mode}, eng.subnet)
			for i, c := range mptcpCases {
				want := c.sockmap
				if eng.mode == "splice" {
					want = c.splice
				}
				t.Run(c.name, func(t *testing.T) {
					m := n.Meter(t, a, b)
					var mod0 map[string]int64
					if eng.mode == "splice" {
						mod0 = testenv.ModuleStats(t)
					}
					addr := netip.AddrPortFrom(b.IP(n), uint16(5200+i)).String()
					s, cl, err := testenv.Exchange(t, b, a,
						testenv.Xfer{Role: "server", Addr: addr, Bytes: size, Seed: uint64(1200 + 2*i), MPTCP: c.srv},
						testenv.Xfer{Role: "client", Addr: addr, Bytes: size, Seed: uint64(1201 + 2*i), MPTCP: c.cli})
					if err != nil {
						t.Fatalf("transfer: %v", err)
					}
					v, d := m.VethBytes(), m.Counters()
					t.Logf("%s: server socket proto %d, client %d; veths carried %d and %d B; paired +%d, redirected +%d B, splicePaired +%d, spliceRefused +%d, spliceListenFail +%d, insertFailures +%d, mptcp +%d",
						eng.mode, s.Proto, cl.Proto, v[0], v[1], d.Paired, d.RedirectBytes, d.SplicePaired, d.SpliceRefused, d.SpliceListenFail, d.InsertFailures, d.Mptcp)

					cliProto := 6
					if c.cli {
						cliProto = 262
					}
					if s.Proto != c.srvProto || cl.Proto != cliProto {
						t.Fatalf("socket protocols: server %d, client %d; want %d and %d (the kernel made something else of the sockets)",
							s.Proto, cl.Proto, c.srvProto, cliProto)
					}
					if d.Mptcp != want.mptcp {
						t.Errorf("mptcp +%d, want %d", d.Mptcp, want.mptcp)
					}
					// The veths see only handshake and teardown when the
					// engine carries the payload, all of it otherwise.
					if limit := uint64(2*size) / 100; want.accelerated && (v[0] >= limit || v[1] >= limit) {
						t.Errorf("veths carried %d and %d B, want < %d: not accelerated", v[0], v[1], limit)
					} else if !want.accelerated && (v[0] < 2*size || v[1] < 2*size) {
						t.Errorf("veths carried %d and %d B, want >= %d each: something bypassed TCP", v[0], v[1], 2*size)
					}
					switch {
					case eng.mode == "splice":
						if p := testenv.ModuleStats(t)["paired"] - mod0["paired"]; (p == 1) != want.accelerated || p > 1 {
							t.Errorf("module paired +%d connections, want accelerated=%v", p, want.accelerated)
						}
					case want.accelerated:
						wantSockmap(t, c.name, d, 2, 2*size)
					case d.Paired >= 2 || d.RedirectBytes != 0:
						t.Errorf("paired +%d sockets, redirected +%d B: want the two ends never both paired, nothing redirected", d.Paired, d.RedirectBytes)
					}
				})
			}
		})
	}
}
