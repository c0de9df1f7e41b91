// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/crashpoint"
)

// AttachValueSize is the size of one attachment record (enroll.Record).
const AttachValueSize = 536

// The Go-side maps: the BPF programs never touch these. Like the BPF
// objects' maps, they are pinned by name under MapsDir.
var (
	attachSpec = &ebpf.MapSpec{Name: "attachments", Type: ebpf.Hash, KeySize: 32, ValueSize: AttachValueSize,
		MaxEntries: 65536, Pinning: ebpf.PinByName}
	metaSpec = &ebpf.MapSpec{Name: "meta", Type: ebpf.Array, KeySize: 4, ValueSize: metaValueSize,
		MaxEntries: metaKeys, Pinning: ebpf.PinByName}
	// What netns no longer enrolled counted, summed per network (and the
	// self-test's under its own name): key SHA-256 of the name, value
	// struct ss_ns_counters then the name.
	retiredSpec = &ebpf.MapSpec{Name: "retired_counters", Type: ebpf.Hash, KeySize: 32,
		ValueSize: uint32(RetiredValueSize), MaxEntries: 4096, Pinning: ebpf.PinByName}
	// A retirement in progress: the network's new retired sum (a
	// retired_counters value), journaled by netns cookie until the
	// netns's own entry is gone, so that a plugin killed midway neither
	// loses nor doubles its counts. Retirements run one at a time, under
	// the node lock, and each first finishes any a killed plugin left.
	retiringSpec = &ebpf.MapSpec{Name: "retiring", Type: ebpf.Hash, KeySize: 8,
		ValueSize: uint32(RetiredValueSize), MaxEntries: 64, Pinning: ebpf.PinByName}
)

// RetiredValueSize is the size of one retired_counters value: the
// counters (struct ss_ns_counters) and a network name of up to
// RetiredNameSize bytes.
const (
	RetiredNameSize  = 256
	RetiredValueSize = int(unsafe.Sizeof(sbpf.AbiSsNsCounters{})) + RetiredNameSize
)

// Pin names that differ from the objects' own names.
const (
	countersPin     = "counters" // the objects' .bss
	nsCountersPin   = sbpf.SockspliceMapNsCounters
	selfTestPin     = "selftest"
	selfTestSection = ".data.selftest"
	sockopsPin      = "sockops"
	msgPin          = "msg"
	splicePin       = "splice"
)

func progPin(dir, name string) string { return filepath.Join(dir, ProgsDir, name) }

// pinMaps makes every map of an object spec pinned by name under MapsDir,
// so that both objects load the same maps: cilium/ebpf opens a pinned map
// whose layout matches the spec and creates and pins a missing one.
//
// The counters live in the objects' .bss. cilium/ebpf names a data-section
// map after its section, decides BPF_F_MMAPABLE by that name, and writes
// the section's contents (zeros) into every map it loads for it, pinned or
// not; so the .bss is pinned as "counters", keeps the flag its pins have
// always had, and has no contents to write: a fresh array is zero anyway.
//
// socksplice.o's .data.selftest (the self-test's netns cookie) is pinned
// as "selftest" the same way, so that the self-test of a later run can set
// it; zero on a fresh load, no self-test running.
//
// Other data sections (splice.o's .rodata: the ABI version it was built
// with) belong to their object alone and are not pinned.
func pinMaps(spec *ebpf.CollectionSpec) {
	for name, m := range spec.Maps {
		if strings.HasPrefix(name, ".") && name != ".bss" && name != selfTestSection {
			continue
		}
		m.Pinning = ebpf.PinByName
		switch name {
		case ".bss":
			m.Name = countersPin
			if features.HaveMapFlag(features.BPF_F_MMAPABLE) == nil {
				m.Flags |= unix.BPF_F_MMAPABLE
			}
		case selfTestSection:
			m.Name = selfTestPin
		default:
			continue
		}
		m.Contents = nil
		for v, vs := range spec.Variables {
			if vs.SectionName == name {
				delete(spec.Variables, v)
			}
		}
	}
}

// newCollection loads an object spec with its maps pinned under dir.
// A pinned map whose layout changed (ebpf.ErrMapIncompatible) is removed
// and created afresh: sockets in an old SOCKHASH keep their old programs
// until they close.
func newCollection(spec *ebpf.CollectionSpec, dir string) (*ebpf.Collection, error) {
	pinMaps(spec)
	opts := ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: filepath.Join(dir, MapsDir)}}
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	if !errors.Is(err, ebpf.ErrMapIncompatible) {
		return coll, err
	}
	for _, ms := range spec.Maps {
		m, err := openMap(ms, dir)
		if err != nil {
			return nil, err
		}
		m.Close()
	}
	return ebpf.NewCollectionWithOptions(spec, opts)
}

// openMap opens the map pinned by spec's name, creating and pinning it if
// it is missing or its layout changed.
func openMap(spec *ebpf.MapSpec, dir string) (*ebpf.Map, error) {
	opts := ebpf.MapOptions{PinPath: filepath.Join(dir, MapsDir)}
	m, err := ebpf.NewMapWithOptions(spec, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		if err := os.Remove(filepath.Join(opts.PinPath, spec.Name)); err != nil {
			return nil, err
		}
		m, err = ebpf.NewMapWithOptions(spec, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", spec.Name, err)
	}
	return m, nil
}

// pinProgram pins p at path in place of whatever was pinned there: the
// library pins programs only where nothing is.
func pinProgram(p *ebpf.Program, path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := p.Pin(path); err != nil {
		return fmt.Errorf("pinning %s: %w", path, err)
	}
	return nil
}

// install loads this build's objects, reusing every pinned map whose layout
// still matches (so live pairings and enrollments survive an upgrade), pins
// them, moves every pinned cgroup link to the new program of its engine and
// stamps the node last, so a crash midway makes the next ADD redo it.
func install(dir string) (*Objects, error) {
	spec, err := sbpf.LoadSocksplice()
	if err != nil {
		return nil, fmt.Errorf("loading BPF object spec: %w", err)
	}
	for _, d := range []string{MapsDir, ProgsDir, LinksDir, ContainersDir} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	crashpoint.Done(crashpoint.NodeDirs)

	o := &Objects{Dir: dir}
	ok := false
	defer func() {
		if !ok {
			o.closeObjs()
		}
	}()

	coll, err := newCollection(spec, dir)
	if err != nil {
		return nil, fmt.Errorf("loading BPF objects: %w", err)
	}
	defer coll.Close()
	crashpoint.Done(crashpoint.NodeMaps)
	o.Pairs = coll.DetachMap("pairs")
	o.Holds = coll.DetachMap("holds")
	o.Enroll = coll.DetachMap("enroll")
	o.LocalAddrs = coll.DetachMap("local_addrs")
	o.DomainAddrs = coll.DetachMap("domain_addrs")
	o.Counters = coll.DetachMap(".bss")
	o.NsCounters = coll.DetachMap(nsCountersPin)
	o.SelfTestNetns = coll.DetachMap(selfTestSection)
	o.SockOps = coll.DetachProgram(sbpf.SockspliceProgSockspliceSockops)
	o.Msg = coll.DetachProgram(sbpf.SockspliceProgSockspliceMsg)

	if o.Attach, err = openMap(attachSpec, dir); err != nil {
		return nil, err
	}
	crashpoint.Done(crashpoint.NodeMapAttach)
	if o.Meta, err = openMap(metaSpec, dir); err != nil {
		return nil, err
	}
	crashpoint.Done(crashpoint.NodeMapMeta)
	if o.Retired, err = openMap(retiredSpec, dir); err != nil {
		return nil, err
	}
	crashpoint.Done(crashpoint.NodeMapRetired)
	if o.Retiring, err = openMap(retiringSpec, dir); err != nil {
		return nil, err
	}
	crashpoint.Done(crashpoint.NodeMapRetiring)
	// A node upgraded from a build without per-netns counters has
	// enrolled netns without an entry: give them one.
	if err := o.backfillNsCounters(); err != nil {
		return nil, err
	}
	for pin, p := range map[string]*ebpf.Program{sockopsPin: o.SockOps, msgPin: o.Msg} {
		if err := pinProgram(p, progPin(dir, pin)); err != nil {
			return nil, err
		}
		crashpoint.Done(crashpoint.NodeProgPin)
	}
	// The splice engine is optional: without its kfuncs the node runs the
	// sockmap engine alone, as before.
	if HaveSpliceKfuncs() {
		o.SpliceErr = o.LoadSplice(nil)
	} else if err := os.Remove(progPin(dir, splicePin)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}

	// A map-attached sk_msg program replaces its predecessor in place;
	// sockets already in the map keep the program they were paired with.
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{
		Target:  o.Pairs.FD(),
		Program: o.Msg,
		Attach:  ebpf.AttachSkMsgVerdict,
	}); err != nil {
		return nil, fmt.Errorf("attaching sk_msg program to the pair map: %w", err)
	}
	crashpoint.Done(crashpoint.NodeSkMsg)
	if err := o.updateLinks(); err != nil {
		return nil, err
	}
	if err := o.PutMeta(MetaNode, Meta{Stamp: Stamp(), LoadedAt: time.Now().UTC()}); err != nil {
		return nil, err
	}
	crashpoint.Done(crashpoint.NodeStamp)
	ok = true
	return o, nil
}

// LoadSplice loads the splice engine's program (from spec, which tests use
// to load a modified one; nil: this build's splice.o) with the node's
// pinned maps in place of its own, so that both engines share one
// enrollment and one set of counters, and pins it. On failure no splice
// program stays pinned: an older build's would use maps this build may
// have replaced.
func (o *Objects) LoadSplice(spec *ebpf.CollectionSpec) error {
	pin := progPin(o.Dir, splicePin)
	err := func() error {
		if spec == nil {
			if err := SpliceABIError(); err != nil {
				return err
			}
			var err error
			if spec, err = sbpf.LoadSplice(); err != nil {
				return err
			}
		}
		pinMaps(spec)
		coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
			Maps: ebpf.MapOptions{PinPath: filepath.Join(o.Dir, MapsDir)},
		})
		if err != nil {
			return err
		}
		defer coll.Close()
		p := coll.DetachProgram(sbpf.SpliceProgSockspliceSplice)
		if err := pinProgram(p, pin); err != nil {
			p.Close()
			return err
		}
		if o.Splice != nil {
			o.Splice.Close()
		}
		o.Splice = p
		return nil
	}()
	if err != nil {
		os.Remove(pin)
		return fmt.Errorf("loading the splice engine's program: %w", err)
	}
	return nil
}

// updateLinks points every pinned cgroup link at this build's program of
// the engine the link runs.
func (o *Objects) updateLinks() error {
	for _, d := range []string{LinksDir, ContainersDir} {
		ents, err := os.ReadDir(filepath.Join(o.Dir, d))
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := o.updateLink(filepath.Join(o.Dir, d, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

func (o *Objects) updateLink(path string) error {
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		return fmt.Errorf("opening link %s: %w", path, err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return fmt.Errorf("link %s: %w", path, err)
	}
	if c := info.Cgroup(); c != nil && c.CgroupId == 0 {
		// Detached (its cgroup was removed, or by hand): the kernel
		// refuses to update it, it runs nothing, and DEL, or the ADD
		// that attaches again, removes its pin.
		return nil
	}
	splice, err := runsSplice(l)
	if err != nil {
		return fmt.Errorf("link %s: %w", path, err)
	}
	prog := o.SockOps
	if splice {
		if o.Splice == nil {
			// This build's splice program failed to load (the module
			// cannot go while a splice program exists): the link
			// keeps its old one rather than switch engines.
			return nil
		}
		prog = o.Splice
	}
	if err := l.Update(prog); err != nil {
		return fmt.Errorf("moving link %s to the new program: %w", path, err)
	}
	return nil
}

// LinkRunsSplice says whether the link pinned at path runs the splice
// engine's program (else the sockmap engine's).
func LinkRunsSplice(path string) (bool, error) {
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		return false, err
	}
	defer l.Close()
	return runsSplice(l)
}

// runsSplice says whether a link runs a splice engine program, of any
// build: the kernel keeps the program's name, cut to 15 characters.
func runsSplice(l link.Link) (bool, error) {
	info, err := l.Info()
	if err != nil {
		return false, err
	}
	p, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		return false, fmt.Errorf("opening its program: %w", err)
	}
	defer p.Close()
	pi, err := p.Info()
	if err != nil {
		return false, err
	}
	return pi.Name != "" && strings.HasPrefix(sbpf.SpliceProgSockspliceSplice, pi.Name), nil
}

// backfillNsCounters gives every enrolled netns a counters entry, keeping
// those it has.
func (o *Objects) backfillNsCounters() error {
	var (
		cookie uint64
		zero   sbpf.AbiSsNsCounters
		pol    sbpf.AbiSsPolicy
	)
	it := o.Enroll.Iterate()
	for it.Next(&cookie, &pol) {
		err := o.NsCounters.Update(cookie, &zero, ebpf.UpdateNoExist)
		if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			return fmt.Errorf("counters of netns %d: %w", cookie, err)
		}
	}
	return it.Err()
}
