// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package node_test

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/test/testenv"
)

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
	testenv.RequireRoot(t)
	dir := testenv.PinDir(t)

	o := load(t, dir)
	first := objIDs(t, o)
	meta, err := o.ReadMeta()
	if err != nil {
		o.Close()
		t.Fatalf("ReadMeta: %v", err)
	}
	var other map[string]any
	if err := o.GetMeta(node.MetaEngine, &other); err != nil || other != nil {
		t.Errorf("fresh meta holds another owner's document: %v, %v", other, err)
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
	testenv.RequireRoot(t)
	dir := testenv.PinDir(t)

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

func TestConcurrentLoad(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.PinDir(t)

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
			for name, m := range map[string]*ebpf.Map{"pairs": o.Pairs, "holds": o.Holds, "enroll": o.Enroll,
				"local_addrs": o.LocalAddrs, "domain_addrs": o.DomainAddrs, "counters": o.Counters,
				"ns_counters": o.NsCounters, "retired_counters": o.Retired, "retiring": o.Retiring, "selftest": o.SelfTestNetns,
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

func TestReloadAfterWipe(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.PinDir(t)

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
