// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package node loads the node-wide BPF objects once, pins them under the
// pin directory and hands them out to later plugin invocations. A flock on
// the pin directory serializes concurrent invocations; a version stamp in
// the meta map lets a newer plugin replace older programs in place.
package node

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/bpffs"
)

// Layout of the pin directory.
const (
	MapsDir       = "maps"
	ProgsDir      = "progs"
	LinksDir      = "links"      // node-level links
	ContainersDir = "containers" // one link pin per enrolled container attachment

	metaValueSize = 4096
)

// ErrNotLoaded is returned by Open when nothing is pinned under the directory.
var ErrNotLoaded = errors.New("socksplice objects are not loaded on this node")

// Objects are the node-wide maps and programs, held under the node lock.
type Objects struct {
	Dir string

	Pairs       *ebpf.Map // SOCKHASH of paired sockets
	Enroll      *ebpf.Map // netns cookie -> policy
	LocalAddrs  *ebpf.Map // {netns, addr} -> domain
	DomainAddrs *ebpf.Map // {domain, addr} -> netns
	Counters    *ebpf.Map // per-CPU counter slots (the object's .bss)
	Attach      *ebpf.Map // attachment records, see record.go
	Meta        *ebpf.Map // JSON: stamp, self-test cache

	SockOps *ebpf.Program
	Msg     *ebpf.Program

	lock *os.File
}

// Meta is what the node remembers about itself between invocations.
type Meta struct {
	Stamp    string    `json:"stamp"`
	LoadedAt time.Time `json:"loadedAt"`
	SelfTest *SelfTest `json:"selfTest,omitempty"`
}

// SelfTest caches the behavioural test behind mode "auto".
type SelfTest struct {
	Kernel  string    `json:"kernel"`
	Engine  string    `json:"engine"` // what auto picks: "sockmap" or "off"
	Reason  string    `json:"reason"`
	Details []string  `json:"details,omitempty"`
	At      time.Time `json:"at"`
}

// goMaps are the Go-side maps: the BPF programs never touch these.
var goMaps = map[string]*ebpf.MapSpec{
	"attachments": {Name: "ss_attach", Type: ebpf.Hash, KeySize: 32, ValueSize: recordSize, MaxEntries: 65536},
	"meta":        {Name: "ss_meta", Type: ebpf.Array, KeySize: 4, ValueSize: metaValueSize, MaxEntries: 1},
}

// bpfMaps maps pin names to the names in the BPF object.
var bpfMaps = map[string]string{
	"pairs":        "pairs",
	"enroll":       "enroll",
	"local_addrs":  "local_addrs",
	"domain_addrs": "domain_addrs",
	"counters":     ".bss",
}

var progs = map[string]string{
	"sockops": "socksplice_sockops",
	"msg":     "socksplice_msg",
}

// Stamp is this build's object stamp, as stored in Meta.
func Stamp() string {
	s := sbpf.Stamp()
	return hex.EncodeToString(s[:])
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	return f, nil
}

// Load returns the node's objects, loading and pinning them first if they
// are missing or were pinned by a build with another stamp. The caller owns
// the node lock until Close.
func Load(dir string) (*Objects, error) {
	if err := bpffs.Ensure(dir); err != nil {
		return nil, err
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	o, err := openPinned(dir)
	if err == nil {
		meta, merr := o.ReadMeta()
		if merr == nil && meta.Stamp == Stamp() {
			o.lock = lock
			return o, nil
		}
		o.closeObjs()
	}
	o, err = install(dir)
	if err != nil {
		lock.Close()
		return nil, err
	}
	o.lock = lock
	return o, nil
}

// Open returns the pinned objects without loading anything; ErrNotLoaded if
// there are none. For DEL, CHECK, GC and STATUS, which must not create state.
func Open(dir string) (*Objects, error) {
	if _, err := os.Stat(filepath.Join(dir, MapsDir)); err != nil {
		return nil, ErrNotLoaded
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	o, err := openPinned(dir)
	if err != nil {
		lock.Close()
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNotLoaded
		}
		return nil, err
	}
	o.lock = lock
	return o, nil
}

func mapPin(dir, name string) string  { return filepath.Join(dir, MapsDir, name) }
func progPin(dir, name string) string { return filepath.Join(dir, ProgsDir, name) }

func openPinned(dir string) (*Objects, error) {
	o := &Objects{Dir: dir}
	var err error
	get := func(name string) *ebpf.Map {
		if err != nil {
			return nil
		}
		var m *ebpf.Map
		m, err = ebpf.LoadPinnedMap(mapPin(dir, name), nil)
		return m
	}
	o.Pairs, o.Enroll, o.LocalAddrs = get("pairs"), get("enroll"), get("local_addrs")
	o.DomainAddrs, o.Counters = get("domain_addrs"), get("counters")
	o.Attach, o.Meta = get("attachments"), get("meta")
	if err == nil {
		o.SockOps, err = ebpf.LoadPinnedProgram(progPin(dir, "sockops"), nil)
	}
	if err == nil {
		o.Msg, err = ebpf.LoadPinnedProgram(progPin(dir, "msg"), nil)
	}
	if err != nil {
		o.closeObjs()
		return nil, err
	}
	return o, nil
}

// install loads this build's objects, reusing every pinned map whose layout
// still matches (so live pairings and enrollments survive an upgrade), pins
// them, moves every pinned cgroup link to the new sock_ops program and
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

	o := &Objects{Dir: dir}
	ok := false
	defer func() {
		if !ok {
			o.closeObjs()
		}
	}()

	replace := map[string]*ebpf.Map{}
	for pin, name := range bpfMaps {
		m, err := ebpf.LoadPinnedMap(mapPin(dir, pin), nil)
		if err != nil {
			continue
		}
		want := spec.Maps[name].Copy()
		if strings.HasPrefix(name, ".") {
			// cilium/ebpf creates data sections (.bss) mmapable.
			want.Flags |= unix.BPF_F_MMAPABLE
		}
		if want.Compatible(m) == nil {
			replace[name] = m
			continue
		}
		// Layout changed: start this map afresh. Sockets in the old
		// SOCKHASH keep their old programs until they close.
		m.Close()
		os.Remove(mapPin(dir, pin))
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: replace})
	for _, m := range replace {
		m.Close() // the collection holds its own reference
	}
	if err != nil {
		return nil, fmt.Errorf("loading BPF objects: %w", err)
	}
	defer coll.Close()

	o.Pairs = coll.DetachMap("pairs")
	o.Enroll = coll.DetachMap("enroll")
	o.LocalAddrs = coll.DetachMap("local_addrs")
	o.DomainAddrs = coll.DetachMap("domain_addrs")
	o.Counters = coll.DetachMap(".bss")
	o.SockOps = coll.DetachProgram(progs["sockops"])
	o.Msg = coll.DetachProgram(progs["msg"])

	if o.Attach, err = goMap(dir, "attachments"); err != nil {
		return nil, err
	}
	if o.Meta, err = goMap(dir, "meta"); err != nil {
		return nil, err
	}

	for pin, m := range map[string]*ebpf.Map{"pairs": o.Pairs, "enroll": o.Enroll,
		"local_addrs": o.LocalAddrs, "domain_addrs": o.DomainAddrs, "counters": o.Counters} {
		if err := repin(m, mapPin(dir, pin)); err != nil {
			return nil, err
		}
	}
	for pin, p := range map[string]*ebpf.Program{"sockops": o.SockOps, "msg": o.Msg} {
		if err := repin(p, progPin(dir, pin)); err != nil {
			return nil, err
		}
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
	if err := o.updateLinks(); err != nil {
		return nil, err
	}

	meta, _ := o.ReadMeta()
	meta.Stamp = Stamp()
	meta.LoadedAt = time.Now().UTC()
	meta.SelfTest = nil // new programs: the behavioural test must run again
	if err := o.WriteMeta(meta); err != nil {
		return nil, err
	}
	ok = true
	return o, nil
}

// goMap opens or creates a map only Go uses; one whose layout changed is
// replaced.
func goMap(dir, pin string) (*ebpf.Map, error) {
	spec := goMaps[pin]
	if m, err := ebpf.LoadPinnedMap(mapPin(dir, pin), nil); err == nil {
		if spec.Compatible(m) == nil {
			return m, nil
		}
		m.Close()
		os.Remove(mapPin(dir, pin))
	}
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("creating map %s: %w", pin, err)
	}
	if err := m.Pin(mapPin(dir, pin)); err != nil {
		m.Close()
		return nil, fmt.Errorf("pinning map %s: %w", pin, err)
	}
	return m, nil
}

type pinner interface {
	Pin(string) error
}

// repin pins obj at path, replacing whatever was pinned there.
func repin(obj pinner, path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := obj.Pin(path); err != nil {
		return fmt.Errorf("pinning %s: %w", path, err)
	}
	return nil
}

// updateLinks points every pinned cgroup link at the current sock_ops program.
func (o *Objects) updateLinks() error {
	for _, d := range []string{LinksDir, ContainersDir} {
		ents, err := os.ReadDir(filepath.Join(o.Dir, d))
		if err != nil {
			return err
		}
		for _, e := range ents {
			path := filepath.Join(o.Dir, d, e.Name())
			l, err := link.LoadPinnedLink(path, nil)
			if err != nil {
				return fmt.Errorf("opening link %s: %w", path, err)
			}
			err = l.Update(o.SockOps)
			l.Close()
			if err != nil {
				return fmt.Errorf("moving link %s to the new program: %w", path, err)
			}
		}
	}
	return nil
}

// ReadMeta returns the node's stored metadata (zero if never written).
func (o *Objects) ReadMeta() (Meta, error) {
	var meta Meta
	buf := make([]byte, metaValueSize)
	if err := o.Meta.Lookup(uint32(0), &buf); err != nil {
		return meta, err
	}
	buf = bytes.TrimRight(buf, "\x00")
	if len(buf) == 0 {
		return meta, nil
	}
	err := json.Unmarshal(buf, &meta)
	return meta, err
}

// WriteMeta stores the node's metadata.
func (o *Objects) WriteMeta(meta Meta) error {
	b, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	if len(b) > metaValueSize {
		return fmt.Errorf("node metadata too large (%d bytes)", len(b))
	}
	buf := make([]byte, metaValueSize)
	copy(buf, b)
	return o.Meta.Update(uint32(0), buf, ebpf.UpdateAny)
}

func (o *Objects) closeObjs() {
	for _, m := range []*ebpf.Map{o.Pairs, o.Enroll, o.LocalAddrs, o.DomainAddrs, o.Counters, o.Attach, o.Meta} {
		if m != nil {
			m.Close()
		}
	}
	for _, p := range []*ebpf.Program{o.SockOps, o.Msg} {
		if p != nil {
			p.Close()
		}
	}
}

// Close releases the objects and the node lock.
func (o *Objects) Close() error {
	o.closeObjs()
	if o.lock != nil {
		return o.lock.Close()
	}
	return nil
}
