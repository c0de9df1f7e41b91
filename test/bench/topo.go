// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/test/testenv"
)

// pathDef says how a path is reached: through its own CNI network with a
// socksplice config (engines and the baseline), or with another socket
// family inside the baseline's containers (peers).
type pathDef struct {
	name   string
	plugin map[string]any // socksplice config; nil for peers
	family string         // "tcp", "unix" or "smc"
}

var allPaths = []pathDef{
	{name: PathTCP, plugin: map[string]any{"mode": "off"}, family: "tcp"},
	{name: PathSockmap, plugin: map[string]any{"mode": "sockmap", "loopback": true}, family: "tcp"},
	{name: PathSplice, plugin: map[string]any{"mode": "splice", "loopback": true}, family: "tcp"},
	{name: PathSpliceBP, plugin: map[string]any{"mode": "splice", "loopback": true, "busyPollUs": 50}, family: "tcp"},
	{name: PathUnix, family: "unix"},
	{name: PathSMC, family: "smc"},
}

// spliceBP10 is the splice engine with a 10 us busy-poll: the sockperf
// mode's second busy-poll budget (sockperf.go).
var spliceBP10 = pathDef{name: PathSpliceBP10, plugin: map[string]any{"mode": "splice", "loopback": true, "busyPollUs": 10}, family: "tcp"}

// availability decides which of defs this kernel can run, and why not.
func availability(f engine.Features, defs []pathDef) []PathInfo {
	var out []PathInfo
	for _, p := range defs {
		pi := PathInfo{Name: p.name, Available: true}
		switch p.name {
		case PathSockmap:
			if !(f.SockOps && f.SkMsg && f.SockHash) {
				pi.Available, pi.Reason = false, "kernel lacks sock_ops, sk_msg or SOCKHASH"
			}
		case PathSplice, PathSpliceBP, PathSpliceBP10:
			if !f.SpliceKfunc {
				pi.Available, pi.Reason = false, "kfunc "+sbpf.SpliceKfuncPair+" is not in the kernel's BTF (the splice module is not loaded)"
			}
		case PathSMC:
			fd, err := unix.Socket(unix.AF_SMC, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				pi.Available, pi.Reason = false, fmt.Sprintf("socket(AF_SMC): %v (kernel built without CONFIG_SMC)", err)
			} else {
				unix.Close(fd)
			}
		}
		out = append(out, pi)
	}
	return out
}

// site is where one path's ends run: a network and two containers on it,
// and where the netkit topology runs, two more containers joined by a
// netkit pair. Loopback runs both ends in srv.
type site struct {
	def      pathDef
	net      *testenv.Network
	srv, cli *testenv.Container
	nk       *testenv.NetkitPair // nil unless the netkit topology was made
}

// serverIP is the address the server listens on in topo.
func (s *site) serverIP(topo string) netip.Addr {
	switch topo {
	case TopoLoopback:
		return netip.AddrFrom4([4]byte{127, 0, 0, 1})
	case TopoNetkit:
		return s.nk.AddrA
	default:
		return s.srv.IP(s.net)
	}
}

func (s *site) addr(topo string, port int) string {
	if s.def.family == "unix" {
		return filepath.Join(unixDir, fmt.Sprintf("%s-%d.sock", topo, port))
	}
	return netip.AddrPortFrom(s.serverIP(topo), uint16(port)).String()
}

func (s *site) ends(topo string) (srv, cli *testenv.Container) {
	switch topo {
	case TopoLoopback:
		return s.srv, s.srv
	case TopoNetkit:
		return s.nk.A, s.nk.B
	}
	return s.srv, s.cli
}

var unixDir string

// buildSites makes one network with two containers for every available
// CNI path of defs; the peers run in the baseline's containers.
func buildSites(t testenv.T, defs []pathDef, paths []PathInfo) map[string]*site {
	sites := map[string]*site{}
	var base *site
	for i, p := range defs {
		if !available(paths, p.name) || p.plugin == nil {
			continue
		}
		pin := fmt.Sprintf("/sys/fs/bpf/socksplice-bench-%d-%s", os.Getpid(), strings.ReplaceAll(p.name, "+", "-"))
		plugin := map[string]any{}
		for k, v := range p.plugin {
			plugin[k] = v
		}
		n := testenv.NewNetwork(t, testenv.NetOpts{
			Subnet: fmt.Sprintf("10.234.%d.0/24", i),
			PinDir: pin,
			Plugin: plugin,
		})
		t.Cleanup(func() { os.RemoveAll(pin) })
		s := &site{def: p, net: n}
		s.srv = testenv.NewContainer(t, "bsrv")
		s.cli = testenv.NewContainer(t, "bcli")
		n.MustAdd(t, s.srv)
		n.MustAdd(t, s.cli)
		sites[p.name] = s
		if p.name == PathTCP {
			base = s
		}
	}
	unixDir = t.TempDir()
	for _, p := range defs {
		if available(paths, p.name) && p.plugin == nil && base != nil {
			sites[p.name] = &site{def: p, net: base.net, srv: base.srv, cli: base.cli}
		}
	}
	return sites
}

func available(paths []PathInfo, name string) bool {
	for _, p := range paths {
		if p.Name == name {
			return p.Available
		}
	}
	return false
}

// startEnd runs one end in c pinned to cpu; a server listens when it
// returns.
func startEnd(t testenv.T, c *testenv.Container, cpu int, s EndSpec) (*testenv.Proc, error) {
	return c.StartHelper(t, testenv.Helper{Role: endRole, Spec: s, Prefix: pinned(cpu), Ready: s.Role == "server"})
}

// buildNetkit joins two more containers by a netkit pair for every CNI
// site, enrolled in a network of the site's socksplice config, and gives
// the peers the baseline's pair. On a kernel without netkit it makes
// nothing and says why.
func buildNetkit(t testenv.T, defs []pathDef, sites map[string]*site) (unavailable string) {
	var base *site
	for i, p := range defs {
		s := sites[p.name]
		if s == nil || p.plugin == nil {
			continue
		}
		pin := fmt.Sprintf("/sys/fs/bpf/socksplice-bench-%d-nk-%s", os.Getpid(), strings.ReplaceAll(p.name, "+", "-"))
		t.Cleanup(func() { os.RemoveAll(pin) })
		a, b := testenv.NewContainer(t, "bnka"), testenv.NewContainer(t, "bnkb")
		nk, err := testenv.NewNetkitPair(t, testenv.NetOpts{Subnet: fmt.Sprintf("10.235.%d.0/24", i), PinDir: pin, Plugin: p.plugin}, a, b)
		if errors.Is(err, testenv.ErrNoNetkit) {
			return err.Error()
		}
		if err != nil {
			t.Fatal(err)
		}
		s.nk = nk
		if p.name == PathTCP {
			base = s
		}
	}
	for _, s := range sites {
		if s.def.plugin == nil && base != nil {
			s.nk = base.nk
		}
	}
	return ""
}

// wireBytes is what the interfaces carried that a redirected connection
// should not use: lo in the container for loopback, both host veths for
// the bridge topology, both netkit devices for netkit.
func (s *site) wireBytes(t testenv.T, topo string) uint64 {
	switch topo {
	case TopoVeth:
		return testenv.VethBytes(t, s.srv.HostVeth(s.net)) + testenv.VethBytes(t, s.cli.HostVeth(s.net))
	case TopoNetkit:
		return s.nk.Bytes(t)
	}
	return s.srv.LoBytes(t)
}

// counters are the BPF counters of the network that topo's ends are in.
func (s *site) counters(t testenv.T, topo string) testenv.Counters {
	if s.def.plugin == nil || s.def.name == PathTCP {
		return testenv.Counters{}
	}
	if topo == TopoNetkit {
		return testenv.ReadCounters(t, s.nk.PinDir)
	}
	return testenv.ReadCounters(t, s.net.PinDir)
}
