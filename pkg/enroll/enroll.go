// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package enroll enrolls a container's network namespace into the node's
// pairing maps and attaches its engine's sock_ops program where the
// container's sockets will meet it; and undoes exactly that.
package enroll

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/node"
)

// Policy is what the BPF programs apply to one container's flows.
type Policy struct {
	Splice     bool // the splice engine, not sockmap, pairs the container's flows
	Loopback   bool
	Ports      []uint16
	BusyPollUs uint32
	RingKiB    uint32
}

// Attachment is one (network, container, interface) being added.
type Attachment struct {
	Network     string
	ContainerID string
	IfName      string
	Netns       string // path of the container's netns
	Domain      uint64 // isolation domain of the network
	Addrs       []netip.Addr
	CgroupPath  string // runtimeConfig.cgroupPath, may be empty
	Policy      Policy
}

// Info says what Add did.
type Info struct {
	NetnsCookie uint64
	Cgroup      string
	How         cgroup.How
}

// Pin names of the node-level sock_ops links, one per engine.
const (
	NodeLinkName       = "node-sockops"
	NodeSpliceLinkName = "node-splice"
)

// NetnsCookie returns the kernel's cookie of the netns at path: the BPF
// programs see the same value through bpf_get_netns_cookie.
func NetnsCookie(path string) (uint64, error) {
	var cookie uint64
	err := ns.WithNetNSPath(path, func(ns.NetNS) error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		v, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
		cookie = v
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("netns cookie of %s: %w", path, err)
	}
	return cookie, nil
}

// LinkPin is where the per-container cgroup link of an attachment is pinned.
func LinkPin(o *node.Objects, network, containerID, ifname string) string {
	name := strings.ReplaceAll(containerID+"_"+ifname+"_"+network, "/", "-")
	return filepath.Join(o.Dir, node.ContainersDir, name)
}

func nodeLinkPin(o *node.Objects, splice bool) string {
	if splice {
		return filepath.Join(o.Dir, node.LinksDir, NodeSpliceLinkName)
	}
	return filepath.Join(o.Dir, node.LinksDir, NodeLinkName)
}

func policyValue(p Policy) sbpf.AbiSsPolicy {
	v := sbpf.AbiSsPolicy{Flags: sbpf.PolicyEnabled, BusyPollUs: p.BusyPollUs, RingKib: p.RingKiB}
	if p.Loopback {
		v.Flags |= sbpf.PolicyLoopback
	}
	if p.Splice {
		v.Flags |= sbpf.PolicySplice
	}
	n := min(len(p.Ports), sbpf.MaxPorts)
	v.Nports = uint16(n)
	copy(v.Ports[:], p.Ports[:n])
	return v
}

// Add enrolls the attachment. On error everything it did is undone.
func Add(o *node.Objects, a Attachment) (info Info, err error) {
	if len(a.Addrs) > node.MaxAddrs {
		return info, fmt.Errorf("prevResult: %d addresses on %s, at most %d are supported", len(a.Addrs), a.IfName, node.MaxAddrs)
	}
	prog := o.SockOps
	if a.Policy.Splice {
		if prog = o.Splice; prog == nil {
			return info, errors.New("the splice engine's program is not loaded on this node")
		}
	}
	cookie, err := NetnsCookie(a.Netns)
	if err != nil {
		return info, err
	}
	info.NetnsCookie = cookie
	key := node.RecordKey(a.Network, a.ContainerID, a.IfName)
	rec := node.Record{Netns: cookie, Domain: a.Domain}
	if a.Policy.Splice {
		rec.Flags |= node.RecordSplice
	}
	for i, ad := range a.Addrs {
		rec.Addrs[i] = ad.As16()
	}
	rec.NAddrs = uint32(len(a.Addrs))
	rec.SetIdent(a.Network, a.ContainerID, a.IfName)

	defer func() {
		if err != nil {
			undo(o, key, rec, a.Network, a.ContainerID, a.IfName)
		}
	}()
	// Store the record first: whatever follows, DEL can find and undo it.
	if err = o.PutRecord(key, &rec); err != nil {
		return info, fmt.Errorf("storing attachment record: %w", err)
	}
	pol := policyValue(a.Policy)
	if err = o.Enroll.Update(cookie, &pol, ebpf.UpdateAny); err != nil {
		return info, fmt.Errorf("enrolling netns: %w", err)
	}
	for _, ad := range a.Addrs {
		lk := sbpf.AbiSsLocalKey{Netns: cookie, Addr: addrWords(ad)}
		if err = o.LocalAddrs.Update(&lk, a.Domain, ebpf.UpdateAny); err != nil {
			return info, fmt.Errorf("registering address %s: %w", ad, err)
		}
		// The newest owner of an address wins: IPAM hands an address to one
		// live container, so an older entry is a leftover.
		dk := sbpf.AbiSsDomainKey{Domain: a.Domain, Addr: addrWords(ad)}
		if err = o.DomainAddrs.Update(&dk, cookie, ebpf.UpdateAny); err != nil {
			return info, fmt.Errorf("registering address %s: %w", ad, err)
		}
	}

	root, err := cgroup.Root()
	if err != nil {
		return info, err
	}
	dir, how, err := cgroup.Resolve(root, a.CgroupPath, a.Netns)
	if err != nil {
		return info, err
	}
	info.Cgroup, info.How = dir, how
	if how == cgroup.NodeLevel {
		err = cgroup.Attach(dir, prog, nodeLinkPin(o, a.Policy.Splice))
		rec.Flags |= node.RecordNodeLink
	} else {
		err = cgroup.Attach(dir, prog, LinkPin(o, a.Network, a.ContainerID, a.IfName))
		rec.Flags |= node.RecordCgroupLink
	}
	if err != nil {
		return info, err
	}
	if err = o.PutRecord(key, &rec); err != nil {
		return info, fmt.Errorf("storing attachment record: %w", err)
	}
	return info, nil
}

// addrWords lays an address out as the BPF key does: 16 bytes, IPv4 as
// v4-mapped IPv6, in network order.
func addrWords(a netip.Addr) [4]uint32 {
	b := a.As16()
	var w [4]uint32
	for i := range w {
		// The BPF side compares raw memory: keep network byte order.
		w[i] = uint32(b[i*4]) | uint32(b[i*4+1])<<8 | uint32(b[i*4+2])<<16 | uint32(b[i*4+3])<<24
	}
	return w
}

// Remove undoes Add for one attachment. Missing pieces are not errors.
func Remove(o *node.Objects, network, containerID, ifname string) error {
	key := node.RecordKey(network, containerID, ifname)
	rec, ok, err := o.GetRecord(key)
	if err != nil {
		return err
	}
	if !ok {
		// Nothing recorded; a link may still be pinned by an ADD that
		// died before its record: drop it.
		return cgroup.Detach(LinkPin(o, network, containerID, ifname))
	}
	return undo(o, key, rec, network, containerID, ifname)
}

func undo(o *node.Objects, key [32]byte, rec node.Record, network, containerID, ifname string) error {
	var errs []error
	if err := cgroup.Detach(LinkPin(o, network, containerID, ifname)); err != nil {
		errs = append(errs, err)
	}
	for _, ad := range rec.AddrList() {
		lk := sbpf.AbiSsLocalKey{Netns: rec.Netns, Addr: addrWords(ad)}
		errs = append(errs, ignoreMissing(o.LocalAddrs.Delete(&lk)))
		dk := sbpf.AbiSsDomainKey{Domain: rec.Domain, Addr: addrWords(ad)}
		var owner uint64
		if o.DomainAddrs.Lookup(&dk, &owner) == nil && owner == rec.Netns {
			errs = append(errs, ignoreMissing(o.DomainAddrs.Delete(&dk)))
		}
	}
	if err := o.DeleteRecord(key); err != nil {
		errs = append(errs, err)
	}
	// The netns stays enrolled while another attachment still uses it.
	recs, err := o.Records()
	if err != nil {
		errs = append(errs, err)
	} else if !slices.ContainsFunc(mapValues(recs), func(r node.Record) bool { return r.Netns == rec.Netns }) {
		errs = append(errs, ignoreMissing(o.Enroll.Delete(rec.Netns)))
	}
	return errors.Join(errs...)
}

func mapValues(m map[[32]byte]node.Record) []node.Record {
	out := make([]node.Record, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func ignoreMissing(err error) error {
	if errors.Is(err, ebpf.ErrKeyNotExist) || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Check verifies that an attachment is still enrolled and attached, with
// the engine ADD recorded: auto may pick another one by now (the splice
// module was loaded since), and the container keeps its engine until it is
// added again.
func Check(o *node.Objects, a Attachment) error {
	key := node.RecordKey(a.Network, a.ContainerID, a.IfName)
	rec, ok, err := o.GetRecord(key)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("container %s (%s) is not enrolled", a.ContainerID, a.IfName)
	}
	cookie, err := NetnsCookie(a.Netns)
	if err != nil {
		return err
	}
	if cookie != rec.Netns {
		return fmt.Errorf("container %s: netns changed since ADD (cookie %d, recorded %d)", a.ContainerID, cookie, rec.Netns)
	}
	var pol sbpf.AbiSsPolicy
	if err := o.Enroll.Lookup(cookie, &pol); err != nil {
		return fmt.Errorf("container %s: netns not in the enrollment map: %w", a.ContainerID, err)
	}
	splice := rec.Flags&node.RecordSplice != 0
	a.Policy.Splice = splice
	if want := policyValue(a.Policy); pol != want {
		return fmt.Errorf("container %s: enrolled policy differs from the config", a.ContainerID)
	}
	for _, ad := range a.Addrs {
		var owner uint64
		dk := sbpf.AbiSsDomainKey{Domain: a.Domain, Addr: addrWords(ad)}
		if err := o.DomainAddrs.Lookup(&dk, &owner); err != nil || owner != cookie {
			return fmt.Errorf("container %s: address %s is not registered to it", a.ContainerID, ad)
		}
	}
	pin := LinkPin(o, a.Network, a.ContainerID, a.IfName)
	if rec.Flags&node.RecordNodeLink != 0 {
		pin = nodeLinkPin(o, splice)
	}
	if _, err := os.Stat(pin); err != nil {
		return fmt.Errorf("container %s: sock_ops link %s is missing", a.ContainerID, pin)
	}
	runs, err := node.LinkRunsSplice(pin)
	if err != nil {
		return fmt.Errorf("container %s: sock_ops link %s: %w", a.ContainerID, pin, err)
	}
	if runs != splice {
		return fmt.Errorf("container %s: sock_ops link %s runs the other engine's program", a.ContainerID, pin)
	}
	return nil
}

// ID identifies an attachment within a network, for GC.
type ID struct{ ContainerID, IfName string }

// GC removes the attachments of network that are not in keep and returns
// how many it removed.
func GC(o *node.Objects, network string, keep []ID) (int, error) {
	recs, err := o.Records()
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for key, rec := range recs {
		net, cid, ifn, ok := rec.Identity(key)
		if !ok || net != network || slices.Contains(keep, ID{cid, ifn}) {
			continue
		}
		if err := undo(o, key, rec, net, cid, ifn); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
