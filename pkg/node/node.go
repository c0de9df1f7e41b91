// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package node installs the node-wide BPF objects: it loads them once,
// pins them under the pin directory and hands them out to later plugin
// invocations. A flock on the pin directory serializes concurrent
// invocations; a version stamp in the meta map lets a newer plugin replace
// older programs in place.
package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
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
)

// ErrNotLoaded is returned by Open when nothing is pinned under the directory.
var ErrNotLoaded = errors.New("socksplice objects are not loaded on this node")

// Objects are the node-wide maps and programs, held under the node lock.
type Objects struct {
	Dir string

	Pairs *ebpf.Map // SOCKHASH of paired sockets
	// Holds (SOCKHASH by socket cookie, no programs) keeps a paired
	// socket's psock, and its unread bytes, once the sockmap program has
	// taken it out of Pairs at TCP_CLOSE. nil on a node not yet upgraded
	// to it.
	Holds       *ebpf.Map
	Enroll      *ebpf.Map // netns cookie -> policy
	LocalAddrs  *ebpf.Map // {netns, addr} -> domain
	DomainAddrs *ebpf.Map // {domain, addr} -> netns
	Counters    *ebpf.Map // per-CPU counter slots (the objects' .bss)
	NsCounters  *ebpf.Map // netns cookie -> its counters (package counters); nil on a node not yet upgraded to them
	Retired     *ebpf.Map // counters of netns no longer enrolled, per network (package counters); nil likewise
	Retiring    *ebpf.Map // retirements in progress (package counters); nil likewise
	// SelfTestNetns holds the netns cookie of the running self-test (one
	// u64, 0 when none): the sk_msg program counts its messages apart.
	// nil likewise.
	SelfTestNetns *ebpf.Map
	Attach        *ebpf.Map // attachment records (package enroll)
	Meta          *ebpf.Map // JSON documents, see meta.go

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

// SpliceABIError says why the loaded splice module cannot run this build's
// splice program, or nil: the module reads bpf_sock_splice_args as its
// abi_version parameter says, and refuses (counted) a program of another
// version, so a mismatch would pair nothing.
func SpliceABIError() error {
	b, err := os.ReadFile("/sys/module/" + sbpf.SpliceModule + "/parameters/abi_version")
	if err != nil {
		return fmt.Errorf("the %s module does not say its ABI version (a build older than this plugin, which needs ABI %d): install the module of this release", sbpf.SpliceModule, sbpf.ABIVersion)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || v != sbpf.ABIVersion {
		return fmt.Errorf("the %s module reads ABI version %s, this plugin's programs are ABI version %d: install the module and the plugin of one release", sbpf.SpliceModule, strings.TrimSpace(string(b)), sbpf.ABIVersion)
	}
	return nil
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

// OpenUnlocked is Open without the node lock, for readers that must not
// wait behind an ADD (a self-test holds the lock for seconds) nor delay
// one: the metrics. It may see a node midway through an upgrade; readers
// check layouts (counters.Read does).
func OpenUnlocked(dir string) (*Objects, error) {
	o, err := openPinned(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotLoaded
	}
	return o, err
}

func openPinned(dir string) (*Objects, error) {
	o := &Objects{Dir: dir}
	var err error
	get := func(name string) *ebpf.Map {
		if err != nil {
			return nil
		}
		var m *ebpf.Map
		m, err = ebpf.LoadPinnedMap(filepath.Join(dir, MapsDir, name), nil)
		return m
	}
	o.Pairs, o.Enroll, o.LocalAddrs = get("pairs"), get("enroll"), get("local_addrs")
	o.DomainAddrs, o.Counters = get("domain_addrs"), get(countersPin)
	o.Attach, o.Meta = get(attachSpec.Name), get(metaSpec.Name)
	// Optional: a node pinned by a build before per-netns counters has
	// neither until an ADD upgrades it, and DEL must still work there.
	if err == nil {
		o.NsCounters, _ = ebpf.LoadPinnedMap(filepath.Join(dir, MapsDir, nsCountersPin), nil)
		o.Retired, _ = ebpf.LoadPinnedMap(filepath.Join(dir, MapsDir, retiredSpec.Name), nil)
		o.Retiring, _ = ebpf.LoadPinnedMap(filepath.Join(dir, MapsDir, retiringSpec.Name), nil)
		o.SelfTestNetns, _ = ebpf.LoadPinnedMap(filepath.Join(dir, MapsDir, selfTestPin), nil)
		o.Holds, _ = ebpf.LoadPinnedMap(filepath.Join(dir, MapsDir, "holds"), nil)
	}
	if err == nil {
		o.SockOps, err = ebpf.LoadPinnedProgram(progPin(dir, sockopsPin), nil)
	}
	if err == nil {
		o.Msg, err = ebpf.LoadPinnedProgram(progPin(dir, msgPin), nil)
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

func (o *Objects) closeObjs() {
	for _, m := range []*ebpf.Map{o.Pairs, o.Holds, o.Enroll, o.LocalAddrs, o.DomainAddrs, o.Counters, o.NsCounters, o.Retired, o.Retiring, o.SelfTestNetns, o.Attach, o.Meta} {
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

// MarkSelfTest tells the sk_msg program which netns the running self-test
// uses (0: none), so that its messages count apart from the containers'.
// A node without the map (not upgraded yet) ignores it.
func (o *Objects) MarkSelfTest(cookie uint64) error {
	if o.SelfTestNetns == nil {
		return nil
	}
	if err := o.SelfTestNetns.Update(uint32(0), cookie, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("marking the self-test's netns: %w", err)
	}
	return nil
}
