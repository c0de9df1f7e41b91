// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"net/netip"
	"testing"

	"github.com/socksplice/socksplice/test/testenv"
)

// TestSockmap64MiB moves 64 MiB each way between two containers on a bridge
// and proves the sockmap engine carried it: the veths see only the
// handshake and teardown, the counters show both ends paired.
func TestSockmap64MiB(t *testing.T) {
	testenv.RequireRoot(t)
	n, a, b := pair(t, map[string]any{"mode": "sockmap"}, "10.211.0.0/24")
	m := n.Meter(t, a, b)

	exchange(t, b, a, netip.AddrPortFrom(b.IP(n), 5001), payload, 100, 0)

	v, d := m.VethBytes(), m.Counters()
	t.Logf("payload %d B each way; veth %s carried %d B, %s %d B; paired %d sockets, redirected %d B in %d msgs",
		payload, m.Veths[0], v[0], m.Veths[1], v[1], d.Paired, d.RedirectBytes, d.RedirectMsgs)
	// Handshake, FIN and ACKs only: a few hundred bytes, far below 1% of
	// the 128 MiB that crossed.
	if limit := uint64(2*payload) / 1000; v[0] > limit || v[1] > limit {
		t.Errorf("veths carried %d and %d bytes, want < %d: the payload went through the stack", v[0], v[1], limit)
	}
	wantSockmap(t, "64 MiB each way", d, 2, 2*payload)
}

// TestModeOffCarriesOnVeth is the control: with mode off nothing pairs and
// the veths carry the whole payload.
func TestModeOffCarriesOnVeth(t *testing.T) {
	testenv.RequireRoot(t)
	n, a, b := pair(t, map[string]any{"mode": "off"}, "10.212.0.0/24")
	m := n.Meter(t, a, b)

	exchange(t, b, a, netip.AddrPortFrom(b.IP(n), 5002), payload, 200, 0)

	v := m.VethBytes()
	t.Logf("mode off: veth %s carried %d B, %s %d B for %d B each way", m.Veths[0], v[0], m.Veths[1], v[1], payload)
	if v[0] < 2*payload || v[1] < 2*payload {
		t.Errorf("veths carried %d and %d bytes, want >= %d each (payload both ways)", v[0], v[1], 2*payload)
	}
}
