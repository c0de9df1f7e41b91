// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/enroll"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/test/cnitest"
)

// pair sets up a network and two containers on it, added with cgroupPath.
func pair(t *testing.T, plugin map[string]any, subnet string) (*cnitest.Network, *cnitest.Container, *cnitest.Container) {
	t.Helper()
	n := cnitest.NewNetwork(t, cnitest.NetOpts{Subnet: subnet, PinDir: cnitest.PinDir(t), Plugin: plugin})
	a, b := cnitest.NewContainer(t, "a"), cnitest.NewContainer(t, "b")
	n.MustAdd(t, a)
	n.MustAdd(t, b)
	return n, a, b
}

// TestSockmap64MiB moves 64 MiB each way between two containers on a bridge
// and proves the sockmap engine carried it: the veths see only the
// handshake and teardown, the counters show both ends paired.
func TestSockmap64MiB(t *testing.T) {
	cnitest.RequireRoot(t)
	n, a, b := pair(t, map[string]any{"mode": "sockmap"}, "10.211.0.0/24")
	before := cnitest.Counters(t, n.PinDir)
	va, vb := a.HostVeth(n), b.HostVeth(n)
	va0, vb0 := cnitest.VethBytes(t, va), cnitest.VethBytes(t, vb)

	exchange(t, b, a, netip.AddrPortFrom(b.IP(n), 5001), payload, 100, 0)

	dva, dvb := cnitest.VethBytes(t, va)-va0, cnitest.VethBytes(t, vb)-vb0
	after := cnitest.Counters(t, n.PinDir)
	paired := after.Paired - before.Paired
	moved := after.RedirectBytes - before.RedirectBytes
	t.Logf("payload %d B each way; veth %s carried %d B, %s %d B; paired %d sockets, redirected %d B in %d msgs",
		payload, va, dva, vb, dvb, paired, moved, after.RedirectMsgs-before.RedirectMsgs)
	// Handshake, FIN and ACKs only: a few hundred bytes, far below 1% of
	// the 128 MiB that crossed.
	if limit := uint64(2*payload) / 1000; dva > limit || dvb > limit {
		t.Errorf("veths carried %d and %d bytes, want < %d: the payload went through the stack", dva, dvb, limit)
	}
	if paired < 2 {
		t.Errorf("paired sockets grew by %d, want >= 2", paired)
	}
	if moved != 2*payload {
		t.Errorf("redirected %d bytes, want exactly %d", moved, 2*payload)
	}
}

// TestModeOffCarriesOnVeth is the control: with mode off nothing pairs and
// the veths carry the whole payload.
func TestModeOffCarriesOnVeth(t *testing.T) {
	cnitest.RequireRoot(t)
	n, a, b := pair(t, map[string]any{"mode": "off"}, "10.212.0.0/24")
	va, vb := a.HostVeth(n), b.HostVeth(n)
	va0, vb0 := cnitest.VethBytes(t, va), cnitest.VethBytes(t, vb)

	exchange(t, b, a, netip.AddrPortFrom(b.IP(n), 5002), payload, 200, 0)

	dva, dvb := cnitest.VethBytes(t, va)-va0, cnitest.VethBytes(t, vb)-vb0
	t.Logf("mode off: veth %s carried %d B, %s %d B for %d B each way", va, dva, vb, dvb, payload)
	if dva < 2*payload || dvb < 2*payload {
		t.Errorf("veths carried %d and %d bytes, want >= %d each (payload both ways)", dva, dvb, 2*payload)
	}
}

// TestSpliceUnavailable: without the socksplice module, ADD with mode
// splice fails with code 100 naming the missing kfunc and enrolls nothing.
func TestSpliceUnavailable(t *testing.T) {
	cnitest.RequireRoot(t)
	if node.HaveSpliceKfuncs() {
		t.Skip("SKIP: the kernel has the splice kfuncs (socksplice module loaded); splice_test.go (vmtest) covers the engine")
	}
	n := cnitest.NewNetwork(t, cnitest.NetOpts{Subnet: "10.224.0.0/24", PinDir: cnitest.PinDir(t), Plugin: map[string]any{"mode": "splice"}})
	c := cnitest.NewContainer(t, "a")
	_, err := n.Add(t, c)
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != 100 || !strings.Contains(ce.Msg, sbpf.SpliceKfuncPair) {
		t.Fatalf("ADD with mode splice: %v, want CNI error 100 naming %s", err, sbpf.SpliceKfuncPair)
	}
	t.Logf("code %d: %s", ce.Code, ce.Msg)
	if ids, _ := cgroup.AttachedIDs(c.Cgroup); len(ids) != 0 {
		t.Errorf("programs attached after a refused ADD: %v", ids)
	}
	if o, err := node.Open(n.PinDir); err == nil {
		recs, _ := enroll.Records(o)
		if o.Splice != nil || len(recs) != 0 {
			t.Errorf("after a refused ADD: splice program %v, %d attachments; want none", o.Splice, len(recs))
		}
		o.Close()
	}
}
