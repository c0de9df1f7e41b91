// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package engine

import (
	"os"
	"strings"
	"testing"

	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/pkg/selftest"
	"github.com/socksplice/socksplice/test/testenv"
)

func TestMain(m *testing.M) {
	selftest.MaybeRunChild() // the self-test re-executes this binary
	os.Exit(m.Run())
}

// checkFresh checks a fresh verdict: five checks, and the engine agrees
// with them.
func checkFresh(t *testing.T, eng string, d Decision) bool {
	t.Helper()
	t.Logf("%s self-test -> %s: %s | %s", eng, d.Engine, d.Reason, strings.Join(d.Detail, " | "))
	if d.Cached || len(d.Detail) != 5 {
		t.Errorf("%s: the first verdict should come from a fresh self-test with five checks: %+v", eng, d)
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
	o := testenv.LoadNode(t)
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
	o := testenv.LoadNode(t)
	testenv.LoadStubbedSplice(t, o)
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
	if d.Engine != Off || !strings.Contains(d.Reason, "splice fails the self-test: "+selftest.CheckRecv) {
		t.Errorf("a splice engine that pairs nothing passed: %+v", d)
	}
	a, err := Decide(Auto, f, o, exe)
	if err != nil {
		t.Fatal(err)
	}
	if a.Engine == Splice || !strings.HasPrefix(a.Reason, "splice engine not used (splice fails") {
		t.Errorf("auto = %s (%s), want the sockmap verdict with the splice failure named", a.Engine, a.Reason)
	}
	v, err := Cached(o, f.Kernel)
	if err != nil || v.SpliceTest == nil || v.SpliceTest.Engine != Off || v.SelfTest == nil {
		t.Errorf("both verdicts should be cached: %+v (%v)", v, err)
	}
	noLeftovers(t, o)
}

// storeVerdicts caches a verdict for each engine that holds on the node as
// it is now (kernel "k").
func storeVerdicts(t *testing.T, o *node.Objects) {
	t.Helper()
	var v Verdicts
	for eng, reason := range map[string]string{Sockmap: "sockmap verdict", Splice: "splice verdict"} {
		st, err := basis(o, eng, "k")
		if err != nil {
			t.Fatal(err)
		}
		st.Engine, st.Reason = Off, reason
		*v.of(eng) = &st
	}
	if err := o.PutMeta(node.MetaEngine, v); err != nil {
		t.Fatal(err)
	}
	if got, err := Cached(o, "k"); err != nil || got.SelfTest == nil || got.SpliceTest == nil {
		t.Fatalf("freshly stored verdicts do not hold: %+v (%v)", got, err)
	}
}

// TestSpliceLoadForgetsSpliceVerdict: loading a splice program (a module
// loaded or replaced since) makes the cached splice self-test verdict stale
// and keeps the sockmap one.
func TestSpliceLoadForgetsSpliceVerdict(t *testing.T) {
	o := testenv.LoadNode(t)
	testenv.LoadStubbedSplice(t, o)
	storeVerdicts(t, o)
	testenv.LoadStubbedSplice(t, o)
	v, err := Cached(o, "k")
	if err != nil {
		t.Fatal(err)
	}
	if v.SpliceTest != nil || v.SelfTest == nil || v.SelfTest.Reason != "sockmap verdict" {
		t.Errorf("after a splice load: selfTest %+v, spliceTest %+v", v.SelfTest, v.SpliceTest)
	}
	// Verdict answers from the cache, without running a self-test.
	f := Features{Kernel: "k", SockOps: true, SkMsg: true, SockHash: true, BTF: true, CgroupRoot: "/sys/fs/cgroup"}
	if d, err := Verdict(Sockmap, f, o, "/nonexistent"); err != nil || !d.Cached || d.Reason != "sockmap verdict" {
		t.Errorf("sockmap verdict after a splice load = %+v (%v), want the cached one", d, err)
	}
}

// TestVerdictsHoldForTheirBasis: a verdict is stale on another kernel, and
// after an upgrade (new stamp, new programs): no self-test result survives
// the programs it measured.
func TestVerdictsHoldForTheirBasis(t *testing.T) {
	o := testenv.LoadNode(t)
	testenv.LoadStubbedSplice(t, o)
	storeVerdicts(t, o)
	if v, err := Cached(o, "other"); err != nil || v.SelfTest != nil || v.SpliceTest != nil {
		t.Errorf("verdicts hold on another kernel: %+v (%v)", v, err)
	}
	if err := o.PutMeta(node.MetaNode, node.Meta{Stamp: "old"}); err != nil {
		t.Fatal(err)
	}
	if v, err := Cached(o, "k"); err != nil || v.SelfTest != nil || v.SpliceTest != nil {
		t.Errorf("verdicts hold under another stamp: %+v (%v)", v, err)
	}
	o.Close()                   // releases the node lock (closing again at cleanup is harmless)
	o2, err := node.Load(o.Dir) // upgrades: the stamp is not this build's
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Close()
	var raw Verdicts
	if err := o2.GetMeta(node.MetaEngine, &raw); err != nil || raw.SelfTest == nil {
		t.Fatalf("the node dropped the engine's metadata: %+v (%v)", raw, err)
	}
	if v, err := Cached(o2, "k"); err != nil || v.SelfTest != nil || v.SpliceTest != nil {
		t.Errorf("verdicts survived the upgrade: %+v (%v)", v, err)
	}
}

// A fresh node has no verdicts.
func TestFreshNodeHasNoVerdicts(t *testing.T) {
	o := testenv.LoadNode(t)
	if v, err := Cached(o, Probe().Kernel); err != nil || v.SelfTest != nil || v.SpliceTest != nil {
		t.Errorf("fresh node: %+v (%v)", v, err)
	}
}
