//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"net/netip"
	"testing"

	"github.com/socksplice/socksplice/test/testenv"
)

// TestSplice16MiB moves 16 MiB each way between two containers on a bridge
// with mode splice and proves the splice engine carried it: the data is
// intact, the veths carried under 1% of it, and the module took both ends.
// It needs the socksplice kernel module, which the VM harness loads.
func TestSplice16MiB(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireSpliceModule(t)
	const n = 16 << 20
	nw, a, b := pair(t, map[string]any{"mode": "splice", "ringKiB": 64, "busyPollUs": 50}, "10.223.0.0/24")
	m := nw.Meter(t, a, b)

	exchange(t, b, a, netip.AddrPortFrom(b.IP(nw), 5011), n, 1100, 0)

	v, d := m.VethBytes(), m.Counters()
	t.Logf("payload %d B each way; veth %s carried %d B, %s %d B; splice paired %d, refused %d, listen failures %d",
		n, m.Veths[0], v[0], m.Veths[1], v[1], d.SplicePaired, d.SpliceRefused, d.SpliceListenFail)
	if limit := uint64(2*n) / 100; v[0] >= limit || v[1] >= limit {
		t.Errorf("veths carried %d and %d bytes, want < %d (1%% of the payload): it went through the stack", v[0], v[1], limit)
	}
	if d.SplicePaired < 2 {
		t.Errorf("splice-paired sockets grew by %d, want >= 2", d.SplicePaired)
	}
}
