//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/socksplice/socksplice/test/testenv"
)

// TestLongStreamSplice moves more than 4 GiB each way over one spliced
// connection between two containers on a bridge (make soak; 128 MiB in
// CI): every byte arrives, in
// order, through the module's rings, and the module is back to its
// baseline afterwards. Under QEMU's emulation on a loaded host the guest
// moved 1-4 MB/s each way with both ends hashing (128 MiB took 98 s), so
// CI moves 128 MiB and make soak 4.1 GiB (20 to 70 minutes).
func TestLongStreamSplice(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireSpliceModule(t)
	size := int64(128 << 20)
	if testenv.Soak() {
		size = past4GiB
	}
	n, a, b := pair(t, map[string]any{"mode": "splice"}, "10.230.0.0/24")
	m := n.Meter(t, a, b)
	base := testenv.ModuleStats(t)
	el := longStream(t, n, b, a, 5311, size, 3100)
	v, d, ms := m.VethBytes(), m.Counters(), testenv.ModuleStats(t)
	t.Logf("summary: splice long stream: %d bytes (%.2f GiB) each way on one connection in %v (%.0f MB/s each way), sha256 intact both ways; splice paired +%d; module ring bytes +%d; veths carried %d and %d B",
		size, float64(size)/(1<<30), el.Round(time.Millisecond), float64(size)/el.Seconds()/1e6, d.SplicePaired, ms["ring_bytes"]-base["ring_bytes"], v[0], v[1])
	if d.SplicePaired < 2 {
		t.Errorf("splice-paired sockets grew by %d, want >= 2", d.SplicePaired)
	}
	if got := ms["ring_bytes"] - base["ring_bytes"]; got < 2*size {
		t.Errorf("the module's rings carried %d bytes, want >= %d (both directions)", got, 2*size)
	}
	if limit := uint64(2*size) / 1000; v[0] > limit || v[1] > limit {
		t.Errorf("veths carried %d and %d bytes, want < %d: the payload went through the stack", v[0], v[1], limit)
	}
	backToBaseline(t, base)
}

// TestShortConnsSplice makes 10 000 short connections between two
// containers on a bridge with mode splice (2 000 in CI: under emulation
// on a loaded host 10 000 took 4.5 minutes), each a request and its echo
// of up to 16 KiB, every byte checked; the module splices them and is
// back to its baseline afterwards.
func TestShortConnsSplice(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireSpliceModule(t)
	count := 2000
	if testenv.Soak() {
		count = shortConns
	}
	n, a, b := pair(t, map[string]any{"mode": "splice"}, "10.231.0.0/24")
	base := testenv.ModuleStats(t)
	m := n.Meter(t)
	_, c, el := shortConnsRun(t, n, b, a, 5312, count)
	d, ms := m.Counters(), testenv.ModuleStats(t)
	t.Logf("summary: splice short connections: %d connections in %v (%.0f/s), %d payload bytes each way checked, 0 lost or corrupt; splice paired +%d sockets, module paired +%d, refused +%d",
		c.Conns, el.Round(time.Millisecond), float64(c.Conns)/el.Seconds(), c.Bytes, d.SplicePaired, ms["paired"]-base["paired"], ms["refused"]-base["refused"])
	if d.SplicePaired < uint64(2*count*9/10) {
		t.Errorf("splice paired +%d sockets for %d connections: most were not spliced", d.SplicePaired, count)
	}
	backToBaseline(t, base)
}

// TestTenantChurnSplice is TestTenantChurnOverlappingSubnets on the
// splice engine: two networks on one subnet, each tenant's client
// connecting again and again from one port to the same server address,
// at once; the module pairs by tuple and netns, and no message reaches
// the other tenant.
func TestTenantChurnSplice(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireSpliceModule(t)
	pin := testenv.PinDir(t)
	var tenants []tenant
	var nets []*testenv.Network
	for i := 0; i < 2; i++ {
		n := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.232.0.0/24", PinDir: pin, Plugin: map[string]any{"mode": "splice"}})
		srv, cli := testenv.NewContainer(t, "srv"), testenv.NewContainer(t, "cli")
		n.MustAdd(t, srv)
		n.MustAdd(t, cli)
		nets = append(nets, n)
		tenants = append(tenants, tenant{fmt.Sprintf("tenant-%d", i), srv, cli, netip.AddrPortFrom(srv.IP(n), 8080)})
	}
	if tenants[0].addr != tenants[1].addr || tenants[0].cli.IP(nets[0]) != tenants[1].cli.IP(nets[1]) {
		t.Fatalf("tenants did not get identical addresses")
	}
	base := testenv.ModuleStats(t)
	m := nets[0].Meter(t)
	d := churnFor()
	res := churn(t, tenants, 42000, d)
	churnSummary(t, "splice, overlapping subnets", tenants, res, d, m.Counters().SplicePaired)
	backToBaseline(t, base)
}
