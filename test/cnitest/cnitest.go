// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package cnitest builds real test topologies for socksplice: network
// namespaces, cgroup v2 directories, conflists driven through libcni with
// the real bridge and host-local plugins, and helper processes placed in a
// container's netns and cgroup. Everything it creates is removed in
// t.Cleanup, also when the test fails.
package cnitest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/counters"
	"github.com/socksplice/socksplice/pkg/node"
)

// T is the part of testing.TB the harness uses, so that the demo can
// drive the same topology code outside "go test".
type T interface {
	Helper()
	Logf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Skip(args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// RequireRoot skips loudly when the test cannot create namespaces and load
// BPF. CI runs as root, so it never skips there.
func RequireRoot(t T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (network namespaces, cgroups, BPF)")
	}
	for _, tool := range []string{"ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: needs %s (iproute2)", tool)
		}
	}
}

// Suffix returns a short random name suffix.
func Suffix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// moduleRoot finds the repository root from this source file.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BinDir builds the socksplice plugin and the real bridge, host-local and
// loopback plugins once per test binary and returns their directory, so a
// test never runs against stale binaries.
func BinDir(t T) string {
	t.Helper()
	buildOnce.Do(func() {
		// In the test VM the host built them: nothing to compile there.
		if dir := os.Getenv("SOCKSPLICE_CNI_BIN"); dir != "" {
			binDir = dir
			return
		}
		binDir, buildErr = os.MkdirTemp("", "socksplice-cni-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/",
			"./plugin",
			"github.com/containernetworking/plugins/plugins/main/bridge",
			"github.com/containernetworking/plugins/plugins/ipam/host-local",
			"github.com/containernetworking/plugins/plugins/main/loopback")
		cmd.Dir = moduleRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building plugins: %v\n%s", err, out)
			return
		}
		buildErr = os.Rename(filepath.Join(binDir, "plugin"), filepath.Join(binDir, "socksplice"))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// RemoveBinDir deletes the built plugins; call it from TestMain.
func RemoveBinDir() {
	if binDir != "" && os.Getenv("SOCKSPLICE_CNI_BIN") == "" {
		os.RemoveAll(binDir)
	}
}

// PinDir returns a fresh pin directory under /sys/fs/bpf, removed at cleanup.
func PinDir(t T) string {
	t.Helper()
	dir := "/sys/fs/bpf/socksplice-test-" + Suffix()
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// NetOpts shapes a test network.
type NetOpts struct {
	Name      string         // network name; random if empty
	Subnet    string         // e.g. 10.123.0.0/24
	Subnet6   string         // optional second range, e.g. fd00:123::/64
	PinDir    string         // shared pinDir; required unless Plugin sets it
	Plugin    map[string]any // socksplice plugin fields (mode, ports, ...)
	NoCgroups bool           // do not declare the cgroupPath capability
}

// Network is one conflist [bridge + host-local + socksplice].
type Network struct {
	Name     string
	Bridge   string
	PinDir   string
	List     *libcni.NetworkConfigList
	CNI      *libcni.CNIConfig
	cacheDir string
}

// NewNetwork writes the conflist for a new network with its own bridge.
func NewNetwork(t T, o NetOpts) *Network {
	t.Helper()
	sfx := Suffix()
	name := o.Name
	if name == "" {
		name = "sstest-" + sfx
	}
	ranges := [][]map[string]string{{{"subnet": o.Subnet}}}
	if o.Subnet6 != "" {
		ranges = append(ranges, []map[string]string{{"subnet": o.Subnet6}})
	}
	plugin := map[string]any{"type": "socksplice", "pinDir": o.PinDir}
	if !o.NoCgroups {
		plugin["capabilities"] = map[string]bool{"cgroupPath": true}
	}
	for k, v := range o.Plugin {
		plugin[k] = v
	}
	list := map[string]any{
		"cniVersion": "1.1.0",
		"name":       name,
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": "ssbr" + sfx, "isGateway": false, "ipMasq": false,
				"ipam": map[string]any{
					"type":   "host-local",
					"ranges": ranges,
				},
			},
			plugin,
		},
	}
	b, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	return NetworkFromConfList(t, b)
}

// NetworkFromConfList uses a conflist [bridge + host-local + socksplice]
// as given, except that host-local keeps its leases in a temporary
// directory. The bridge is deleted at cleanup.
func NetworkFromConfList(t T, conflist []byte) *Network {
	t.Helper()
	var list map[string]any
	if err := json.Unmarshal(conflist, &list); err != nil {
		t.Fatalf("conflist: %v", err)
	}
	n := &Network{cacheDir: t.TempDir()}
	n.Name, _ = list["name"].(string)
	plugins, _ := list["plugins"].([]any)
	for _, p := range plugins {
		pm, _ := p.(map[string]any)
		switch pm["type"] {
		case "bridge":
			n.Bridge, _ = pm["bridge"].(string)
			if ipam, ok := pm["ipam"].(map[string]any); ok {
				ipam["dataDir"] = t.TempDir()
			}
		case "socksplice":
			n.PinDir, _ = pm["pinDir"].(string)
		}
	}
	if n.Bridge == "" || n.PinDir == "" {
		t.Fatalf("conflist %s: need a bridge plugin with a bridge name and a socksplice plugin with pinDir", n.Name)
	}
	b, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	if n.List, err = libcni.ConfListFromBytes(b); err != nil {
		t.Fatalf("conflist: %v", err)
	}
	n.CNI = libcni.NewCNIConfigWithCacheDir([]string{BinDir(t)}, n.cacheDir, nil)
	t.Cleanup(func() { exec.Command("ip", "link", "del", n.Bridge).Run() })
	return n
}

// Container is a network namespace plus its own cgroup v2 directory.
type Container struct {
	ID        string
	NetnsName string
	Netns     string // path
	Cgroup    string // absolute cgroup directory
	CgroupRel string // relative to the cgroup v2 root, as runtimes pass it
	results   map[string]*current.Result
	mu        sync.Mutex
	procs     []*Proc
}

var cgBaseOnce sync.Once
var cgBase, cgBaseRel string

// NewContainer creates a netns (lo up) and a cgroup directory.
func NewContainer(t T, name string) *Container {
	t.Helper()
	root, err := cgroup.Root()
	if err != nil {
		t.Fatal(err)
	}
	cgBaseOnce.Do(func() {
		cgBaseRel = fmt.Sprintf("/socksplice-test-%d", os.Getpid())
		cgBase = filepath.Join(root, cgBaseRel)
	})
	sfx := Suffix()
	c := &Container{
		ID:        name + "-" + sfx,
		NetnsName: "ss" + name + "-" + sfx,
		results:   map[string]*current.Result{},
	}
	c.Netns = "/var/run/netns/" + c.NetnsName
	c.CgroupRel = filepath.Join(cgBaseRel, c.ID)
	c.Cgroup = filepath.Join(root, c.CgroupRel)
	if out, err := exec.Command("ip", "netns", "add", c.NetnsName).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() {
		c.killAll()
		exec.Command("ip", "netns", "del", c.NetnsName).Run()
	})
	if out, err := exec.Command("ip", "-n", c.NetnsName, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v %s", err, out)
	}
	if err := os.MkdirAll(c.Cgroup, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.killAll()
		removeCgroup(c.Cgroup)
		os.Remove(cgBase) // succeeds once the last container is gone
	})
	return c
}

func removeCgroup(dir string) {
	for i := 0; i < 50; i++ {
		if err := os.Remove(dir); err == nil || os.IsNotExist(err) {
			return
		}
		time.Sleep(20 * time.Millisecond) // exiting processes leave the cgroup asynchronously
	}
}

func (c *Container) killAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		p.Kill()
	}
	c.procs = nil
}

func (n *Network) rt(c *Container, withCgroup bool) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{ContainerID: c.ID, NetNS: c.Netns, IfName: "eth0"}
	if withCgroup {
		rt.CapabilityArgs = map[string]any{"cgroupPath": c.CgroupRel}
	}
	return rt
}

// Add runs ADD of the network for c, passing c's cgroup as cgroupPath.
// A successful ADD is undone at cleanup.
func (n *Network) Add(t T, c *Container) (*current.Result, error) {
	return n.add(t, c, true)
}

// AddNoCgroup runs ADD without cgroupPath (as podman does).
func (n *Network) AddNoCgroup(t T, c *Container) (*current.Result, error) {
	return n.add(t, c, false)
}

func (n *Network) add(t T, c *Container, withCgroup bool) (*current.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := n.CNI.AddNetworkList(ctx, n.List, n.rt(c, withCgroup))
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { n.Del(t, c) })
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.results[n.Name] = r
	c.mu.Unlock()
	return r, nil
}

// MustAdd is Add that fails the test on error.
func (n *Network) MustAdd(t T, c *Container) *current.Result {
	t.Helper()
	r, err := n.Add(t, c)
	if err != nil {
		t.Fatalf("ADD %s in %s: %v", c.ID, n.Name, err)
	}
	return r
}

// Del runs DEL of the network for c.
func (n *Network) Del(t T, c *Container) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return n.CNI.DelNetworkList(ctx, n.List, n.rt(c, true))
}

// IP returns c's first IPv4 address in network n (or its first address).
func (c *Container) IP(n *Network) netip.Addr {
	return c.addr(n, func(a netip.Addr) bool { return a.Is4() })
}

// IP6 returns c's first IPv6 address in network n.
func (c *Container) IP6(n *Network) netip.Addr {
	return c.addr(n, func(a netip.Addr) bool { return a.Is6() })
}

func (c *Container) addr(n *Network, want func(netip.Addr) bool) netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.results[n.Name]
	if r == nil {
		return netip.Addr{}
	}
	for _, ip := range r.IPs {
		if a, ok := netip.AddrFromSlice(ip.Address.IP); ok && want(a.Unmap()) {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// HostVeth returns the host-side veth of c in network n.
func (c *Container) HostVeth(n *Network) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.results[n.Name]
	if r == nil {
		return ""
	}
	for _, i := range r.Interfaces {
		if i.Sandbox == "" && i.Name != n.Bridge {
			return i.Name
		}
	}
	return ""
}

// VethBytes returns rx+tx bytes of a host interface.
func VethBytes(t T, ifname string) uint64 {
	t.Helper()
	var sum uint64
	for _, f := range []string{"rx_bytes", "tx_bytes"} {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", ifname, "statistics", f))
		if err != nil {
			t.Fatalf("veth counters: %v", err)
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	return sum
}

// Counters reads the node's BPF counters from pinDir.
func Counters(t T, pinDir string) counters.Totals {
	t.Helper()
	o, err := node.Open(pinDir)
	if err != nil {
		t.Fatalf("opening pins: %v", err)
	}
	defer o.Close()
	c, err := counters.Read(o.Counters)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
