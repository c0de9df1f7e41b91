// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package counters_test

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/socksplice/socksplice/pkg/counters"
	"github.com/socksplice/socksplice/test/testenv"
)

// Retire folds a netns's counters into its network's, which therefore
// never go down when a container leaves; StartNS keeps what a netns
// already counted (a second attachment of one container).
func TestRetire(t *testing.T) {
	o := testenv.LoadNode(t)
	for _, cookie := range []uint64{1, 2, 3} {
		if err := counters.StartNS(o, cookie); err != nil {
			t.Fatalf("StartNS(%d): %v", cookie, err)
		}
	}
	// What the programs would have counted.
	counted := map[uint64]counters.NS{1: {Paired: 3, NoPeer: 1}, 2: {Paired: 5, Mptcp: 2}, 3: {PolicyRefused: 7}}
	for cookie, c := range counted {
		if err := o.NsCounters.Update(cookie, &c, ebpf.UpdateExist); err != nil {
			t.Fatal(err)
		}
	}
	if err := counters.StartNS(o, 1); err != nil {
		t.Fatalf("StartNS again: %v", err)
	}
	got, err := counters.ReadNS(o)
	if err != nil || len(got) != 3 || got[1] != counted[1] {
		t.Fatalf("ReadNS = %+v, %v; want %+v (netns 1 kept)", got, err, counted)
	}

	for _, r := range []struct {
		cookie uint64
		name   string
	}{{1, "net-a"}, {2, "net-a"}, {3, counters.SelfTest}, {99, "net-a"}} { // 99: never started
		if err := counters.Retire(o, r.cookie, r.name); err != nil {
			t.Fatalf("Retire(%d, %q): %v", r.cookie, r.name, err)
		}
	}
	retired, err := counters.ReadRetired(o)
	if err != nil {
		t.Fatal(err)
	}
	want := counters.NS{Paired: 8, NoPeer: 1, Mptcp: 2}
	if len(retired) != 2 || retired["net-a"] != want || retired[counters.SelfTest] != counted[3] {
		t.Errorf("retired = %+v, want net-a %+v and the self-test's %+v", retired, want, counted[3])
	}
	if left, _ := counters.ReadNS(o); len(left) != 0 {
		t.Errorf("retired netns still have entries: %+v", left)
	}
	if f := want.Fields(); f["paired"] != 8 || f["no_peer"] != 1 || f["splice_abi_mismatch"] != 0 || len(f) != 8 {
		t.Errorf("Fields() = %v", f)
	}
}
