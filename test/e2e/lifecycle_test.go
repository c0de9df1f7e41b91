// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/enroll"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/test/testenv"
)

func mapLen(t *testing.T, m *ebpf.Map) int {
	t.Helper()
	n := 0
	k := make([]byte, m.KeySize())
	v := make([]byte, m.ValueSize())
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// assertNodeEmpty checks that no attachment left anything behind.
func assertNodeEmpty(t *testing.T, pinDir string, cs ...*testenv.Container) {
	t.Helper()
	o, err := node.Open(pinDir)
	if err != nil {
		t.Fatalf("open pins: %v", err)
	}
	defer o.Close()
	for name, m := range map[string]*ebpf.Map{"attachments": o.Attach, "enroll": o.Enroll,
		"local_addrs": o.LocalAddrs, "domain_addrs": o.DomainAddrs} {
		if n := mapLen(t, m); n != 0 {
			t.Errorf("map %s still has %d entries", name, n)
		}
	}
	ents, err := os.ReadDir(filepath.Join(pinDir, node.ContainersDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("per-container pin left: %s", e.Name())
	}
	for _, c := range cs {
		// A link leaves its cgroup asynchronously once its pin went:
		// bpffs drops its reference after an RCU grace period.
		var ids []ebpf.ProgramID
		for i := 0; i < 50; i++ {
			var err error
			if ids, err = cgroup.AttachedIDs(c.Cgroup); err != nil {
				t.Fatal(err)
			}
			if len(ids) == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(ids) != 0 {
			t.Errorf("cgroup %s still has sock_ops programs %v", c.Cgroup, ids)
		}
	}
}

// TestDelCleansUpAndReloads covers DEL (nothing left, idempotent) and a
// reload after the pins were wiped.
func TestDelCleansUpAndReloads(t *testing.T) {
	testenv.RequireRoot(t)
	n, a, b := pair(t, map[string]any{"mode": "sockmap"}, "10.213.0.0/24")
	veths := []string{a.HostVeth(n), b.HostVeth(n)}
	if err := n.Socksplice(t, "CHECK", a, nil); err != nil {
		t.Errorf("CHECK after ADD: %v", err)
	}
	for _, c := range []*testenv.Container{a, b} {
		if ids, _ := cgroup.AttachedIDs(c.Cgroup); len(ids) != 1 {
			t.Fatalf("cgroup %s: want 1 sock_ops program after ADD, have %v", c.Cgroup, ids)
		}
	}

	for _, c := range []*testenv.Container{a, b} {
		if err := n.Del(t, c); err != nil {
			t.Fatalf("DEL %s: %v", c.ID, err)
		}
	}
	assertNodeEmpty(t, n.PinDir, a, b)
	for _, v := range veths {
		if _, err := os.Stat("/sys/class/net/" + v); err == nil {
			t.Errorf("host veth %s still exists after DEL", v)
		}
	}
	if err := n.Socksplice(t, "CHECK", a, nil); err == nil {
		t.Errorf("CHECK after DEL succeeded, want an error")
	}
	for _, c := range []*testenv.Container{a, b} {
		if err := n.Del(t, c); err != nil {
			t.Errorf("second DEL %s: %v", c.ID, err)
		}
	}

	// Wipe the node's pins (as a reboot or an operator would) and re-ADD.
	ents, _ := os.ReadDir(n.PinDir)
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(n.PinDir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Del(t, a); err != nil {
		t.Errorf("DEL with no pins: %v", err)
	}
	n.MustAdd(t, a)
	n.MustAdd(t, b)
	sockmapExchange(t, "after reload", n, b, a, 5003, 4<<20, 300)
}

// TestNodeLevelAttach: without cgroupPath and with no process in the netns
// (podman's order) the plugin attaches at the cgroup v2 root, and the
// enrollment map alone selects the containers.
func TestNodeLevelAttach(t *testing.T) {
	testenv.RequireRoot(t)
	n := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.214.0.0/24", PinDir: testenv.PinDir(t), Plugin: map[string]any{"mode": "sockmap"}})
	a, b := testenv.NewContainer(t, "a"), testenv.NewContainer(t, "b")
	for _, c := range []*testenv.Container{a, b} {
		if _, err := n.AddNoCgroup(t, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(n.PinDir, node.LinksDir, "node-sockops")); err != nil {
		t.Fatalf("node-level link not pinned: %v", err)
	}
	sockmapExchange(t, "node-level", n, b, a, 5004, 4<<20, 400)
}

// TestParallelAdds adds 20 containers, 8 at a time, to one network: all
// succeed and share one set of pinned objects.
func TestParallelAdds(t *testing.T) {
	testenv.RequireRoot(t)
	n := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.215.0.0/24", PinDir: testenv.PinDir(t), Plugin: map[string]any{"mode": "sockmap"}})
	const total, par = 20, 8
	cs := make([]*testenv.Container, total)
	for i := range cs {
		cs[i] = testenv.NewContainer(t, fmt.Sprintf("p%d", i))
	}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	errs := make([]error, total)
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			_, errs[i] = n.Add(t, c)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("ADD %d: %v", i, err)
		}
	}
	o, err := node.Open(n.PinDir)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	info, err := o.SockOps.Info()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := info.ID()
	for _, c := range cs {
		ids, err := cgroup.AttachedIDs(c.Cgroup)
		if err != nil || len(ids) != 1 || ids[0] != want {
			t.Errorf("container %s: attached programs %v (%v), want exactly the pinned one %d", c.ID, ids, err, want)
		}
	}
	if got := mapLen(t, o.Enroll); got != total {
		t.Errorf("enrollment map has %d entries, want %d", got, total)
	}
	ents, _ := os.ReadDir(filepath.Join(n.PinDir, node.MapsDir))
	progs, _ := os.ReadDir(filepath.Join(n.PinDir, node.ProgsDir))
	wantProgs := 2 // sockops, msg
	if node.HaveSpliceKfuncs() {
		wantProgs = 3 // and the splice engine's, where its module is loaded
	}
	if len(ents) != 12 || len(progs) != wantProgs {
		t.Errorf("pin dir holds %d maps and %d programs, want one set (12 and %d)", len(ents), len(progs), wantProgs)
	}
	if got := mapLen(t, o.NsCounters); got != total {
		t.Errorf("per-netns counters map has %d entries, want one per enrolled netns (%d)", got, total)
	}
	// The first two containers still pair through the shared objects.
	o.Close() // the node lock: the Meter opens the pins itself
	m := n.Meter(t)
	exchange(t, cs[1], cs[0], netip.AddrPortFrom(cs[1].IP(n), 5005), 1<<20, 500, 0)
	if d := m.Counters(); d.Paired < 2 {
		t.Errorf("paired +%d, want >= 2", d.Paired)
	}
}

// TestGCAndStatus: GC drops attachments the runtime no longer lists;
// STATUS reports the engine usable.
func TestGCAndStatus(t *testing.T) {
	testenv.RequireRoot(t)
	n, a, b := pair(t, map[string]any{"mode": "sockmap"}, "10.216.0.0/24")
	ctx := context.Background()
	if err := n.CNI.GetStatusNetworkList(ctx, n.List); err != nil {
		t.Errorf("STATUS: %v", err)
	}
	// The operator's view: "socksplice status PINDIR".
	out, err := exec.Command(testenv.PluginBinary(t), "status", n.PinDir).Output()
	if err != nil {
		t.Fatalf("socksplice status: %v", err)
	}
	var st struct {
		Meta        node.Meta `json:"meta"`
		Attachments []struct{ ContainerID string }
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("status output: %v\n%s", err, out)
	}
	if len(st.Attachments) != 2 || st.Meta.Stamp != node.Stamp() {
		t.Errorf("status shows %d attachments and stamp %q, want 2 and %q", len(st.Attachments), st.Meta.Stamp, node.Stamp())
	}
	err = n.CNI.GCNetworkList(ctx, n.List, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: a.ID, IfName: "eth0"}}})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	if err := n.Socksplice(t, "CHECK", a, nil); err != nil {
		t.Errorf("CHECK of kept container after GC: %v", err)
	}
	o, err := node.Open(n.PinDir)
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := enroll.Records(o)
	o.Close()
	if len(recs) != 1 {
		t.Errorf("after GC %d attachment records remain, want 1 (container %s)", len(recs), a.ID)
	}
	if ids, _ := cgroup.AttachedIDs(b.Cgroup); len(ids) != 0 {
		t.Errorf("GC left programs on %s: %v", b.Cgroup, ids)
	}
}

// TestDelWithConfigTypo: the conflist gained a typo after ADD (an operator
// edited it). DEL of the socksplice entry cannot parse its config, yet it
// must succeed and undo its own ADD, so that the chain's DEL reaches the
// bridge and host-local and the container's address is released.
func TestDelWithConfigTypo(t *testing.T) {
	testenv.RequireRoot(t)
	n, a, b := pair(t, map[string]any{"mode": "sockmap"}, "10.218.0.0/24")
	ip := a.IP(n)
	leases := filepath.Join(ipamDataDir(t, n), n.Name)
	for _, c := range []*testenv.Container{a, b} {
		if _, err := os.Stat(filepath.Join(leases, c.IP(n).String())); err != nil {
			t.Fatalf("host-local lease of %s after ADD: %v", c.ID, err)
		}
	}

	for _, tc := range []struct {
		c    *testenv.Container
		typo func(p map[string]any)
	}{
		// a misspelt key, and a field that no longer validates
		{a, func(p map[string]any) { p["mdoe"] = p["mode"]; delete(p, "mode") }},
		{b, func(p map[string]any) { p["ringKiB"] = 3 }},
	} {
		bad := editPlugin(t, n, "socksplice", tc.typo)
		var log bytes.Buffer
		n.LogTo(t, &log)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := n.CNI.DelNetworkList(ctx, bad, &libcni.RuntimeConf{ContainerID: tc.c.ID, NetNS: tc.c.Netns, IfName: "eth0"})
		cancel()
		if err != nil {
			t.Fatalf("DEL of %s with a typo in the config: %v", tc.c.ID, err)
		}
		if _, err := os.Stat(filepath.Join(leases, tc.c.IP(n).String())); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("host-local lease of %s still there after DEL (stat: %v): the chain's DEL stopped", tc.c.ID, err)
		}
		if !strings.Contains(log.String(), "the config is invalid") {
			t.Errorf("DEL said nothing about the invalid config; stderr:\n%s", log.String())
		}
		t.Logf("DEL %s with a config typo: ok, lease released; plugin said: %s", tc.c.ID, strings.TrimSpace(log.String()))
	}
	assertNodeEmpty(t, n.PinDir, a, b)
	t.Logf("lease of %s released, enrollment maps and pins empty", ip)
}

// ipamDataDir is where the network's host-local keeps its leases.
func ipamDataDir(t testenv.T, n *testenv.Network) string {
	t.Helper()
	var p struct {
		IPAM struct {
			DataDir string `json:"dataDir"`
		} `json:"ipam"`
	}
	if err := json.Unmarshal(n.List.Plugins[0].Bytes, &p); err != nil || p.IPAM.DataDir == "" {
		t.Fatalf("bridge plugin config has no ipam.dataDir (%v): %s", err, n.List.Plugins[0].Bytes)
	}
	return p.IPAM.DataDir
}

// editPlugin returns n's conflist with the plugin of type typ changed by edit.
func editPlugin(t *testing.T, n *testenv.Network, typ string, edit func(map[string]any)) *libcni.NetworkConfigList {
	t.Helper()
	var list map[string]any
	if err := json.Unmarshal(n.List.Bytes, &list); err != nil {
		t.Fatal(err)
	}
	for _, p := range list["plugins"].([]any) {
		if pm := p.(map[string]any); pm["type"] == typ {
			edit(pm)
		}
	}
	b, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	l, err := libcni.ConfListFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestPodAnnotationMode: a pod's socksplice.io/mode annotation (passed by
// CRI runtimes in runtimeConfig) overrides the network's mode for that
// pod: "off" keeps it on plain TCP in a sockmap network, "sockmap" pairs
// it in a network that is off. A bad value fails its ADD, naming it.
func TestPodAnnotationMode(t *testing.T) {
	testenv.RequireRoot(t)
	n := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.217.0.0/24", PinDir: testenv.PinDir(t), Plugin: map[string]any{"mode": "sockmap"}})
	a, b := testenv.NewContainer(t, "a"), testenv.NewContainer(t, "optout")
	b.Annotations = map[string]string{"socksplice.io/mode": "off", "team": "x"}
	n.MustAdd(t, a)
	n.MustAdd(t, b)
	m := n.Meter(t, a, b)
	exchange(t, b, a, netip.AddrPortFrom(b.IP(n), 5010), 8<<20, 500, 0)
	d, veth := m.Counters(), m.VethBytes()
	if d.Paired != 0 || d.RedirectBytes != 0 || veth[0] < 8<<20 {
		t.Errorf("opted-out pod: paired +%d, redirected +%d B, veth carried %d B; want 0, 0 and the payload", d.Paired, d.RedirectBytes, veth[0])
	}
	t.Logf("socksplice.io/mode=off: paired +%d, veth carried %d B of 2x8 MiB: plain TCP", d.Paired, veth[0])

	off := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.217.1.0/24", PinDir: testenv.PinDir(t), Plugin: map[string]any{"mode": "off"}})
	c, e := testenv.NewContainer(t, "c"), testenv.NewContainer(t, "e")
	c.Annotations = map[string]string{"socksplice.io/mode": "sockmap"}
	e.Annotations = map[string]string{"socksplice.io/mode": "sockmap"}
	off.MustAdd(t, c)
	off.MustAdd(t, e)
	sockmapExchange(t, "socksplice.io/mode=sockmap in a network that is off", off, c, e, 5011, 8<<20, 510)

	bad := testenv.NewContainer(t, "bad")
	bad.Annotations = map[string]string{"socksplice.io/mode": "fast"}
	_, err := n.Add(t, bad)
	if err == nil || !strings.Contains(err.Error(), `socksplice.io/mode="fast"`) {
		t.Errorf("ADD with socksplice.io/mode=fast: %v; want an error naming the annotation", err)
	}
}

// TestCNIVersion031: flannel, Calico and Cilium ship their conflists at
// cniVersion 0.3.1; chained there, ADD pairs and DEL undoes it.
func TestCNIVersion031(t *testing.T) {
	testenv.RequireRoot(t)
	n := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.216.0.0/24", PinDir: testenv.PinDir(t), Version: "0.3.1", Plugin: map[string]any{"mode": "sockmap"}})
	a, b := testenv.NewContainer(t, "a"), testenv.NewContainer(t, "b")
	for _, c := range []*testenv.Container{a, b} {
		if r := n.MustAdd(t, c); r == nil || len(r.IPs) == 0 {
			t.Fatalf("ADD %s at 0.3.1: result %+v", c.ID, r)
		}
	}
	sockmapExchange(t, "cniVersion 0.3.1", n, b, a, 5012, 4<<20, 520)
	for _, c := range []*testenv.Container{a, b} {
		if err := n.Del(t, c); err != nil {
			t.Fatalf("DEL %s at 0.3.1: %v", c.ID, err)
		}
	}
	assertNodeEmpty(t, n.PinDir, a, b)
}
