// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package engine

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/node"
)

func TestMain(m *testing.M) {
	MaybeRunSelfTestChild() // the self-test re-executes this binary
	os.Exit(m.Run())
}

// loadNode loads a node under a fresh pin directory, removed at cleanup.
func loadNode(t *testing.T) *node.Objects {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (netns, cgroup, BPF)")
	}
	b := make([]byte, 4)
	rand.Read(b)
	pin := "/sys/fs/bpf/socksplice-enginetest-" + hex.EncodeToString(b)
	t.Cleanup(func() { os.RemoveAll(pin) })
	o, err := node.Load(pin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// checkFresh checks a fresh verdict: four checks, and the engine agrees
// with them.
func checkFresh(t *testing.T, eng string, d Decision) bool {
	t.Helper()
	t.Logf("%s self-test -> %s: %s | %s", eng, d.Engine, d.Reason, strings.Join(d.Detail, " | "))
	if d.Cached || len(d.Detail) != 4 {
		t.Errorf("%s: the first verdict should come from a fresh self-test with four checks: %+v", eng, d)
		return false
	}
	allOK := true
	for _, l := range d.Detail {
		allOK = allOK && strings.Contains(l, "ok=true")
	}
	if (d.Engine == eng) != allOK || (d.Engine != eng && d.Engine != Off) {
		t.Errorf("%s: verdict %s disagrees with the measurements %v", eng, d.Engine, d.Detail)
	}
	return allOK
}

// TestSelfTestRunsAndCaches runs each engine's behavioural self-test that
// this kernel can run, checks that the verdicts agree with their own
// measurements and come from the node cache the second time, and that auto
// follows them: splice if it passed, else sockmap if that passed, else off.
// Where the splice module is loaded (the test kernel) its self-test must
// pass: the module passes the whole semantics suite there.
func TestSelfTestRunsAndCaches(t *testing.T) {
	o := loadNode(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f := Probe()
	if err := f.SockmapReady(); err != nil {
		t.Fatalf("this kernel should run sockmap: %v", err)
	}
	engines := []string{Sockmap}
	if err := spliceReady(f, o); err == nil {
		engines = append(engines, Splice)
	} else {
		t.Logf("SKIP (splice part): %v", err)
	}
	passed := map[string]bool{}
	for _, eng := range engines {
		d, err := Verdict(eng, f, o, exe)
		if err != nil {
			t.Fatal(err)
		}
		passed[eng] = checkFresh(t, eng, d)
		d2, err := Verdict(eng, f, o, exe)
		if err != nil || !d2.Cached || d2.Engine != d.Engine {
			t.Errorf("second %s verdict %+v (%v), want the cached %s", eng, d2, err, d.Engine)
		}
	}
	if len(engines) == 2 && !passed[Splice] {
		t.Errorf("the splice module fails its own self-test on %s", f.Kernel)
	}
	want := Off
	switch {
	case passed[Splice]:
		want = Splice
	case passed[Sockmap]:
		want = Sockmap
	}
	d, err := Decide(Auto, f, o, exe)
	if err != nil || d.Engine != want || !d.Cached {
		t.Errorf("auto = %+v (%v), want the cached %s", d, err, want)
	}
	t.Logf("auto on %s -> %s: %s", f.Kernel, d.Engine, d.Reason)
	noLeftovers(t, o)
}

// noLeftovers: a self-test leaves no enrollment behind.
func noLeftovers(t *testing.T, o *node.Objects) {
	t.Helper()
	var k uint64
	var v [80]byte
	if o.Enroll.Iterate().Next(&k, &v) {
		t.Errorf("self-test left netns %d enrolled", k)
	}
}

// TestSpliceSelfTestCatchesUnpairedEngine runs the splice self-test against
// a splice program whose kfunc calls are stubbed to claim success (so that
// it loads on any kernel): nothing pairs, so the self-test must fail it on
// its own measurement, and auto must fall back to the sockmap verdict and
// say why.
func TestSpliceSelfTestCatchesUnpairedEngine(t *testing.T) {
	o := loadNode(t)
	if o.Splice != nil {
		o.Splice.Close() // the real one, where the module is loaded
		o.Splice = nil
	}
	spec, err := sbpf.LoadSpliceStubbed()
	if err != nil {
		t.Fatal(err)
	}
	if err := o.LoadSplice(spec); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f := Probe()
	f.SpliceKfunc = true // as the stub pretends
	d, err := Verdict(Splice, f, o, exe)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stubbed splice -> %s: %s | %s", d.Engine, d.Reason, strings.Join(d.Detail, " | "))
	if d.Engine != Off || !strings.Contains(d.Reason, "splice fails the self-test: "+CheckRecv) {
		t.Errorf("a splice engine that pairs nothing passed: %+v", d)
	}
	a, err := Decide(Auto, f, o, exe)
	if err != nil {
		t.Fatal(err)
	}
	if a.Engine == Splice || !strings.HasPrefix(a.Reason, "splice engine not used (splice fails") {
		t.Errorf("auto = %s (%s), want the sockmap verdict with the splice failure named", a.Engine, a.Reason)
	}
	meta, err := o.ReadMeta()
	if err != nil || meta.SpliceTest == nil || meta.SpliceTest.Engine != Off || meta.SelfTest == nil {
		t.Errorf("both verdicts should be cached: %+v (%v)", meta, err)
	}
	noLeftovers(t, o)
}
