// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package node_test

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/counters"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/test/testenv"
)

// TestModuleRefusesOtherABI loads the splice program as if it had been
// built against the next ABI version and connects through it: the module
// must refuse both ends with -EPROTO, count them (its abi_mismatch, the
// program's spliceAbiMismatch), pair nothing and leave the connection to
// TCP. The same connection through this build's program then pairs, so
// the version alone made the difference. Needs the module (make vm-test).
func TestModuleRefusesOtherABI(t *testing.T) {
	testenv.RequireRoot(t)
	if !node.HaveSpliceKfuncs() {
		t.Skipf("SKIP: the %s module is not loaded (make vm-test runs this test)", sbpf.SpliceModule)
	}
	if err := node.SpliceABIError(); err != nil {
		t.Fatal(err)
	}
	o := load(t, testenv.PinDir(t))
	defer o.Close()
	if o.Splice == nil {
		t.Fatalf("the splice program did not load: %v", o.SpliceErr)
	}
	real := o.Splice
	o.Splice = nil
	defer real.Close()

	spec, err := sbpf.LoadSplice()
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Variables[sbpf.SpliceVarSsAbiVersion].Set(uint32(sbpf.ABIVersion + 1)); err != nil {
		t.Fatal(err)
	}
	if err := o.LoadSplice(spec); err != nil {
		t.Fatalf("loading a splice program of ABI %d: %v", sbpf.ABIVersion+1, err)
	}

	cg := testenv.NewCgroup(t, testenv.CgroupRoot(t))
	l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: ebpf.AttachCGroupSockOps, Program: o.Splice})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cookie, connectOnce := loopbackIn(t, cg)
	pol := sbpf.AbiSsPolicy{Flags: sbpf.PolicyEnabled | sbpf.PolicyLoopback | sbpf.PolicySplice, RingKib: 64}
	if err := o.Enroll.Update(cookie, &pol, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	defer o.Enroll.Delete(cookie)

	// moduleStats reads the module's counters this test compares.
	moduleStats := func() map[string]int64 {
		t.Helper()
		m := testenv.ModuleStats(t)
		for _, k := range []string{"abi_mismatch", "paired"} {
			if _, ok := m[k]; !ok {
				t.Fatalf("module stats have no %q: %v", k, m)
			}
		}
		return m
	}
	type seen struct{ abi, paired, refused, modABI, modPaired int64 }
	measure := func() seen {
		t.Helper()
		c0, err := counters.Read(o.Counters)
		if err != nil {
			t.Fatal(err)
		}
		m0 := moduleStats()
		connectOnce(false) // a byte each way: a pairing that lost it would hang or fail here
		c1, err := counters.Read(o.Counters)
		if err != nil {
			t.Fatal(err)
		}
		m1 := moduleStats()
		return seen{
			abi:       int64(c1.SpliceAbiMismatch - c0.SpliceAbiMismatch),
			paired:    int64(c1.SplicePaired - c0.SplicePaired),
			refused:   int64(c1.SpliceRefused - c0.SpliceRefused),
			modABI:    m1["abi_mismatch"] - m0["abi_mismatch"],
			modPaired: m1["paired"] - m0["paired"],
		}
	}

	other := measure()
	t.Logf("program of ABI %d: %+v", sbpf.ABIVersion+1, other)
	if other != (seen{abi: 2, modABI: 2}) {
		t.Errorf("a program of ABI %d: counters moved %+v, want 2 ABI refusals in the program and the module and nothing paired", sbpf.ABIVersion+1, other)
	}

	if err := l.Update(real); err != nil {
		t.Fatal(err)
	}
	same := measure()
	t.Logf("program of ABI %d: %+v", sbpf.ABIVersion, same)
	if same != (seen{paired: 2, modPaired: 1}) {
		t.Errorf("this build's program: counters moved %+v, want both ends handed over and one pair", same)
	}
}
