// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/enroll"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/test/testenv"
)

// spliceWhy is what a node without a usable splice engine must say, from
// the kernel's version alone: before 6.15 sock_ops programs cannot call
// module kfuncs at all, after it the module is merely not loaded.
func spliceWhy(t *testing.T) string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	var v [2]int
	for i, f := range strings.SplitN(rel, ".", 3)[:2] {
		v[i], _ = strconv.Atoi(strings.TrimRightFunc(f, func(r rune) bool { return r < '0' || r > '9' }))
	}
	if v[0] < 6 || v[0] == 6 && v[1] < 15 {
		return "cannot call module kfuncs from sock_ops programs (needs 6.15)"
	}
	return "kernel module is not loaded"
}

// TestSpliceUnavailable is the smoke run of a node where the splice engine
// cannot run (no module; a stock kernel too old for it): mode splice fails
// ADD with code 100 and the reason, enrolling nothing; mode auto says the
// same reason in its ADD log and in "socksplice status", carries a
// transfer intact on what its self-tests allow, and DEL cleans up.
func TestSpliceUnavailable(t *testing.T) {
	testenv.RequireRoot(t)
	if node.HaveSpliceKfuncs() {
		t.Skip("SKIP: the kernel has the splice kfuncs (socksplice module loaded); splice_test.go (vmtest) covers the engine")
	}
	why := spliceWhy(t)
	pin := testenv.PinDir(t)

	forced := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.224.0.0/24", PinDir: pin, Plugin: map[string]any{"mode": "splice"}})
	c := testenv.NewContainer(t, "a")
	_, err := forced.Add(t, c)
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != 100 || !strings.Contains(ce.Msg, why) {
		t.Fatalf("ADD with mode splice: %v, want CNI error 100 saying %q", err, why)
	}
	t.Logf("mode splice: code %d: %s", ce.Code, ce.Msg)
	if ids, _ := cgroup.AttachedIDs(c.Cgroup); len(ids) != 0 {
		t.Errorf("programs attached after a refused ADD: %v", ids)
	}
	if o, err := node.Open(pin); err == nil {
		recs, _ := enroll.Records(o)
		if o.Splice != nil || len(recs) != 0 {
			t.Errorf("after a refused ADD: splice program %v, %d attachments; want none", o.Splice, len(recs))
		}
		o.Close()
	}
	if err := forced.Del(t, c); err != nil {
		t.Errorf("DEL after a refused ADD: %v", err)
	}

	auto := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.225.0.0/24", PinDir: pin, Plugin: map[string]any{"mode": "auto"}})
	var log bytes.Buffer
	auto.LogTo(t, &log)
	a, b := testenv.NewContainer(t, "b"), testenv.NewContainer(t, "c")
	auto.MustAdd(t, a)
	auto.MustAdd(t, b)
	t.Logf("ADD log: %s", strings.TrimSpace(log.String()))
	if !strings.Contains(log.String(), "splice engine not available") || !strings.Contains(log.String(), why) {
		t.Errorf("the ADD log does not say why auto did not pick splice (want %q):\n%s", why, log.String())
	}
	exchange(t, b, a, netip.AddrPortFrom(b.IP(auto), 6003), 4<<20, 610, 0)

	out, err := exec.Command(testenv.PluginBinary(t), "status", pin).Output()
	if err != nil {
		t.Fatalf("socksplice status: %v", err)
	}
	var st struct {
		SpliceUnavailable string
		Attachments       []struct{ Engine string }
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("status output: %v\n%s", err, out)
	}
	t.Logf("status: spliceUnavailable %q, %d attachments", st.SpliceUnavailable, len(st.Attachments))
	if !strings.Contains(st.SpliceUnavailable, why) || len(st.Attachments) != 2 {
		t.Errorf("status says spliceUnavailable %q with %d attachments; want %q and 2", st.SpliceUnavailable, len(st.Attachments), why)
	}
	for _, x := range []*testenv.Container{a, b} {
		if err := auto.Del(t, x); err != nil {
			t.Errorf("DEL %s: %v", x.ID, err)
		}
	}
	o, err := node.Open(pin)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if recs, _ := enroll.Records(o); len(recs) != 0 {
		t.Errorf("%d attachments left after DEL", len(recs))
	}
}
