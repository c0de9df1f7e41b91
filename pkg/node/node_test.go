// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package node_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/node"
)

var mapPins = []string{"pairs", "enroll", "local_addrs", "domain_addrs", "counters", "attachments", "meta"}

// progPins are the programs a Load pins: the splice engine's only where the
// kernel has its kfuncs (the VM loads the module; this host has none).
var progPins = func() []string {
	if node.HaveSpliceKfuncs() {
		return []string{"sockops", "msg", "splice"}
	}
	return []string{"sockops", "msg"}
}()

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (loads BPF programs, pins them in bpffs and creates cgroups)")
	}
}

func randHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// pinDir returns a fresh, not yet existing pin directory that is removed
// when the test ends.
func pinDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/bpf", "socksplice-unittest-"+randHex(t))
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	return dir
}

// cgroupDir creates a fresh cgroup v2 directory that is removed when the
// test ends.
func cgroupDir(t *testing.T) string {
	t.Helper()
	root, err := cgroup.Root()
	if err != nil {
		t.Fatalf("cgroup.Root: %v", err)
	}
	parent := filepath.Join(root, "socksplice-unittest-"+strconv.Itoa(os.Getpid())+"-"+randHex(t))
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Rmdir(parent); err != nil {
			t.Errorf("rmdir %s: %v", parent, err)
		}
	})
	dir := filepath.Join(parent, "c1")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Rmdir(dir); err != nil {
			t.Errorf("rmdir %s: %v", dir, err)
		}
	})
	return dir
}

func load(t *testing.T, dir string) *node.Objects {
	t.Helper()
	o, err := node.Load(dir)
	if err != nil {
		t.Fatalf("Load(%s): %v", dir, err)
	}
	return o
}

func mapID(t *testing.T, m *ebpf.Map) ebpf.MapID {
	t.Helper()
	info, err := m.Info()
	if err != nil {
		t.Fatalf("map info: %v", err)
	}
	id, ok := info.ID()
	if !ok || id == 0 {
		t.Fatalf("map has no ID")
	}
	return id
}

func progID(t *testing.T, p *ebpf.Program) ebpf.ProgramID {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatalf("program info: %v", err)
	}
	id, ok := info.ID()
	if !ok || id == 0 {
		t.Fatalf("program has no ID")
	}
	return id
}

type ids struct {
	Maps  map[string]ebpf.MapID
	Progs map[string]ebpf.ProgramID
}

func objIDs(t *testing.T, o *node.Objects) ids {
	t.Helper()
	return ids{
		Maps: map[string]ebpf.MapID{
			"pairs":        mapID(t, o.Pairs),
			"enroll":       mapID(t, o.Enroll),
			"local_addrs":  mapID(t, o.LocalAddrs),
			"domain_addrs": mapID(t, o.DomainAddrs),
			"counters":     mapID(t, o.Counters),
			"attachments":  mapID(t, o.Attach),
			"meta":         mapID(t, o.Meta),
		},
		Progs: progIDs(t, o),
	}
}

func progIDs(t *testing.T, o *node.Objects) map[string]ebpf.ProgramID {
	t.Helper()
	out := map[string]ebpf.ProgramID{"sockops": progID(t, o.SockOps), "msg": progID(t, o.Msg)}
	if o.Splice != nil {
		out["splice"] = progID(t, o.Splice)
	}
	return out
}

// pinnedIDs opens what is pinned under dir and returns its IDs.
func pinnedIDs(t *testing.T, dir string) ids {
	t.Helper()
	out := ids{Maps: map[string]ebpf.MapID{}, Progs: map[string]ebpf.ProgramID{}}
	for _, name := range mapPins {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, node.MapsDir, name), nil)
		if err != nil {
			t.Fatalf("opening pinned map %s: %v", name, err)
		}
		out.Maps[name] = mapID(t, m)
		m.Close()
	}
	for _, name := range progPins {
		p, err := ebpf.LoadPinnedProgram(filepath.Join(dir, node.ProgsDir, name), nil)
		if err != nil {
			t.Fatalf("opening pinned program %s: %v", name, err)
		}
		out.Progs[name] = progID(t, p)
		p.Close()
	}
	return out
}

func sameIDs(a, b ids) bool {
	if len(a.Maps) != len(b.Maps) || len(a.Progs) != len(b.Progs) {
		return false
	}
	for k, v := range a.Maps {
		if b.Maps[k] != v {
			return false
		}
	}
	for k, v := range a.Progs {
		if b.Progs[k] != v {
			return false
		}
	}
	return true
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func sorted(s []string) []string {
	c := slices.Clone(s)
	sort.Strings(c)
	return c
}

func TestStampIsHexSHA256(t *testing.T) {
	s := node.Stamp()
	if len(s) != 64 {
		t.Fatalf("Stamp() = %q, want 64 hex digits", s)
	}
	raw := sbpf.Stamp()
	if s != hex.EncodeToString(raw[:]) {
		t.Fatalf("Stamp() = %q, bpf.Stamp() = %x", s, raw)
	}
}

func TestLoadFreshAndReuse(t *testing.T) {
	needRoot(t)
	dir := pinDir(t)

	o := load(t, dir)
	first := objIDs(t, o)
	meta, err := o.ReadMeta()
	if err != nil {
		o.Close()
		t.Fatalf("ReadMeta: %v", err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if meta.Stamp != node.Stamp() {
		t.Errorf("meta stamp = %q, want %q", meta.Stamp, node.Stamp())
	}
	if meta.LoadedAt.IsZero() || time.Since(meta.LoadedAt) > time.Minute || meta.LoadedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("meta LoadedAt = %v, want about now", meta.LoadedAt)
	}
	if meta.SelfTest != nil {
		t.Errorf("fresh meta has a SelfTest: %+v", meta.SelfTest)
	}

	if got, want := dirNames(t, filepath.Join(dir, node.MapsDir)), sorted(mapPins); !slices.Equal(got, want) {
		t.Errorf("maps/ = %v, want %v", got, want)
	}
	if got, want := dirNames(t, filepath.Join(dir, node.ProgsDir)), sorted(progPins); !slices.Equal(got, want) {
		t.Errorf("progs/ = %v, want %v", got, want)
	}
	for _, d := range []string{node.LinksDir, node.ContainersDir} {
		if got := dirNames(t, filepath.Join(dir, d)); len(got) != 0 {
			t.Errorf("%s/ = %v, want empty", d, got)
		}
	}
	if got := pinnedIDs(t, dir); !sameIDs(got, first) {
		t.Errorf("pinned IDs %+v differ from the loaded objects' %+v", got, first)
	}

	o2 := load(t, dir)
	second := objIDs(t, o2)
	meta2, err := o2.ReadMeta()
	o2.Close()
	if err != nil {
		t.Fatalf("ReadMeta: %v", err)
	}
	if !sameIDs(first, second) {
		t.Errorf("second Load reloaded objects: first %+v, second %+v", first, second)
	}
	if !meta2.LoadedAt.Equal(meta.LoadedAt) || meta2.Stamp != meta.Stamp {
		t.Errorf("second Load rewrote meta: %+v, was %+v", meta2, meta)
	}

	// Open returns the same objects too.
	o3, err := node.Open(dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	third := objIDs(t, o3)
	o3.Close()
	if !sameIDs(first, third) {
		t.Errorf("Open returned other objects: %+v, want %+v", third, first)
	}
}

func TestOpenNotLoaded(t *testing.T) {
	needRoot(t)
	dir := pinDir(t)

	o, err := node.Open(dir)
	if !errors.Is(err, node.ErrNotLoaded) {
		if o != nil {
			o.Close()
		}
		t.Fatalf("Open on a missing dir: err = %v, want ErrNotLoaded", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open created %s (stat err %v)", dir, err)
	}

	// An existing but empty directory is not loaded either.
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Open(dir); !errors.Is(err, node.ErrNotLoaded) {
		t.Fatalf("Open on an empty dir: err = %v, want ErrNotLoaded", err)
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Fatalf("Open created %v in %s", got, dir)
	}
}

func TestUpgradeReplacesProgramsKeepsMaps(t *testing.T) {
	needRoot(t)
	dir := pinDir(t)
	cg := cgroupDir(t)

	o := load(t, dir)
	before := objIDs(t, o)
	linkPin := filepath.Join(dir, node.ContainersDir, "x")
	if err := cgroup.Attach(cg, o.SockOps, linkPin); err != nil {
		o.Close()
		t.Fatalf("Attach: %v", err)
	}
	if err := o.Enroll.Update(uint64(12345), sbpf.AbiSsPolicy{Flags: 1}, ebpf.UpdateAny); err != nil {
		o.Close()
		t.Fatalf("enroll update: %v", err)
	}
	old := node.Meta{
		Stamp:    "old",
		LoadedAt: time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC),
		SelfTest: &node.SelfTest{Kernel: "5.0", Engine: "sockmap", Reason: "cached", At: time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)},
	}
	if err := o.WriteMeta(old); err != nil {
		o.Close()
		t.Fatalf("WriteMeta: %v", err)
	}
	if m, err := o.ReadMeta(); err != nil || m.Stamp != "old" || m.SelfTest == nil || m.SelfTest.Engine != "sockmap" {
		o.Close()
		t.Fatalf("ReadMeta after WriteMeta = %+v, %v", m, err)
	}
	o.Close()

	if got, err := cgroup.AttachedIDs(cg); err != nil || !slices.Equal(got, []ebpf.ProgramID{before.Progs["sockops"]}) {
		t.Fatalf("AttachedIDs before upgrade = %v, %v; want [%d]", got, err, before.Progs["sockops"])
	}

	o2 := load(t, dir)
	defer o2.Close()
	after := objIDs(t, o2)

	meta, err := o2.ReadMeta()
	if err != nil {
		t.Fatalf("ReadMeta: %v", err)
	}
	if meta.Stamp != node.Stamp() {
		t.Errorf("stamp after upgrade = %q, want %q", meta.Stamp, node.Stamp())
	}
	if meta.SelfTest != nil {
		t.Errorf("SelfTest survived the upgrade: %+v", meta.SelfTest)
	}
	if !meta.LoadedAt.After(old.LoadedAt) {
		t.Errorf("LoadedAt after upgrade = %v, not renewed", meta.LoadedAt)
	}

	for _, p := range progPins {
		if after.Progs[p] == before.Progs[p] {
			t.Errorf("program %s kept ID %d across the upgrade, want a new one", p, before.Progs[p])
		}
	}
	for _, m := range []string{"pairs", "enroll", "local_addrs", "domain_addrs", "attachments", "meta"} {
		if after.Maps[m] != before.Maps[m] {
			t.Errorf("map %s: ID %d after upgrade, was %d (map not reused)", m, after.Maps[m], before.Maps[m])
		}
	}
	// The counters map (the object's .bss) is recreated on every upgrade
	// today: cilium/ebpf creates data-section maps with BPF_F_MMAPABLE,
	// but install compares the pinned map with the raw spec (Flags 0), so
	// Compatible fails (node.go, install). Documented, not asserted.
	t.Run("counters map reused", func(t *testing.T) {
		if after.Maps["counters"] != before.Maps["counters"] {
			t.Errorf("counters map recreated on upgrade (ID %d -> %d)", before.Maps["counters"], after.Maps["counters"])
		}
	})
	if got := pinnedIDs(t, dir); !sameIDs(got, after) {
		t.Errorf("pinned IDs %+v differ from the upgraded objects' %+v", got, after)
	}

	var pol sbpf.AbiSsPolicy
	if err := o2.Enroll.Lookup(uint64(12345), &pol); err != nil {
		t.Errorf("enroll entry 12345 lost in the upgrade: %v", err)
	} else if pol.Flags != 1 {
		t.Errorf("enroll entry 12345 flags = %d, want 1", pol.Flags)
	}

	got, err := cgroup.AttachedIDs(cg)
	if err != nil {
		t.Fatalf("AttachedIDs: %v", err)
	}
	if want := []ebpf.ProgramID{after.Progs["sockops"]}; !slices.Equal(got, want) {
		t.Errorf("AttachedIDs after upgrade = %v, want %v", got, want)
	}
	if _, err := os.Stat(linkPin); err != nil {
		t.Errorf("link pin gone after upgrade: %v", err)
	}
}

func TestConcurrentLoad(t *testing.T) {
	needRoot(t)
	dir := pinDir(t)

	const n = 8
	var wg sync.WaitGroup
	seen := make([]ids, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			o, err := node.Load(dir)
			if err != nil {
				errs[i] = err
				return
			}
			defer o.Close()
			// objIDs calls t.Fatalf, which must not run off the test
			// goroutine: collect the IDs by hand.
			s := ids{Maps: map[string]ebpf.MapID{}, Progs: map[string]ebpf.ProgramID{}}
			for name, m := range map[string]*ebpf.Map{"pairs": o.Pairs, "enroll": o.Enroll,
				"local_addrs": o.LocalAddrs, "domain_addrs": o.DomainAddrs, "counters": o.Counters,
				"attachments": o.Attach, "meta": o.Meta} {
				info, err := m.Info()
				if err != nil {
					errs[i] = err
					return
				}
				s.Maps[name], _ = info.ID()
			}
			ps := map[string]*ebpf.Program{"sockops": o.SockOps, "msg": o.Msg}
			if o.Splice != nil {
				ps["splice"] = o.Splice
			}
			for name, p := range ps {
				info, err := p.Info()
				if err != nil {
					errs[i] = err
					return
				}
				s.Progs[name], _ = info.ID()
			}
			seen[i] = s
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("goroutine %d: %v", i, err)
		}
	}
	if t.Failed() {
		return
	}
	final := pinnedIDs(t, dir)
	for i, s := range seen {
		if !sameIDs(s, final) {
			t.Errorf("goroutine %d saw %+v, pinned are %+v", i, s, final)
		}
	}
}

func TestRecords(t *testing.T) {
	needRoot(t)
	dir := pinDir(t)
	o := load(t, dir)
	defer o.Close()

	if recs, err := o.Records(); err != nil || len(recs) != 0 {
		t.Fatalf("Records on a fresh node = %v, %v; want none", recs, err)
	}

	key := node.RecordKey("net1", "container-abc", "eth0")
	var r node.Record
	r.Netns = 4096
	r.Domain = 77
	r.Flags = node.RecordCgroupLink | node.RecordNodeLink
	addrs := []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("fd00::5")}
	for i, a := range addrs {
		r.Addrs[i] = a.As16()
	}
	r.NAddrs = uint32(len(addrs))
	r.SetIdent("net1", "container-abc", "eth0")
	if err := o.PutRecord(key, &r); err != nil {
		t.Fatalf("PutRecord: %v", err)
	}

	key2 := node.RecordKey("net1", "container-def", "eth1")
	r2 := node.Record{Netns: 8192, Domain: 77}
	r2.SetIdent("net1", "container-def", "eth1")
	if err := o.PutRecord(key2, &r2); err != nil {
		t.Fatalf("PutRecord 2: %v", err)
	}

	got, ok, err := o.GetRecord(key)
	if err != nil || !ok {
		t.Fatalf("GetRecord = ok %v, err %v", ok, err)
	}
	if got != r {
		t.Errorf("GetRecord = %+v, want %+v", got, r)
	}
	if al := got.AddrList(); len(al) != 2 || al[0] != netip.AddrFrom16(addrs[0].As16()) || al[1] != addrs[1] {
		t.Errorf("AddrList = %v, want %v (as 16-byte addresses)", al, addrs)
	}
	nw, cid, ifn, ok := got.Identity(key)
	if !ok || nw != "net1" || cid != "container-abc" || ifn != "eth0" {
		t.Errorf("Identity = %q %q %q %v, want net1 container-abc eth0 true", nw, cid, ifn, ok)
	}
	if _, _, _, ok := got.Identity(key2); ok {
		t.Errorf("Identity with the wrong key succeeded")
	}

	recs, err := o.Records()
	if err != nil {
		t.Fatalf("Records: %v", err)
	}
	if len(recs) != 2 || recs[key] != r || recs[key2] != r2 {
		t.Errorf("Records = %d entries (%v/%v), want the two records put", len(recs), recs[key] == r, recs[key2] == r2)
	}

	if err := o.DeleteRecord(key); err != nil {
		t.Fatalf("DeleteRecord: %v", err)
	}
	if _, ok, err := o.GetRecord(key); err != nil || ok {
		t.Errorf("GetRecord after delete = ok %v, err %v; want false, nil", ok, err)
	}
	if err := o.DeleteRecord(key); err != nil {
		t.Errorf("DeleteRecord of a missing key = %v, want nil", err)
	}
	if err := o.DeleteRecord(node.RecordKey("never", "was", "here")); err != nil {
		t.Errorf("DeleteRecord of a never-stored key = %v, want nil", err)
	}
	recs, err = o.Records()
	if err != nil || len(recs) != 1 || recs[key2] != r2 {
		t.Errorf("Records after delete = %d entries, %v; want only the second", len(recs), err)
	}
}

func TestRecordIdentity(t *testing.T) {
	var r node.Record
	r.SetIdent("mynet", "0123456789abcdef", "net1")
	key := node.RecordKey("mynet", "0123456789abcdef", "net1")
	nw, cid, ifn, ok := r.Identity(key)
	if !ok || nw != "mynet" || cid != "0123456789abcdef" || ifn != "net1" {
		t.Errorf("Identity = %q %q %q %v", nw, cid, ifn, ok)
	}
	if _, _, _, ok := r.Identity(node.RecordKey("mynet", "0123456789abcdef", "net2")); ok {
		t.Errorf("Identity accepted a wrong key")
	}
	var empty node.Record
	if _, _, _, ok := empty.Identity(key); ok {
		t.Errorf("Identity of an empty record succeeded")
	}

	// An identity that does not fit is truncated and must not verify.
	var big node.Record
	cidLong := strings.Repeat("abcdef0123", 30)
	big.SetIdent("n", cidLong, "eth0")
	if _, _, _, ok := big.Identity(node.RecordKey("n", cidLong, "eth0")); ok {
		t.Errorf("Identity of a truncated record succeeded")
	}
}

func TestReadCountersFresh(t *testing.T) {
	needRoot(t)
	dir := pinDir(t)
	o := load(t, dir)
	defer o.Close()

	c, err := o.ReadCounters()
	if err != nil {
		t.Fatalf("ReadCounters: %v", err)
	}
	if c != (node.Counters{}) {
		t.Errorf("ReadCounters on a fresh load = %+v, want all zero", c)
	}
}

func TestReloadAfterWipe(t *testing.T) {
	needRoot(t)
	dir := pinDir(t)

	o := load(t, dir)
	first := objIDs(t, o)
	o.Close()

	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := node.Open(dir); !errors.Is(err, node.ErrNotLoaded) {
		t.Fatalf("Open after wipe: err = %v, want ErrNotLoaded", err)
	}

	o2 := load(t, dir)
	defer o2.Close()
	second := objIDs(t, o2)
	for k, v := range first.Maps {
		if second.Maps[k] == v {
			t.Errorf("map %s kept ID %d after the wipe", k, v)
		}
	}
	for k, v := range first.Progs {
		if second.Progs[k] == v {
			t.Errorf("program %s kept ID %d after the wipe", k, v)
		}
	}
	meta, err := o2.ReadMeta()
	if err != nil || meta.Stamp != node.Stamp() {
		t.Errorf("meta after reload = %+v, %v; want stamp %s", meta, err, node.Stamp())
	}
	if got, want := dirNames(t, filepath.Join(dir, node.MapsDir)), sorted(mapPins); !slices.Equal(got, want) {
		t.Errorf("maps/ = %v, want %v", got, want)
	}
	if got, want := dirNames(t, filepath.Join(dir, node.ProgsDir)), sorted(progPins); !slices.Equal(got, want) {
		t.Errorf("progs/ = %v, want %v", got, want)
	}
}

// Without the socksplice module the splice program is absent and Load
// works as before; a splice pin left behind goes at the next install.
func TestSpliceAbsentWithoutKfuncs(t *testing.T) {
	needRoot(t)
	if node.HaveSpliceKfuncs() {
		t.Skip("SKIP: the kernel has the splice kfuncs (socksplice module loaded)")
	}
	dir := pinDir(t)
	o := load(t, dir)
	if o.Splice != nil || o.SpliceErr != nil {
		t.Errorf("Splice = %v, SpliceErr = %v; want both nil without the kfuncs", o.Splice, o.SpliceErr)
	}
	stale := filepath.Join(dir, node.ProgsDir, "splice")
	if err := o.SockOps.Pin(stale); err != nil {
		t.Fatal(err)
	}
	if err := o.WriteMeta(node.Meta{Stamp: "old"}); err != nil {
		t.Fatal(err)
	}
	o.Close()

	o2 := load(t, dir)
	defer o2.Close()
	if o2.Splice != nil || o2.SpliceErr != nil {
		t.Errorf("after upgrade: Splice = %v, SpliceErr = %v; want both nil", o2.Splice, o2.SpliceErr)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale splice pin survived the upgrade: %v", err)
	}
}

// A counters map of another layout (the 64-byte slots of older builds) is
// replaced, not reused, and ReadCounters refuses a map it cannot parse.
func TestUpgradeRecreatesCountersOfOldLayout(t *testing.T) {
	needRoot(t)
	dir := pinDir(t)
	if err := os.MkdirAll(filepath.Join(dir, node.MapsDir), 0o700); err != nil {
		t.Fatal(err)
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{Name: "old_bss", Type: ebpf.Array, KeySize: 4,
		ValueSize: sbpf.MaxCPUs * 8 * 8, MaxEntries: 1, Flags: unix.BPF_F_MMAPABLE})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := old.Pin(filepath.Join(dir, node.MapsDir, "counters")); err != nil {
		t.Fatal(err)
	}
	wrong := node.Objects{Counters: old}
	if _, err := wrong.ReadCounters(); err == nil {
		t.Errorf("ReadCounters parsed a map of the old layout")
	}

	o := load(t, dir)
	defer o.Close()
	if got, want := o.Counters.ValueSize(), uint32(sbpf.MaxCPUs*sbpf.SlotWords*8); got != want {
		t.Errorf("counters map holds %d bytes after the upgrade, want %d", got, want)
	}
	if mapID(t, o.Counters) == mapID(t, old) {
		t.Errorf("old-layout counters map reused")
	}
	if c, err := o.ReadCounters(); err != nil || c != (node.Counters{}) {
		t.Errorf("ReadCounters = %+v, %v; want zero", c, err)
	}
}
