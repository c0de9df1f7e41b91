// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package testenv

// What the suites take from socksplice's own packages is here, so that it
// is repointed in one place when they move; the node a package test gets
// is in node.go.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/counters"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/pkg/selftest"
)

// Counters are the node's BPF counters, summed over all CPUs.
type Counters = counters.Totals

// ReadCounters reads the counters pinned under pinDir; all zero while
// nothing is loaded there (a plain-TCP network may run first). It takes
// the node lock: the caller must not hold the pins open.
func ReadCounters(t T, pinDir string) Counters {
	t.Helper()
	o := openPins(t, pinDir)
	if o == nil {
		return Counters{}
	}
	defer o.Close()
	c, err := counters.Read(o.Counters)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// openPins opens the node's objects under pinDir, with the node lock; nil
// while nothing is loaded there.
func openPins(t T, pinDir string) *node.Objects {
	t.Helper()
	o, err := node.Open(pinDir)
	if errors.Is(err, node.ErrNotLoaded) {
		return nil
	}
	if err != nil {
		t.Fatalf("opening pins: %v", err)
	}
	return o
}

// counterDelta is a minus b, counter by counter (every uint64 field: a
// counter added to the ABI needs no change here).
func counterDelta(a, b Counters) Counters {
	d := reflect.ValueOf(&a).Elem()
	bv := reflect.ValueOf(b)
	for i := 0; i < d.NumField(); i++ {
		if f := d.Field(i); f.CanSet() && f.Kind() == reflect.Uint64 {
			f.SetUint(f.Uint() - bv.Field(i).Uint())
		}
	}
	return a
}

// ModuleStats reads the splice module's counters and live objects (its
// "stats" parameter), plus its reference count as "refcnt".
func ModuleStats(t T) map[string]int64 {
	t.Helper()
	dir := "/sys/module/" + sbpf.SpliceModule
	b, err := os.ReadFile(dir + "/parameters/stats")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(l, " ")
		m[k], _ = strconv.ParseInt(v, 10, 64)
	}
	rc, err := os.ReadFile(dir + "/refcnt")
	if err != nil {
		t.Fatal(err)
	}
	m["refcnt"], _ = strconv.ParseInt(strings.TrimSpace(string(rc)), 10, 64)
	return m
}

// RequireSpliceModule skips unless the splice kernel module is loaded (the
// VM harness loads it; the host kernel cannot).
func RequireSpliceModule(t T) {
	t.Helper()
	if _, err := os.Stat("/sys/kernel/btf/" + sbpf.SpliceModule); err != nil {
		t.Skipf("SKIP: the %s kernel module is not loaded (%v): the splice engine cannot run", sbpf.SpliceModule, err)
	}
}

// ModuleLoaded says whether the splice module is loaded.
func ModuleLoaded() bool {
	_, err := os.Stat("/sys/module/" + sbpf.SpliceModule + "/refcnt")
	return err == nil
}

// RequireReloadableModule skips unless the splice module is loaded and
// the guest said where its .ko is (kernel/vm/guest-tests.sh sets
// SOCKSPLICE_MODULE_KO), and makes sure at cleanup that it is loaded
// again: the rest of the suite relies on it. It returns the .ko's path.
func RequireReloadableModule(t T) string {
	t.Helper()
	RequireRoot(t)
	RequireSpliceModule(t)
	ko := os.Getenv("SOCKSPLICE_MODULE_KO")
	if ko == "" {
		t.Skip("SKIP: SOCKSPLICE_MODULE_KO is not set (the VM's guest-tests.sh sets it): cannot load the module again after rmmod")
	}
	if _, err := os.Stat(ko); err != nil {
		t.Skipf("SKIP: %v", err)
	}
	t.Cleanup(func() {
		if !ModuleLoaded() {
			if err := InsmodSplice(ko); err != nil {
				t.Errorf("loading %s again: %v", ko, err)
			}
		}
		if !ModuleLoaded() {
			t.Errorf("the module is not loaded after the test")
		}
	})
	return ko
}

// InsmodSplice loads the splice module from ko.
func InsmodSplice(ko string) error {
	fd, err := unix.Open(ko, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.FinitModule(fd, "", 0)
}

// RmmodSplice tries delete_module(O_NONBLOCK) once: nil when the module
// went.
func RmmodSplice() error { return unix.DeleteModule(sbpf.SpliceModule, unix.O_NONBLOCK) }

// ModuleBusy says whether RmmodSplice was refused because something
// holds the module.
func ModuleBusy(err error) bool {
	return errors.Is(err, unix.EWOULDBLOCK) || errors.Is(err, unix.EBUSY)
}

// spliceRead reads c to its end with splice(2), as Go's io.Copy between
// TCP connections does.
func spliceRead(w io.Writer, c *net.TCPConn) (int64, string) { return selftest.SpliceRead(w, c) }

func cgroupRoot() (string, error) { return cgroup.Root() }

// MapEntries counts the entries of the node's per-container and
// per-socket maps under pinDir (nil while nothing is loaded there): what
// must be empty again once every container is gone.
func MapEntries(t T, pinDir string) map[string]int {
	t.Helper()
	o := openPins(t, pinDir)
	if o == nil {
		return nil
	}
	defer o.Close()
	return MapEntriesOf(t, o)
}

// MapEntriesOf is MapEntries of objects the caller has open.
func MapEntriesOf(t T, o *node.Objects) map[string]int {
	t.Helper()
	ms := map[string]*ebpf.Map{"pairs": o.Pairs, "enroll": o.Enroll, "localAddrs": o.LocalAddrs, "domainAddrs": o.DomainAddrs, "attach": o.Attach}
	if o.NsCounters != nil {
		ms["nsCounters"] = o.NsCounters
	}
	if o.Holds != nil {
		ms["holds"] = o.Holds
	}
	out := map[string]int{}
	for name, m := range ms {
		// Keys only: a SOCKHASH's values are sockets.
		key := make([]byte, m.KeySize())
		var prev any // nil: the first key
		for n := 0; ; n++ {
			if err := m.NextKey(prev, key); err != nil {
				if !errors.Is(err, ebpf.ErrKeyNotExist) {
					t.Fatalf("map %s: %v", name, err)
				}
				out[name] = n
				break
			}
			prev = append([]byte(nil), key...)
		}
	}
	return out
}

// Footprint is what a node's containers hold, counted from outside the
// plugin: files pinned under the pin directory, entries of the
// per-container and per-socket maps (MapEntries), BPF links in the kernel
// and cgroup attachments that run one of the node's sock_ops programs, and
// the open descriptors of this process. Two footprints of one node taken
// with the same containers enrolled are equal, but for descriptors that
// only closed since; anything else is a leak.
type Footprint struct {
	Pins        int            `json:"pins"`
	Maps        map[string]int `json:"maps"`
	Links       int            `json:"links"`
	CgroupProgs int            `json:"cgroupProgs"`
	FDs         int            `json:"fds"`
}

// TakeFootprint counts the footprint of the node pinned under pinDir; its
// cgroup attachments are looked up on the cgroups given and the cgroup v2
// root (node-level links). It takes the node lock.
func TakeFootprint(t T, pinDir string, cgroups ...string) Footprint {
	t.Helper()
	f := Footprint{Maps: MapEntries(t, pinDir)}
	filepath.WalkDir(pinDir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			f.Pins++
		}
		return nil
	})
	// Descriptors that earlier tests left to the garbage collector (a
	// cilium/ebpf object or a net.Conn nobody closed) close in its
	// finalizers: let them run before counting.
	runtime.GC()
	runtime.GC()
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		f.FDs = len(ents)
	}
	progs := nodeProgs(t, pinDir)
	if len(progs) == 0 {
		return f
	}
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		if info, err := it.Link.Info(); err == nil && progs[info.Program] {
			f.Links++
		}
	}
	if err := it.Err(); err != nil {
		t.Fatalf("listing BPF links: %v", err)
	}
	root, err := cgroup.Root()
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range append([]string{root}, cgroups...) {
		ids, err := cgroup.AttachedIDs(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if progs[id] {
				f.CgroupProgs++
			}
		}
	}
	return f
}

// AwaitFootprint takes the node's footprint until it is want, for at most
// 5 s, and returns the last one and how it differs from want ("" once it
// is want). A link whose pin was removed leaves the kernel, and its
// cgroup, asynchronously: bpffs drops its reference after an RCU grace
// period.
func AwaitFootprint(t T, want Footprint, pinDir string, cgroups ...string) (Footprint, string) {
	t.Helper()
	var f Footprint
	var d string
	for i := 0; i < 50; i++ {
		if f = TakeFootprint(t, pinDir, cgroups...); want.Diff(f) == "" {
			return f, ""
		}
		time.Sleep(100 * time.Millisecond)
	}
	d = want.Diff(f)
	return f, d
}

// nodeProgs returns the IDs of the sock_ops programs pinned under pinDir.
func nodeProgs(t T, pinDir string) map[ebpf.ProgramID]bool {
	t.Helper()
	o := openPins(t, pinDir)
	if o == nil {
		return nil
	}
	defer o.Close()
	ids := map[ebpf.ProgramID]bool{}
	for _, p := range []*ebpf.Program{o.SockOps, o.Splice} {
		if p != nil {
			ids[ProgID(t, p)] = true
		}
	}
	return ids
}

// Diff lists how b differs from f, "" when it does not; for open
// descriptors only more than f counts.
func (f Footprint) Diff(b Footprint) string {
	var d []string
	add := func(what string, x, y int) {
		if x != y {
			d = append(d, fmt.Sprintf("%s %d -> %d", what, x, y))
		}
	}
	add("pins", f.Pins, b.Pins)
	add("links", f.Links, b.Links)
	add("cgroup attachments", f.CgroupProgs, b.CgroupProgs)
	// Fewer open descriptors than f is no leak: one open when f was
	// taken (a finalizer not yet run) may have closed since.
	if b.FDs > f.FDs {
		add("open fds", f.FDs, b.FDs)
	}
	for _, k := range slices.Sorted(maps.Keys(f.Maps)) {
		add("map "+k, f.Maps[k], b.Maps[k])
	}
	for k, v := range b.Maps {
		if _, ok := f.Maps[k]; !ok {
			add("map "+k, 0, v)
		}
	}
	return strings.Join(d, ", ")
}

// String is the footprint in one line, for summaries.
func (f Footprint) String() string {
	var m []string
	for _, k := range slices.Sorted(maps.Keys(f.Maps)) {
		m = append(m, fmt.Sprintf("%s=%d", k, f.Maps[k]))
	}
	return fmt.Sprintf("pins %d, links %d, cgroup attachments %d, open fds %d, map entries %s",
		f.Pins, f.Links, f.CgroupProgs, f.FDs, strings.Join(m, " "))
}
