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
	"github.com/cilium/ebpf/btf"
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

	// Splice is the splice engine's sock_ops program (bpf/splice.c),
	// sharing the maps above. It is nil when the kernel lacks the
	// engine's kfuncs (the socksplice module is not loaded) or, with
	// SpliceErr saying why, when it failed to load although they exist.
	Splice    *ebpf.Program
	SpliceErr error

	lock *os.File
}

// Meta is what the node remembers about itself between invocations.
type Meta struct {
	Stamp    string    `json:"stamp"`
	LoadedAt time.Time `json:"loadedAt"`
	SelfTest *SelfTest `json:"selfTest,omitempty"` // the sockmap engine's
	// SpliceTest is the splice engine's self-test. It is forgotten
	// whenever the splice program is (re)loaded: a new module may behave
	// differently on the same kernel.
	SpliceTest *SelfTest `json:"spliceTest,omitempty"`
}

// SelfTest caches a behavioural test behind mode "auto".
type SelfTest struct {
	Kernel  string    `json:"kernel"`
	Engine  string    `json:"engine"` // the engine tested if it passed, else "off"
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
	"sockops": sbpf.SockspliceProgSockspliceSockops,
	"msg":     sbpf.SockspliceProgSockspliceMsg,
}

// splicePin is the pin name of the splice engine's program under ProgsDir.
const splicePin = "splice"

// HaveSpliceKfuncs says whether the running kernel has the splice engine's
// kfuncs. It looks in the socksplice module's BTF only: only that module
// provides them, and parsing vmlinux BTF (megabytes) cost every ADD 25-45
// ms on a node where the module is not even loaded.
func HaveSpliceKfuncs() bool {
	if _, err := os.Stat("/sys/kernel/btf/" + sbpf.SpliceModule); err != nil {
		return false
	}
	spec, err := btf.LoadKernelModuleSpec(sbpf.SpliceModule)
	if err != nil {
		return false
	}
	for _, name := range []string{sbpf.SpliceKfuncPair, sbpf.SpliceKfuncListen} {
		var fn *btf.Func
		if spec.TypeByName(name, &fn) != nil {
			return false
		}
	}
	return true
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
			// The module may have been loaded since the node was set up.
			if o.Splice == nil && HaveSpliceKfuncs() {
				o.SpliceErr = o.LoadSplice(nil)
			}
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
	if err == nil {
		o.Splice, err = ebpf.LoadPinnedProgram(progPin(dir, splicePin), nil)
		if errors.Is(err, os.ErrNotExist) {
			err = nil // no splice engine on this node
		}
	}
	if err != nil {
		o.closeObjs()
		return nil, err
	}
	return o, nil
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
	if err := o.updateLinks(); err != nil {
		return nil, err
	}

	meta, _ := o.ReadMeta()
	meta.Stamp = Stamp()
	meta.LoadedAt = time.Now().UTC()
	meta.SelfTest = nil // new programs: the behavioural tests must run again
	meta.SpliceTest = nil
	if err := o.WriteMeta(meta); err != nil {
		return nil, err
	}
	ok = true
	return o, nil
}

// LoadSplice loads the splice engine's program (from spec, which tests use
// to load a modified one; nil: this build's splice.o) with the node's maps in place of its own, so that both
// engines share one enrollment and one set of counters, and pins it. On
// failure no splice program stays pinned: an older build's would use maps
// this build may have replaced.
func (o *Objects) LoadSplice(spec *ebpf.CollectionSpec) error {
	pin := progPin(o.Dir, splicePin)
	err := func() error {
		if spec == nil {
			var err error
			if spec, err = sbpf.LoadSplice(); err != nil {
				return err
			}
		}
		coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
			MapReplacements: map[string]*ebpf.Map{
				"enroll":       o.Enroll,
				"local_addrs":  o.LocalAddrs,
				"domain_addrs": o.DomainAddrs,
				".bss":         o.Counters,
			},
		})
		if err != nil {
			return err
		}
		defer coll.Close()
		// A new splice program means a module loaded since the last
		// self-test, possibly another build of it: forget its verdict.
		if meta, err := o.ReadMeta(); err == nil && meta.SpliceTest != nil {
			meta.SpliceTest = nil
			if err := o.WriteMeta(meta); err != nil {
				return err
			}
		}
		p := coll.DetachProgram(sbpf.SpliceProgSockspliceSplice)
		if err := repin(p, pin); err != nil {
			p.Close()
			return err
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

// updateLinks points every pinned cgroup link at this build's program of
// the engine the link runs.
func (o *Objects) updateLinks() error {
	for _, d := range []string{LinksDir, ContainersDir} {
		ents, err := os.ReadDir(filepath.Join(o.Dir, d))
		if err != nil {
			return err
		}
		for _, e := range ents {
			path := filepath.Join(o.Dir, d, e.Name())
			if err := o.updateLink(path); err != nil {
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
	for _, p := range []*ebpf.Program{o.SockOps, o.Msg, o.Splice} {
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
