// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package node_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/counters"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/test/testenv"
)

func TestUpgradeReplacesProgramsKeepsMaps(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.PinDir(t)
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
	// A count on CPU 0: the loader must not write the .bss's zeros over it.
	cbuf := make([]byte, o.Counters.ValueSize())
	cbuf[0] = 42 // paired, the first field of struct ss_counters
	if err := o.Counters.Update(uint32(0), cbuf, ebpf.UpdateAny); err != nil {
		o.Close()
		t.Fatalf("counters update: %v", err)
	}
	old := node.Meta{Stamp: "old", LoadedAt: time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)}
	if err := o.PutMeta(node.MetaNode, old); err != nil {
		o.Close()
		t.Fatalf("PutMeta: %v", err)
	}
	if m, err := o.ReadMeta(); err != nil || m != old {
		o.Close()
		t.Fatalf("ReadMeta after PutMeta = %+v, %v", m, err)
	}
	// Another owner's document (the engine's verdicts): the node keeps it,
	// its owner judges whether it still holds.
	other := map[string]string{"owner": "engine"}
	if err := o.PutMeta(node.MetaEngine, other); err != nil {
		o.Close()
		t.Fatalf("PutMeta(MetaEngine): %v", err)
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
	var kept map[string]string
	if err := o2.GetMeta(node.MetaEngine, &kept); err != nil || kept["owner"] != "engine" {
		t.Errorf("another owner's metadata after the upgrade = %v, %v; want it kept", kept, err)
	}
	if !meta.LoadedAt.After(old.LoadedAt) {
		t.Errorf("LoadedAt after upgrade = %v, not renewed", meta.LoadedAt)
	}

	for _, p := range progPins {
		if after.Progs[p] == before.Progs[p] {
			t.Errorf("program %s kept ID %d across the upgrade, want a new one", p, before.Progs[p])
		}
	}
	for _, m := range []string{"pairs", "holds", "enroll", "local_addrs", "domain_addrs", "ns_counters", "retired_counters", "retiring", "selftest", "attachments", "meta"} {
		if after.Maps[m] != before.Maps[m] {
			t.Errorf("map %s: ID %d after upgrade, was %d (map not reused)", m, after.Maps[m], before.Maps[m])
		}
	}
	// The counters map (the objects' .bss) is pinned by name like the
	// others (install.go, pinMaps): reused too, counts and all.
	t.Run("counters map reused", func(t *testing.T) {
		if after.Maps["counters"] != before.Maps["counters"] {
			t.Errorf("counters map recreated on upgrade (ID %d -> %d)", before.Maps["counters"], after.Maps["counters"])
		}
		if c, err := counters.Read(o2.Counters); err != nil || c.Paired != 42 {
			t.Errorf("counters after the upgrade: paired %d (%v), want the 42 counted before", c.Paired, err)
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

// Without the socksplice module the splice program is absent and Load
// works as before; a splice pin left behind goes at the next install.
func TestSpliceAbsentWithoutKfuncs(t *testing.T) {
	testenv.RequireRoot(t)
	if node.HaveSpliceKfuncs() {
		t.Skip("SKIP: the kernel has the splice kfuncs (socksplice module loaded)")
	}
	dir := testenv.PinDir(t)
	o := load(t, dir)
	if o.Splice != nil || o.SpliceErr != nil {
		t.Errorf("Splice = %v, SpliceErr = %v; want both nil without the kfuncs", o.Splice, o.SpliceErr)
	}
	stale := filepath.Join(dir, node.ProgsDir, "splice")
	if err := o.SockOps.Pin(stale); err != nil {
		t.Fatal(err)
	}
	if err := o.PutMeta(node.MetaNode, node.Meta{Stamp: "old"}); err != nil {
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
// replaced, not reused, and counters.Read refuses a map it cannot parse.
func TestUpgradeRecreatesCountersOfOldLayout(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.PinDir(t)
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
	if _, err := counters.Read(old); err == nil {
		t.Errorf("counters.Read parsed a map of the old layout")
	}

	o := load(t, dir)
	defer o.Close()
	if got, want := o.Counters.ValueSize(), uint32(sbpf.MaxCPUs*sbpf.SlotWords*8); got != want {
		t.Errorf("counters map holds %d bytes after the upgrade, want %d", got, want)
	}
	if testenv.MapID(t, o.Counters) == testenv.MapID(t, old) {
		t.Errorf("old-layout counters map reused")
	}
	if c, err := counters.Read(o.Counters); err != nil || c != (counters.Totals{}) {
		t.Errorf("counters.Read = %+v, %v; want zero", c, err)
	}
}

// The meta map of older builds (one entry) is replaced, the attachments
// map of an unchanged layout is kept with its records.
func TestUpgradeRecreatesGoMapsOfOldLayout(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.PinDir(t)
	if err := os.MkdirAll(filepath.Join(dir, node.MapsDir), 0o700); err != nil {
		t.Fatal(err)
	}
	pin := func(spec *ebpf.MapSpec, name string) *ebpf.Map {
		t.Helper()
		m, err := ebpf.NewMap(spec)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		if err := m.Pin(filepath.Join(dir, node.MapsDir, name)); err != nil {
			t.Fatal(err)
		}
		return m
	}
	oldMeta := pin(&ebpf.MapSpec{Name: "ss_meta", Type: ebpf.Array, KeySize: 4, ValueSize: 4096, MaxEntries: 1}, "meta")
	attach := pin(&ebpf.MapSpec{Name: "ss_attach", Type: ebpf.Hash, KeySize: 32, ValueSize: node.AttachValueSize, MaxEntries: 65536}, "attachments")
	var key [32]byte
	key[0] = 7
	if err := attach.Update(key, make([]byte, node.AttachValueSize), ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}

	o := load(t, dir)
	defer o.Close()
	if testenv.MapID(t, o.Meta) == testenv.MapID(t, oldMeta) || o.Meta.MaxEntries() < 2 {
		t.Errorf("meta map of the old layout reused (%d entries)", o.Meta.MaxEntries())
	}
	if testenv.MapID(t, o.Attach) != testenv.MapID(t, attach) {
		t.Errorf("attachments map recreated although its layout is unchanged")
	}
	if err := o.Attach.Lookup(key, make([]byte, node.AttachValueSize)); err != nil {
		t.Errorf("attachment record lost in the upgrade: %v", err)
	}
	if meta, err := o.ReadMeta(); err != nil || meta.Stamp != node.Stamp() {
		t.Errorf("meta after the upgrade = %+v, %v", meta, err)
	}
}

// A node pinned by a build before per-netns counters (no ns_counters, no
// retired_counters): Open still works for DEL, CHECK and GC (without
// them), and the next Load adds both and gives every netns enrolled
// before the upgrade its counters entry.
func TestUpgradeAddsPerNetnsCounters(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.PinDir(t)
	o := load(t, dir)
	const cookie = uint64(4242)
	if err := o.Enroll.Update(cookie, sbpf.AbiSsPolicy{Flags: sbpf.PolicyEnabled}, ebpf.UpdateAny); err != nil {
		o.Close()
		t.Fatal(err)
	}
	enrollID := testenv.MapID(t, o.Enroll)
	if err := o.PutMeta(node.MetaNode, node.Meta{Stamp: "previous build"}); err != nil {
		o.Close()
		t.Fatal(err)
	}
	o.Close()
	for _, m := range []string{"ns_counters", "retired_counters", "retiring", "selftest"} {
		if err := os.Remove(filepath.Join(dir, node.MapsDir, m)); err != nil {
			t.Fatal(err)
		}
	}

	old, err := node.Open(dir)
	if err != nil {
		t.Fatalf("Open on the previous build's pins: %v", err)
	}
	if old.NsCounters != nil || old.Retired != nil || old.Retiring != nil || old.SelfTestNetns != nil {
		t.Errorf("Open found per-netns counters on a node that has none")
	}
	old.Close()

	o2 := load(t, dir)
	defer o2.Close()
	if o2.NsCounters == nil || o2.Retired == nil || o2.Retiring == nil || o2.SelfTestNetns == nil {
		t.Fatalf("Load left the node without per-netns counters")
	}
	if testenv.MapID(t, o2.Enroll) != enrollID {
		t.Errorf("enroll map recreated by the upgrade")
	}
	var c sbpf.AbiSsNsCounters
	if err := o2.NsCounters.Lookup(cookie, &c); err != nil {
		t.Errorf("netns enrolled before the upgrade has no counters entry: %v", err)
	}
	if got := dirNames(t, filepath.Join(dir, node.MapsDir)); !slices.Equal(got, sorted(mapPins)) {
		t.Errorf("maps/ = %v, want %v", got, sorted(mapPins))
	}
}
