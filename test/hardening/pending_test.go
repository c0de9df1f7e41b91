//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package hardening

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socksplice/socksplice/test/testenv"
)

// h3SetMaxPending sets the module's max_pending parameter to n and
// restores it at cleanup; ok is false when the module has none.
func h3SetMaxPending(t *testing.T, n int) (old string, ok bool) {
	t.Helper()
	p := filepath.Join(h3ModDir, "parameters", "max_pending")
	b, err := os.ReadFile(p)
	if err != nil {
		return "", false
	}
	old = strings.TrimSpace(string(b))
	if err := os.WriteFile(p, []byte(strconv.Itoa(n)), 0); err != nil {
		t.Fatalf("setting max_pending: %v", err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(p, []byte(old), 0); err != nil {
			t.Errorf("restoring max_pending %s: %v", old, err)
		}
	})
	return old, true
}

// TestHardeningPendingBounded (issue 14, item 9): with max_pending 4, 32
// half-paired handshakes (an enrolled client to a listener that predates
// the attach, so the client's end waits for a peer that never calls) put
// 4 sockets in the pending table and count the rest in pending_full; every
// flow stays plain TCP and carries its data intact; after close nothing of
// the module is left.
func TestHardeningPendingBounded(t *testing.T) {
	const conns, maxPending, port = 32, 4, 7430
	e, pre := h3NewEnv(t, "10.243.0.0/24", map[string]any{"mode": "splice", "ringKiB": 64}, port)
	old, ok := h3SetMaxPending(t, maxPending)
	if ok {
		t.Logf("max_pending %s -> %d", old, maxPending)
	} else {
		t.Errorf("the module has no max_pending parameter: the pending table is unbounded")
	}
	base := testenv.ModuleStats(t)
	type pairT struct{ cli, srv *net.TCPConn }
	var ps []pairT
	for i := 0; i < conns; i++ {
		c, s := e.dialAccept(t, pre[port], port)
		ps = append(ps, pairT{c, s})
	}
	time.Sleep(200 * time.Millisecond)
	m := testenv.ModuleStats(t)
	pending := m["live_socks"] - base["live_socks"]
	t.Logf("%d half-paired handshakes: pending sockets (live_socks) +%d, pending_full +%d, refused +%d, paired +%d",
		conns, pending, m["pending_full"]-base["pending_full"], m["refused"]-base["refused"], m["paired"]-base["paired"])
	if pending > maxPending {
		t.Errorf("%d sockets wait in the pending table; max_pending is %d", pending, maxPending)
	}
	if ok && m["pending_full"]-base["pending_full"] != conns-maxPending {
		t.Errorf("pending_full +%d; want +%d", m["pending_full"]-base["pending_full"], conns-maxPending)
	}
	if m["paired"] != base["paired"] {
		t.Errorf("a half-paired handshake was paired (+%d)", m["paired"]-base["paired"])
	}
	for i, p := range ps {
		if err := h3Exchange(p.cli, p.srv, 64<<10); err != nil {
			t.Errorf("connection %d: %v", i, err)
		}
	}
	m = testenv.ModuleStats(t)
	t.Logf("after 64 KiB each way on every connection: live_socks %d, ring_bytes +%d", m["live_socks"], m["ring_bytes"]-base["ring_bytes"])
	if m["ring_bytes"] != base["ring_bytes"] {
		t.Errorf("the plain flows moved %d bytes through rings", m["ring_bytes"]-base["ring_bytes"])
	}
	for _, p := range ps {
		p.cli.Close()
		p.srv.Close()
	}
	m = h3WaitLive(t, map[string]int64{})
	t.Logf("after close: live_socks %d, live_pairs %d", m["live_socks"], m["live_pairs"])
}
