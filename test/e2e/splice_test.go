//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"net/netip"
	"os"
	"testing"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/test/cnitest"
)

// TestSplice16MiB moves 16 MiB each way between two containers on a bridge
// with mode splice and proves the splice engine carried it: the data is
// intact, the veths carried under 1% of it, and the module took both ends.
// It needs the socksplice kernel module, which the VM harness loads.
func TestSplice16MiB(t *testing.T) {
	cnitest.RequireRoot(t)
	if _, err := os.Stat("/sys/kernel/btf/" + sbpf.SpliceModule); err != nil {
		t.Skipf("SKIP: the %s kernel module is not loaded (%v): the splice engine cannot run", sbpf.SpliceModule, err)
	}
	const n = 16 << 20
	nw, a, b := pair(t, map[string]any{"mode": "splice", "ringKiB": 64, "busyPollUs": 50}, "10.223.0.0/24")
	before := cnitest.Counters(t, nw.PinDir)
	va, vb := a.HostVeth(nw), b.HostVeth(nw)
	va0, vb0 := cnitest.VethBytes(t, va), cnitest.VethBytes(t, vb)

	exchange(t, b, a, netip.AddrPortFrom(b.IP(nw), 5011), n, 1100, 0)

	dva, dvb := cnitest.VethBytes(t, va)-va0, cnitest.VethBytes(t, vb)-vb0
	after := cnitest.Counters(t, nw.PinDir)
	paired := after.SplicePaired - before.SplicePaired
	t.Logf("payload %d B each way; veth %s carried %d B, %s %d B; splice paired %d, refused %d, listen failures %d",
		n, va, dva, vb, dvb, paired, after.SpliceRefused-before.SpliceRefused, after.SpliceListenFail-before.SpliceListenFail)
	if limit := uint64(2*n) / 100; dva >= limit || dvb >= limit {
		t.Errorf("veths carried %d and %d bytes, want < %d (1%% of the payload): it went through the stack", dva, dvb, limit)
	}
	if paired < 2 {
		t.Errorf("splice-paired sockets grew by %d, want >= 2", paired)
	}
}
