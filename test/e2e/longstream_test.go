//go:build !vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

// The sockmap engine's long tests run on the host. Under the guests'
// emulation (make vm-test) the 4.1 GiB stream alone would take about 20
// minutes; the guests run the splice engine's (longstream_splice_test.go).

import (
	"testing"
	"time"

	"github.com/socksplice/socksplice/test/testenv"
)

// TestLongStreamSockmap moves 4.1 GiB each way over one sockmap
// connection between two containers on a bridge (16 GiB under make
// soak): every byte arrives, in order, and the sockmap engine carried all
// of it.
func TestLongStreamSockmap(t *testing.T) {
	testenv.RequireRoot(t)
	size := int64(past4GiB)
	if testenv.Soak() {
		size = 16 << 30
	}
	n, a, b := pair(t, map[string]any{"mode": "sockmap"}, "10.226.0.0/24")
	m := n.Meter(t, a, b)
	el := longStream(t, n, b, a, 5301, size, 3000)
	v, d := m.VethBytes(), m.Counters()
	t.Logf("summary: sockmap long stream: %d bytes (%.2f GiB) each way on one connection in %v (%.0f MB/s each way), sha256 intact both ways; paired +%d, redirected +%d B in %d msgs; veths carried %d and %d B",
		size, float64(size)/(1<<30), el.Round(time.Millisecond), float64(size)/el.Seconds()/1e6, d.Paired, d.RedirectBytes, d.RedirectMsgs, v[0], v[1])
	wantSockmap(t, "long stream", d, 2, uint64(2*size))
	if limit := uint64(2*size) / 1000; v[0] > limit || v[1] > limit {
		t.Errorf("veths carried %d and %d bytes, want < %d: the payload went through the stack", v[0], v[1], limit)
	}
}

// TestShortConnsSockmap makes 10 000 short connections between two
// containers on a bridge, each a request and its echo of up to 16 KiB,
// every byte checked; the sockmap engine pairs them.
func TestShortConnsSockmap(t *testing.T) {
	testenv.RequireRoot(t)
	n, a, b := pair(t, map[string]any{"mode": "sockmap"}, "10.227.0.0/24")
	m := n.Meter(t)
	_, c, el := shortConnsRun(t, n, b, a, 5302, shortConns)
	d := m.Counters()
	t.Logf("summary: sockmap short connections: %d connections in %v (%.0f/s), %d payload bytes each way checked, 0 lost or corrupt; paired +%d sockets, redirected +%d B, left on TCP: no peer +%d",
		c.Conns, el.Round(time.Millisecond), float64(c.Conns)/el.Seconds(), c.Bytes, d.Paired, d.RedirectBytes, d.NoPeer)
	// Each connection pairs both ends; the quit connection too.
	if d.Paired < 2*shortConns*9/10 {
		t.Errorf("paired +%d sockets for %d connections: most were not paired", d.Paired, shortConns)
	}
}
