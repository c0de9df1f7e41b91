// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package runtime

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/socksplice/socksplice/test/testenv"
)

// cnitool drives one network with the cnitool binary (pinned in .ci/run),
// its configuration and plugins private (NETCONFPATH, CNI_PATH).
type cnitool struct {
	bin, netDir, binDir string
}

func newCnitool(t *testing.T) *cnitool {
	t.Helper()
	testenv.RequireRoot(t)
	bin, err := exec.LookPath("cnitool")
	if err != nil {
		gopath, _ := exec.Command("go", "env", "GOPATH").Output()
		bin = filepath.Join(strings.TrimSpace(string(gopath)), "bin", "cnitool")
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("SKIP: needs cnitool (go install github.com/containernetworking/cni/cnitool@VERSION, as .ci/run does): not in PATH nor %s", bin)
		}
	}
	for _, b := range []string{"nsenter", "ss"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("SKIP: needs %s: %v", b, err)
		}
	}
	return &cnitool{bin: bin, netDir: t.TempDir(), binDir: testenv.BinDir(t)}
}

// run runs "cnitool CMD NET NETNS" with capArgs (CAP_ARGS, JSON; may be
// empty) and returns stdout and stderr (the plugins' stderr comes through).
func (c *cnitool) run(cmd, net, netns, capArgs string) (stdout, stderr string, err error) {
	x := exec.Command(c.bin, cmd, net, netns)
	x.Env = append(os.Environ(), "NETCONFPATH="+c.netDir, "CNI_PATH="+c.binDir, "CAP_ARGS="+capArgs)
	var o, e strings.Builder
	x.Stdout, x.Stderr = &o, &e
	err = x.Run()
	return o.String(), e.String(), err
}

func (c *cnitool) mustRun(t *testing.T, cmd, net, netns, capArgs string) string {
	t.Helper()
	out, errOut, err := c.run(cmd, net, netns, capArgs)
	if err != nil {
		t.Fatalf("cnitool %s %s %s: %v\n%s%s", cmd, net, netns, err, out, errOut)
	}
	return out
}

// containerID is the ID cnitool gives the attachment in netns.
func (c *cnitool) containerID(t *testing.T, netns string) string {
	t.Helper()
	// cnitool: "cnitool-" + hex of the first 10 bytes of sha512(netns).
	m, _ := filepath.Glob(filepath.Join(libcniCache, "results", "*"))
	for _, f := range m {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var e struct {
			ContainerID string `json:"containerId"`
			NetNS       string `json:"netns"`
		}
		if json.Unmarshal(b, &e) == nil && e.NetNS == netns && strings.HasPrefix(e.ContainerID, "cnitool-") {
			return e.ContainerID
		}
	}
	t.Fatalf("no libcni cache entry of cnitool for %s", netns)
	return ""
}

// add runs ADD for netns and returns the attachment's footprint; a DEL
// runs at cleanup (DEL is idempotent).
func (c *cnitool) add(t *testing.T, n *cniNet, name, netns, capArgs string) footprint {
	t.Helper()
	out := c.mustRun(t, "add", n.Name, netns, capArgs)
	t.Cleanup(func() { c.run("del", n.Name, netns, capArgs) })
	var res struct {
		IPs []struct{ Address string } `json:"ips"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) == 0 {
		t.Fatalf("cnitool add result: %v\n%s", err, out)
	}
	ip, _, _ := strings.Cut(res.IPs[0].Address, "/")
	return newFootprint(t, n, name, c.containerID(t, netns), netns, ip)
}

// TestCnitool drives ADD, CHECK, DEL and GC through cnitool: two netns
// exchange 64 MiB each way through the fast path (their cgroups passed as
// cgroupPath in CAP_ARGS); DEL leaves nothing and a second DEL succeeds;
// GC removes stale attachments of netns that were deleted without DEL,
// one still in libcni's cache (DEL through the cache) and one the runtime
// forgot (only the plugins' GC finds it).
func TestCnitool(t *testing.T) {
	c := newCnitool(t)
	n := newCNINet(t, "sscnitool", "10.251.5.0/24", map[string]any{
		"mode": "sockmap", "capabilities": map[string]bool{"cgroupPath": true}})
	n.writeConflist(t, c.netDir, "1.1.0") // GC needs 1.1.0

	a, b := testenv.NewContainer(t, "a"), testenv.NewContainer(t, "b")
	capArgs := func(ct *testenv.Container) string { return fmt.Sprintf(`{"cgroupPath": %q}`, ct.CgroupRel) }
	fa := c.add(t, n, "a", a.Netns, capArgs(a))
	fb := c.add(t, n, "b", b.Netns, capArgs(b))
	fa.OwnNetns, fb.OwnNetns = true, true
	for _, ct := range []*testenv.Container{a, b} {
		c.mustRun(t, "check", n.Name, ct.Netns, capArgs(ct))
	}
	if got := readStatus(t, n.PinDir).attached(n.Name); len(got) != 2 {
		t.Fatalf("after two ADDs: attachments %v", got)
	}
	const size = 64 << 20
	line := carriedBy(t, n, size, "sockmap", func() (s, cl testenv.XferResult, err error) {
		return testenv.Exchange(t, a, b,
			testenv.Xfer{Role: "server", Addr: "0.0.0.0:8080", Bytes: size, Seed: 11},
			testenv.Xfer{Role: "client", Addr: netip.AddrPortFrom(netip.MustParseAddr(fa.IP), 8080).String(), Bytes: size, Seed: 12})
	})
	for _, ct := range []*testenv.Container{a, b} {
		c.mustRun(t, "del", n.Name, ct.Netns, capArgs(ct))
		c.mustRun(t, "del", n.Name, ct.Netns, capArgs(ct)) // idempotent
	}
	requireNoLeftovers(t, "after DEL (twice each)", n, fa, fb)

	// Stale: netns gone without a DEL, as after a runtime crash.
	var stale []footprint
	for i := 1; i <= 2; i++ {
		name := fmt.Sprintf("ssstale%d-%s", i, nameSuffix())
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
		stale = append(stale, c.add(t, n, name, "/var/run/netns/"+name, ""))
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns del: %v %s", err, out)
		}
	}
	if got, l := readStatus(t, n.PinDir).attached(n.Name), n.leases(t); len(got) != 2 || len(l) != 2 {
		t.Fatalf("stale attachments before GC: %v, leases %v; want two each", got, l)
	}
	// The second one the runtime forgot: no cache entry, so libcni cannot
	// DEL it and only the plugins' own GC removes it.
	forgot, _ := filepath.Glob(filepath.Join(libcniCache, "results", n.Name+"-"+stale[1].ContainerID+"-*"))
	for _, f := range forgot {
		os.Remove(f)
	}
	_, gcErr, err := c.run("gc", n.Name, "/nonexistent", "")
	if err != nil {
		t.Fatalf("cnitool gc: %v\n%s", err, gcErr)
	}
	t.Logf("cnitool gc: stderr %q", strings.TrimSpace(gcErr))
	// host-local has no GC (plugins v1.9.1: "FIXME GC"): the forgotten
	// attachment's lease is the one thing GC cannot reclaim.
	if l := n.leases(t); len(l) != 1 || l[0] != stale[1].IP {
		t.Errorf("leases after GC: %v; want only the forgotten attachment's %s (host-local has no GC)", l, stale[1].IP)
	}
	os.Remove(filepath.Join(n.DataDir, n.Name, stale[1].IP))
	requireNoLeftovers(t, "after GC (and the forgotten lease removed by hand)", n, append(stale, fa, fb)...)
	if !t.Failed() {
		t.Logf("summary: ADD, CHECK, DEL x2, GC through cnitool; %s; GC removed 2 stale attachments (one cached, one forgotten; its lease stays: host-local has no GC); leftovers found: none", line)
	}
}
