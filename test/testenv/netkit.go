// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrNoNetkit is what NewNetkitPair returns on a kernel that cannot make
// netkit devices (before 6.7, or built without CONFIG_NETKIT).
var ErrNoNetkit = errors.New("the kernel makes no netkit devices (Linux 6.7+ with CONFIG_NETKIT)")

// NetkitPair is two containers joined by one netkit pair, the primary in
// A and the peer in B, in L3 mode with no BPF program: one device hop
// from A's netns into B's, which is what Cilium's netkit datapath gives
// two pods on a node with its BPF host routing (bpf_redirect_peer), minus
// Cilium's own programs. No reference CNI plugin makes netkit devices, so
// NewNetkitPair makes the pair itself, as a primary plugin would, and then
// runs only the socksplice plugin through libcni, with a prevResult that
// describes the pair.
type NetkitPair struct {
	Name   string // the CNI network's name
	PinDir string
	Dev    string // the device's name, the same in both containers
	A, B   *Container
	// AddrA and AddrB are the containers' addresses, in one /24.
	AddrA, AddrB netip.Addr
	cni          *libcni.CNIConfig
	plugin       map[string]any // socksplice's config, without prevResult
}

// NewNetkitPair joins a and b by a netkit pair with addresses .2 and .3 of
// o.Subnet (an IPv4 /24) and runs socksplice ADD (config: o.PinDir,
// o.Plugin) for both; DEL runs at cleanup. On a kernel without netkit it
// makes nothing and returns an error wrapping ErrNoNetkit; any other
// failure fails t.
func NewNetkitPair(t T, o NetOpts, a, b *Container) (*NetkitPair, error) {
	t.Helper()
	pfx, err := netip.ParsePrefix(o.Subnet)
	if err != nil || !pfx.Addr().Is4() || pfx.Bits() != 24 {
		t.Fatalf("netkit pair: subnet %q: want an IPv4 /24", o.Subnet)
	}
	base := pfx.Masked().Addr().As4()
	p := &NetkitPair{Name: o.Name, PinDir: o.PinDir, Dev: "nk0", A: a, B: b,
		AddrA: netip.AddrFrom4([4]byte{base[0], base[1], base[2], 2}),
		AddrB: netip.AddrFrom4([4]byte{base[0], base[1], base[2], 3})}
	if p.Name == "" {
		p.Name = "ssnk-" + suffix()
	}

	nsA, err := netns.GetFromPath(a.Netns)
	if err != nil {
		t.Fatalf("netkit pair: %v", err)
	}
	defer nsA.Close()
	nsB, err := netns.GetFromPath(b.Netns)
	if err != nil {
		t.Fatalf("netkit pair: %v", err)
	}
	defer nsB.Close()
	// rtnetlink only: a handle opens xfrm and netfilter sockets too by
	// default, which a small kernel (the test kernel) does not have.
	hA, err := netlink.NewHandleAt(nsA, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netkit pair: netlink in %s: %v", a.ID, err)
	}
	defer hA.Close()
	hB, err := netlink.NewHandleAt(nsB, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netkit pair: netlink in %s: %v", b.ID, err)
	}
	defer hB.Close()

	nk := &netlink.Netkit{
		LinkAttrs:  netlink.LinkAttrs{Name: p.Dev, Flags: net.FlagUp},
		Mode:       netlink.NETKIT_MODE_L3,
		Policy:     netlink.NETKIT_POLICY_FORWARD,
		PeerPolicy: netlink.NETKIT_POLICY_FORWARD,
	}
	nk.SetPeerAttrs(&netlink.LinkAttrs{Name: p.Dev, Flags: net.FlagUp, Namespace: netlink.NsFd(int(nsB))})
	if err := hA.LinkAdd(nk); err != nil {
		// rtnetlink answers an unknown link kind with EOPNOTSUPP.
		if errors.Is(err, unix.EOPNOTSUPP) {
			return nil, fmt.Errorf("%w: ip link add type netkit: %v", ErrNoNetkit, err)
		}
		t.Fatalf("netkit pair: adding %s in %s, peer in %s: %v", p.Dev, a.ID, b.ID, err)
	}
	// The pair goes with either netns; deleting it first keeps a failed
	// run from leaving it to the netns' own cleanup.
	t.Cleanup(func() {
		ns, err := netns.GetFromPath(a.Netns)
		if err != nil {
			return
		}
		defer ns.Close()
		h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
		if err != nil {
			return
		}
		defer h.Close()
		if l, err := h.LinkByName(p.Dev); err == nil {
			h.LinkDel(l)
		}
	})
	for _, end := range []struct {
		h    *netlink.Handle
		addr netip.Addr
		c    *Container
	}{{hA, p.AddrA, a}, {hB, p.AddrB, b}} {
		l, err := end.h.LinkByName(p.Dev)
		if err != nil {
			t.Fatalf("netkit pair: %s in %s: %v", p.Dev, end.c.ID, err)
		}
		ipn := &net.IPNet{IP: end.addr.AsSlice(), Mask: net.CIDRMask(24, 32)}
		if err := end.h.AddrAdd(l, &netlink.Addr{IPNet: ipn}); err != nil {
			t.Fatalf("netkit pair: address %v on %s in %s: %v", ipn, p.Dev, end.c.ID, err)
		}
		if err := end.h.LinkSetUp(l); err != nil {
			t.Fatalf("netkit pair: %s up in %s: %v", p.Dev, end.c.ID, err)
		}
	}

	p.cni = libcni.NewCNIConfigWithCacheDir([]string{BinDir(t)}, t.TempDir(), nil)
	p.plugin = map[string]any{"cniVersion": "1.1.0", "name": p.Name, "type": "socksplice", "pinDir": o.PinDir,
		"capabilities": map[string]bool{"cgroupPath": true}}
	for k, v := range o.Plugin {
		p.plugin[k] = v
	}
	for _, end := range []struct {
		c    *Container
		addr netip.Addr
	}{{a, p.AddrA}, {b, p.AddrB}} {
		if err := p.add(t, end.c, end.addr); err != nil {
			t.Fatalf("netkit pair: socksplice ADD %s: %v", end.c.ID, err)
		}
	}
	return p, nil
}

// conf is socksplice's config for c with prevResult: the pair's device in
// c's netns and its address, as a primary plugin would have returned them.
func (p *NetkitPair) conf(c *Container, addr netip.Addr) (*libcni.PluginConfig, error) {
	prev := &current.Result{
		CNIVersion: "1.1.0",
		Interfaces: []*current.Interface{{Name: p.Dev, Sandbox: c.Netns}},
		IPs: []*current.IPConfig{{Interface: current.Int(0),
			Address: net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(24, 32)}}},
	}
	m := map[string]any{"prevResult": prev}
	for k, v := range p.plugin {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return libcni.NetworkPluginConfFromBytes(b)
}

func (p *NetkitPair) rt(c *Container) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: c.ID, NetNS: c.Netns, IfName: p.Dev,
		CapabilityArgs: map[string]any{"cgroupPath": c.CgroupRel}}
}

// add runs socksplice ADD for c through libcni; DEL follows at cleanup.
func (p *NetkitPair) add(t T, c *Container, addr netip.Addr) error {
	conf, err := p.conf(c, addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := p.cni.AddNetwork(ctx, conf, p.rt(c)); err != nil {
		return err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := p.cni.DelNetwork(ctx, conf, p.rt(c)); err != nil {
			t.Errorf("socksplice DEL %s (netkit pair %s): %v", c.ID, p.Name, err)
		}
	})
	return nil
}

// Bytes is what the pair's two devices received and sent, summed: the
// payload of a connection between A and B that stayed on TCP crosses it
// twice (A's tx, B's rx).
func (p *NetkitPair) Bytes(t T) uint64 {
	t.Helper()
	var sum uint64
	for _, c := range []*Container{p.A, p.B} {
		rx, tx := c.LinkBytes(t, p.Dev)
		sum += rx + tx
	}
	return sum
}
