// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package testenv_test

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socksplice/socksplice/test/testenv"
)

func TestMain(m *testing.M) { testenv.TestMain(m) }

// probe is a helper role that reports where it runs, optionally after
// saying ready, failing or hanging first.
type probe struct {
	Ready, Fail, Hang bool
}

type where struct {
	Netns, Cgroup string
}

func init() {
	testenv.Register("probe", func(p probe, ready func()) (where, error) {
		fmt.Println("a stray print must not garble the report")
		if p.Ready {
			ready()
		}
		if p.Hang {
			time.Sleep(time.Hour)
		}
		w := where{}
		w.Netns, _ = os.Readlink("/proc/self/ns/net")
		cg, _ := os.ReadFile("/proc/self/cgroup")
		for _, l := range strings.Split(string(cg), "\n") {
			if v2, ok := strings.CutPrefix(l, "0::"); ok {
				w.Cgroup = v2
			}
		}
		if p.Fail {
			return w, errors.New("asked to fail")
		}
		return w, nil
	})
}

// TestTry: a failure inside Try comes back as its error, after every
// cleanup ran, last first, even one that fails itself.
func TestTry(t *testing.T) {
	var order []string
	err := testenv.Try(t, "try", func(s testenv.T) {
		s.Cleanup(func() { order = append(order, "first") })
		s.Cleanup(func() { s.Fatal("cleanup fails") })
		s.Cleanup(func() { order = append(order, "last") })
		s.Fatalf("body fails %d", 1)
		order = append(order, "after the failure")
	})
	if err == nil || err.Error() != "body fails 1" {
		t.Errorf("Try returned %v, want the body's failure", err)
	}
	if strings.Join(order, ",") != "last,first" {
		t.Errorf("cleanups ran as %v, want last,first", order)
	}
	if err := testenv.Try(t, "try", func(testenv.T) {}); err != nil {
		t.Errorf("Try of a body that passes: %v", err)
	}
}

// TestHelperInContainer: a helper runs in its container's netns and
// cgroup, reports its result, its role's error, and is killed on timeout.
func TestHelperInContainer(t *testing.T) {
	testenv.RequireRoot(t)
	c := testenv.NewContainer(t, "helper")
	self, _ := os.Readlink("/proc/self/ns/net")

	p, err := c.StartHelper(t, testenv.Helper{Role: "probe", Spec: probe{Ready: true}, Ready: true})
	if err != nil {
		t.Fatal(err)
	}
	var w where
	if err := p.Result(&w, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if w.Netns == "" || w.Netns == self {
		t.Errorf("helper ran in netns %q, want the container's (not this process's %q)", w.Netns, self)
	}
	if w.Cgroup != c.CgroupRel {
		t.Errorf("helper ran in cgroup %q, want %s", w.Cgroup, c.CgroupRel)
	}

	p, err = c.StartHelper(t, testenv.Helper{Role: "probe", Spec: probe{Fail: true}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Result(&w, 30*time.Second); err == nil || !strings.Contains(err.Error(), "asked to fail") {
		t.Errorf("failing role: %v, want its error", err)
	}

	p, err = c.StartHelper(t, testenv.Helper{Role: "probe", Spec: probe{Ready: true, Hang: true}, Ready: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Result(&w, 500*time.Millisecond); err == nil || !p.Exited() {
		t.Errorf("hanging role: %v, exited %v; want a timeout and the helper gone", err, p.Exited())
	}

	if _, err := c.StartHelper(t, testenv.Helper{Role: "nobody", Ready: true}); err == nil {
		t.Errorf("an unknown role got ready")
	}
}

// TestHelperInCgroup: a helper born in a cgroup below its container's
// runs there, an idle one is in the container's netns when StartIdle
// returns, and both are gone before that cgroup is removed at cleanup
// (which fails the test otherwise).
func TestHelperInCgroup(t *testing.T) {
	testenv.RequireRoot(t)
	c := testenv.NewContainer(t, "cg")
	sub := testenv.Cgroup(t, filepath.Join(c.Cgroup, "sub"))

	p, err := c.StartHelper(t, testenv.Helper{Role: "probe", Cgroup: sub})
	if err != nil {
		t.Fatal(err)
	}
	var w where
	if err := p.Result(&w, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if want := c.CgroupRel + "/sub"; w.Cgroup != want {
		t.Errorf("helper ran in cgroup %q, want %s", w.Cgroup, want)
	}

	c.StartIdle(t, sub)
	b, err := os.ReadFile(filepath.Join(sub, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	pids := strings.Fields(string(b))
	if len(pids) != 1 {
		t.Fatalf("%s holds processes %v, want the idle one only", sub, pids)
	}
	in, err := os.Stat("/proc/" + pids[0] + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.Stat(c.Netns)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(in, want) {
		t.Errorf("the idle process is not in %s's netns when StartIdle returns", c.ID)
	}
}

// TestExchangeLoopback: two xfer helpers in one container exchange
// different amounts over its lo, and each gets the other's bytes.
func TestExchangeLoopback(t *testing.T) {
	testenv.RequireRoot(t)
	c := testenv.NewContainer(t, "xfer")
	addr := netip.MustParseAddrPort("127.0.0.1:7400").String()
	s, cl, err := testenv.Exchange(t, c, c,
		testenv.Xfer{Role: "server", Addr: addr, Bytes: 1 << 20, Seed: 1},
		testenv.Xfer{Role: "client", Addr: addr, Bytes: 3 << 20, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	if s.RecvBytes != 3<<20 || cl.RecvBytes != 1<<20 || s.ReadEnd != "EOF" {
		t.Errorf("server got %d bytes (%s), client %d", s.RecvBytes, s.ReadEnd, cl.RecvBytes)
	}
	if lo := c.LoBytes(t); lo < 4<<20 {
		t.Errorf("lo received %d bytes, want the 4 MiB exchanged", lo)
	}
	if got := testenv.PayloadSHA(2, 3<<20); s.RecvSHA != got {
		t.Errorf("server's sha %s, want %s", s.RecvSHA, got)
	}
}

// TestNetkitPair: two containers joined by a netkit pair and enrolled by
// socksplice ADD alone (mode sockmap) exchange 4 MiB each way intact,
// both ends paired, and the pair carries the handshake, not the payload.
// Needs a kernel with netkit (the test kernel has it).
func TestNetkitPair(t *testing.T) {
	testenv.RequireRoot(t)
	a, b := testenv.NewContainer(t, "nka"), testenv.NewContainer(t, "nkb")
	pin := testenv.PinDir(t)
	p, err := testenv.NewNetkitPair(t, testenv.NetOpts{Subnet: "10.236.7.0/24", PinDir: pin,
		Plugin: map[string]any{"mode": "sockmap"}}, a, b)
	if errors.Is(err, testenv.ErrNoNetkit) {
		t.Skipf("SKIP: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	c0, w0 := testenv.ReadCounters(t, pin), p.Bytes(t)
	addr := netip.AddrPortFrom(p.AddrA, 7401).String()
	s, cl, err := testenv.Exchange(t, a, b,
		testenv.Xfer{Role: "server", Addr: addr, Bytes: 4 << 20, Seed: 1},
		testenv.Xfer{Role: "client", Addr: addr, Bytes: 4 << 20, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	c1, wire := testenv.ReadCounters(t, pin), p.Bytes(t)-w0
	if s.RecvSHA != testenv.PayloadSHA(2, 4<<20) || cl.RecvSHA != testenv.PayloadSHA(1, 4<<20) {
		t.Errorf("payload not intact: server got %d B (%s), client %d B", s.RecvBytes, s.ReadEnd, cl.RecvBytes)
	}
	paired := c1.Paired - c0.Paired
	t.Logf("summary: netkit pair %s: %s <-> %s, paired +%d, redirected %d B, the pair carried %d B for 8 MiB of payload",
		p.Dev, p.AddrA, p.AddrB, paired, c1.RedirectBytes-c0.RedirectBytes, wire)
	if paired < 2 {
		t.Errorf("paired +%d, want both ends", paired)
	}
	if wire == 0 || wire > 1<<20 {
		t.Errorf("the netkit pair carried %d B: want the handshake and close only", wire)
	}
}

// TestFootprintDiff: a leaked pin, link, map entry or descriptor is a
// difference; a descriptor that closed since the baseline is not.
func TestFootprintDiff(t *testing.T) {
	base := testenv.Footprint{Pins: 15, Links: 1, FDs: 10, Maps: map[string]int{"pairs": 0, "enroll": 2}}
	for _, c := range []struct {
		name string
		got  testenv.Footprint
		want string
	}{
		{"same", testenv.Footprint{Pins: 15, Links: 1, FDs: 10, Maps: map[string]int{"pairs": 0, "enroll": 2}}, ""},
		{"fewer fds", testenv.Footprint{Pins: 15, Links: 1, FDs: 6, Maps: map[string]int{"pairs": 0, "enroll": 2}}, ""},
		{"more fds", testenv.Footprint{Pins: 15, Links: 1, FDs: 11, Maps: map[string]int{"pairs": 0, "enroll": 2}}, "open fds 10 -> 11"},
		{"pin left", testenv.Footprint{Pins: 16, Links: 1, FDs: 10, Maps: map[string]int{"pairs": 0, "enroll": 2}}, "pins 15 -> 16"},
		{"link gone", testenv.Footprint{Pins: 15, FDs: 10, Maps: map[string]int{"pairs": 0, "enroll": 2}}, "links 1 -> 0"},
		{"entry left", testenv.Footprint{Pins: 15, Links: 1, FDs: 10, Maps: map[string]int{"pairs": 1, "enroll": 2}}, "map pairs 0 -> 1"},
		{"map missing", testenv.Footprint{Pins: 15, Links: 1, FDs: 10, Maps: map[string]int{"pairs": 0}}, "map enroll 2 -> 0"},
	} {
		if d := base.Diff(c.got); d != c.want {
			t.Errorf("%s: Diff = %q, want %q", c.name, d, c.want)
		}
	}
}
