// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

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
		ids, err := cgroup.AttachedIDs(c.Cgroup)
		if err != nil {
			t.Fatal(err)
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
	if len(ents) != 10 || len(progs) != wantProgs {
		t.Errorf("pin dir holds %d maps and %d programs, want one set (10 and %d)", len(ents), len(progs), wantProgs)
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
