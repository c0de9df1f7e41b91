// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package enroll enrolls a container's network namespace into the node's
// pairing maps, attaches its engine's sock_ops program where the
// container's sockets will meet it, and records that in the node's
// attachments map, so that DEL, GC, CHECK and STATUS find exactly what ADD
// did.
package enroll

import (
	"errors"
	"fmt"
	"maps"
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
	"github.com/socksplice/socksplice/pkg/counters"
	"github.com/socksplice/socksplice/pkg/crashpoint"
	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/pkg/node"
)

// Policy is what the BPF programs apply to one container's flows.
type Policy struct {
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
	Engine      string // engine.Sockmap, engine.Splice, or engine.Off (recorded only)
	Policy      Policy
}

// Pin names of the node-level sock_ops links, one per engine.
const (
	nodeLinkName       = "node-sockops"
	nodeSpliceLinkName = "node-splice"
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

func nodeLinkPin(o *node.Objects, splice bool) string {
	if splice {
		return filepath.Join(o.Dir, node.LinksDir, nodeSpliceLinkName)
	}
	return filepath.Join(o.Dir, node.LinksDir, nodeLinkName)
}

// legacyLinkPin is where builds before the hashed names (linkPin) pinned
// an attachment's link: DEL and CHECK still find those.
func legacyLinkPin(o *node.Objects, network, containerID, ifname string) string {
	name := strings.ReplaceAll(containerID+"_"+ifname+"_"+network, "/", "-")
	return filepath.Join(o.Dir, node.ContainersDir, name)
}

func policyValue(p Policy, splice bool) sbpf.AbiSsPolicy {
	v := sbpf.AbiSsPolicy{Flags: sbpf.PolicyEnabled, BusyPollUs: p.BusyPollUs, RingKib: p.RingKiB}
	if p.Loopback {
		v.Flags |= sbpf.PolicyLoopback
	}
	if splice {
		v.Flags |= sbpf.PolicySplice
	}
	n := min(len(p.Ports), sbpf.MaxPorts)
	v.Nports = uint16(n)
	copy(v.Ports[:], p.Ports[:n])
	return v
}

// Add enrolls the attachment with its engine and records it. With engine
// off it only records that (nothing is enrolled or attached), so that
// CHECK and STATUS can tell. On error everything it did is undone.
func Add(o *node.Objects, a Attachment) (err error) {
	if len(a.Addrs) > MaxAddrs {
		return fmt.Errorf("prevResult: %d addresses on %s, at most %d are supported", len(a.Addrs), a.IfName, MaxAddrs)
	}
	if n := len(a.Network) + len(a.ContainerID) + len(a.IfName); n > MaxIdent {
		return fmt.Errorf("network name, container ID and interface name take %d bytes, at most %d are supported", n, MaxIdent)
	}
	var prog *ebpf.Program
	switch a.Engine {
	case engine.Sockmap:
		prog = o.SockOps
	case engine.Splice:
		if prog = o.Splice; prog == nil {
			return errors.New("the splice engine's program is not loaded on this node")
		}
	case engine.Off:
	default:
		return fmt.Errorf("unknown engine %q", a.Engine)
	}
	cookie, err := NetnsCookie(a.Netns)
	if err != nil {
		return err
	}
	key := RecordKey(a.Network, a.ContainerID, a.IfName)
	rec := Record{Netns: cookie, Domain: a.Domain}
	rec.SetIdent(a.Network, a.ContainerID, a.IfName)
	if prog == nil {
		rec.Flags = RecordOff
		if err := putRecord(o, key, &rec); err != nil {
			return fmt.Errorf("storing attachment record: %w", err)
		}
		crashpoint.Done(crashpoint.EnrollRecord)
		return nil
	}
	splice := a.Engine == engine.Splice
	if splice {
		rec.Flags |= RecordSplice
	}
	for i, ad := range a.Addrs {
		rec.Addrs[i] = ad.As16()
	}
	rec.NAddrs = uint32(len(a.Addrs))

	defer func() {
		if err != nil {
			undo(o, key, rec, a.Network, a.ContainerID, a.IfName)
		}
	}()
	// Store the record first: whatever follows, DEL can find and undo it.
	if err = putRecord(o, key, &rec); err != nil {
		return full(fmt.Errorf("storing attachment record: %w", err), o.Attach, "attachments (network, container, interface)")
	}
	crashpoint.Done(crashpoint.EnrollRecord)
	// The counters first: the programs count for a netns from the moment
	// it is enrolled.
	if err = counters.StartNS(o, cookie); err != nil {
		return full(err, o.NsCounters, enrolledNetns)
	}
	pol := policyValue(a.Policy, splice)
	if err = o.Enroll.Update(cookie, &pol, ebpf.UpdateAny); err != nil {
		return full(fmt.Errorf("enrolling netns: %w", err), o.Enroll, enrolledNetns)
	}
	crashpoint.Done(crashpoint.EnrollPolicy)
	for _, ad := range a.Addrs {
		lk := sbpf.AbiSsLocalKey{Netns: cookie, Addr: addrWords(ad)}
		if err = o.LocalAddrs.Update(&lk, a.Domain, ebpf.UpdateAny); err != nil {
			return full(fmt.Errorf("registering address %s: %w", ad, err), o.LocalAddrs, containerAddrs)
		}
		crashpoint.Done(crashpoint.EnrollLocalAddr)
		// The newest owner of an address wins: IPAM hands an address to one
		// live container, so an older entry is a leftover.
		dk := sbpf.AbiSsDomainKey{Domain: a.Domain, Addr: addrWords(ad)}
		if err = o.DomainAddrs.Update(&dk, cookie, ebpf.UpdateAny); err != nil {
			return full(fmt.Errorf("registering address %s: %w", ad, err), o.DomainAddrs, containerAddrs)
		}
		crashpoint.Done(crashpoint.EnrollDomainAddr)
	}

	root, err := cgroup.Root()
	if err != nil {
		return err
	}
	dir, how, err := cgroup.Resolve(root, a.CgroupPath, a.Netns)
	if err != nil {
		return err
	}
	if how == cgroup.NodeLevel {
		err = cgroup.Attach(dir, prog, nodeLinkPin(o, splice))
		rec.Flags |= RecordNodeLink
	} else {
		err = cgroup.Attach(dir, prog, linkPin(o, a.Network, a.ContainerID, a.IfName))
		rec.Flags |= RecordCgroupLink
	}
	if err != nil {
		return err
	}
	if err = putRecord(o, key, &rec); err != nil {
		return fmt.Errorf("storing attachment record: %w", err)
	}
	crashpoint.Done(crashpoint.EnrollFlags)
	return nil
}

// What the node's maps hold, in full's words.
const (
	enrolledNetns  = "enrolled network namespaces (containers)"
	containerAddrs = "container addresses"
)

// full says which of the node's limits an update that failed hit: a hash
// map refuses a new key with E2BIG once it holds max_entries. Other
// errors pass as they are.
func full(err error, m *ebpf.Map, what string) error {
	if m == nil || !errors.Is(err, unix.E2BIG) {
		return err
	}
	info, _ := m.Info()
	name := "a"
	if info != nil {
		name = "the " + info.Name
	}
	return fmt.Errorf("node limit reached: a node holds at most %d %s, and %s map is full", m.MaxEntries(), what, name)
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
	key := RecordKey(network, containerID, ifname)
	rec, ok, err := getRecord(o, key)
	if err != nil {
		return err
	}
	if !ok {
		// Nothing recorded; a link may still be pinned by an ADD that
		// died before its record: drop it.
		return detachLinks(o, network, containerID, ifname)
	}
	return undo(o, key, rec, network, containerID, ifname)
}

// RemoveContainer undoes Add for every network's attachment of
// containerID on ifname, for a DEL whose config no longer names its
// network. It returns how many it removed.
func RemoveContainer(o *node.Objects, containerID, ifname string) (int, error) {
	return removeWhere(o, func(_, cid, ifn string) bool { return cid == containerID && ifn == ifname })
}

// removeWhere undoes the recorded attachments whose identity match selects.
func removeWhere(o *node.Objects, match func(network, containerID, ifname string) bool) (int, error) {
	recs, err := Records(o)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for key, rec := range recs {
		net, cid, ifn, ok := rec.Identity(key)
		if !ok || !match(net, cid, ifn) {
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

func detachLinks(o *node.Objects, network, containerID, ifname string) error {
	return errors.Join(cgroup.Detach(linkPin(o, network, containerID, ifname)),
		ignoreNameTooLong(cgroup.Detach(legacyLinkPin(o, network, containerID, ifname))))
}

func undo(o *node.Objects, key [32]byte, rec Record, network, containerID, ifname string) error {
	// A link that could not be unpinned (a read-only bpffs) fails the
	// undo, so the record stays for DEL and GC to find the link by.
	errs := []error{detachLinks(o, network, containerID, ifname)}
	for _, ad := range rec.AddrList() {
		lk := sbpf.AbiSsLocalKey{Netns: rec.Netns, Addr: addrWords(ad)}
		errs = append(errs, done(crashpoint.EnrollUnlocal, o.LocalAddrs.Delete(&lk)))
		dk := sbpf.AbiSsDomainKey{Domain: rec.Domain, Addr: addrWords(ad)}
		var owner uint64
		if o.DomainAddrs.Lookup(&dk, &owner) == nil && owner == rec.Netns {
			errs = append(errs, done(crashpoint.EnrollUndomain, o.DomainAddrs.Delete(&dk)))
		}
	}
	if rec.Flags&RecordOff == 0 { // else it enrolled nothing
		// The netns stays enrolled while another attachment still uses it.
		recs, err := Records(o)
		delete(recs, key)
		if err != nil {
			errs = append(errs, err)
		} else if !slices.ContainsFunc(slices.Collect(maps.Values(recs)), func(r Record) bool {
			return r.Netns == rec.Netns && r.Flags&RecordOff == 0
		}) {
			errs = append(errs, done(crashpoint.EnrollUnpolicy, o.Enroll.Delete(rec.Netns)))
			// Losing a container's counts is not worth failing DEL (and the
			// chain's DEL after it) for: Retire drops the entry regardless.
			_ = counters.Retire(o, rec.Netns, network)
		}
	}
	// The record goes last, once everything else is undone: a DEL killed
	// midway, or one that failed, leaves it for the next DEL or GC to
	// find the rest by.
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return deleteRecord(o, key)
}

// done reports a deletion: step s when it deleted something, an error
// unless it was already gone.
func done(s crashpoint.Step, err error) error {
	if err == nil {
		crashpoint.Done(s)
	}
	return ignoreMissing(err)
}

func ignoreMissing(err error) error {
	if errors.Is(err, ebpf.ErrKeyNotExist) || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// ignoreNameTooLong: a legacy pin name that does not fit was never pinned.
func ignoreNameTooLong(err error) error {
	if errors.Is(err, unix.ENAMETOOLONG) {
		return nil
	}
	return err
}

// ID identifies an attachment within a network, for GC.
type ID struct{ ContainerID, IfName string }

// GC removes the attachments of network that are not in keep and returns
// how many it removed.
func GC(o *node.Objects, network string, keep []ID) (int, error) {
	return removeWhere(o, func(net, cid, ifn string) bool {
		return net == network && !slices.Contains(keep, ID{cid, ifn})
	})
}
