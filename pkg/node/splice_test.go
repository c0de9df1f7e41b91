// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package node_test

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/counters"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/test/testenv"
)

// loConn is the helper role "lo-conn": it reports its netns cookie and,
// with Connect, first makes one loopback connection in its netns and sends
// a byte over it: plain TCP, or MPTCP on both ends with MPTCP.
type loConn struct {
	Connect bool
	MPTCP   bool
}

func init() { testenv.Register("lo-conn", runLoConn) }

func runLoConn(x loConn, _ func()) (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	unix.Close(fd)
	if err != nil || !x.Connect {
		return cookie, err
	}
	ln, err := testenv.ListenTCP("tcp4", "127.0.0.1:0", x.MPTCP)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	c, err := testenv.Dialer(x.MPTCP).Dial("tcp4", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		return 0, err
	}
	defer s.Close()
	buf := []byte("x")
	if _, err := c.Write(buf); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(s, buf); err != nil {
		return 0, err
	}
	return cookie, nil
}

// stubbedNode loads a node under a fresh pin directory (both go at
// cleanup) whose splice program is the one with stubbed kfuncs.
func stubbedNode(t *testing.T) *node.Objects {
	t.Helper()
	o := testenv.LoadNode(t)
	testenv.LoadStubbedSplice(t, o)
	if _, err := os.Stat(filepath.Join(o.Dir, node.ProgsDir, "splice")); err != nil {
		t.Errorf("splice program not pinned: %v", err)
	}
	return o
}

// loopbackIn gives a netns of the test's own (a testenv container's) whose
// connections are born in the cgroup dir. It returns the netns cookie and
// a function that makes one loopback connection there (MPTCP on both ends
// with mptcp, else plain TCP) and sends a byte over it, each time in a
// helper process started for it in the netns and dir.
func loopbackIn(t *testing.T, dir string) (uint64, func(mptcp bool)) {
	t.Helper()
	c := testenv.NewContainer(t, "lo")
	run := func(x loConn) uint64 {
		t.Helper()
		p, err := c.StartHelper(t, testenv.Helper{Role: "lo-conn", Spec: x, Cgroup: dir})
		if err != nil {
			t.Fatal(err)
		}
		var cookie uint64
		if err := p.Result(&cookie, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		return cookie
	}
	cookie := run(loConn{})
	return cookie, func(mptcp bool) {
		t.Helper()
		if got := run(loConn{Connect: true, MPTCP: mptcp}); got != cookie {
			t.Fatalf("the connection was made in netns %d, want %d", got, cookie)
		}
	}
}

func attach(t *testing.T, dir string, p *ebpf.Program) {
	t.Helper()
	l, err := link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: ebpf.AttachCGroupSockOps, Program: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
}

// TestSpliceProgramSharesMaps loads the splice program, kfuncs stubbed,
// with a node's maps, and runs loopback connections through it in a child
// netns: it must pass the verifier, read the shared enrollment, count into
// the shared counters for each program level that hands a socket over
// (node-wide and the netns's own), and each engine must leave the other's
// netns alone.
func TestSpliceProgramSharesMaps(t *testing.T) {
	o := stubbedNode(t)
	defer o.Close()

	outer := testenv.NewCgroup(t, testenv.CgroupRoot(t))
	inner := testenv.NewCgroup(t, outer)
	attach(t, outer, o.Splice) // as a node-level link would
	attach(t, inner, o.Splice)
	attach(t, inner, o.SockOps)

	cookie, connectOnce := loopbackIn(t, inner)
	defer o.Enroll.Delete(cookie)
	if err := counters.StartNS(o, cookie); err != nil {
		t.Fatal(err)
	}
	defer o.NsCounters.Delete(cookie)
	readNS := func(t *testing.T) counters.NS {
		t.Helper()
		var c counters.NS
		if err := o.NsCounters.Lookup(cookie, &c); err != nil {
			t.Fatal(err)
		}
		return c
	}

	connect := func(t *testing.T, flags uint32, mptcp bool) counters.Totals {
		t.Helper()
		pol := sbpf.AbiSsPolicy{Flags: flags, BusyPollUs: 50, RingKib: 64}
		if err := o.Enroll.Update(cookie, &pol, ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
		before, err := counters.Read(o.Counters)
		if err != nil {
			t.Fatal(err)
		}
		nsBefore := readNS(t)
		connectOnce(mptcp)
		after, err := counters.Read(o.Counters)
		if err != nil {
			t.Fatal(err)
		}
		// The netns counts what the node counts, both engines' pairings
		// as paired.
		nsAfter := readNS(t)
		nsGot := counters.NS{Paired: nsAfter.Paired - nsBefore.Paired, PolicyRefused: nsAfter.PolicyRefused - nsBefore.PolicyRefused,
			NoPeer: nsAfter.NoPeer - nsBefore.NoPeer, Mptcp: nsAfter.Mptcp - nsBefore.Mptcp,
			SpliceRefused: nsAfter.SpliceRefused - nsBefore.SpliceRefused}
		nsWant := counters.NS{Paired: after.Paired - before.Paired + after.SplicePaired - before.SplicePaired,
			PolicyRefused: after.PolicyRefused - before.PolicyRefused, NoPeer: after.NoPeer - before.NoPeer,
			Mptcp: after.Mptcp - before.Mptcp, SpliceRefused: after.SpliceRefused - before.SpliceRefused}
		if nsGot != nsWant {
			t.Errorf("the netns's counters moved %+v, the node's %+v", nsGot, nsWant)
		}
		return counters.Totals{
			Paired:        after.Paired - before.Paired,
			SplicePaired:  after.SplicePaired - before.SplicePaired,
			SpliceRefused: after.SpliceRefused - before.SpliceRefused,
			PolicyRefused: after.PolicyRefused - before.PolicyRefused,
			NoPeer:        after.NoPeer - before.NoPeer,
			Mptcp:         after.Mptcp - before.Mptcp,
		}
	}

	// Splice-enrolled: both ends handed over by both levels (the stub
	// answers 0 each time; the module answers 1 to the second call),
	// sockmap stays out.
	if d := connect(t, sbpf.PolicyEnabled|sbpf.PolicyLoopback|sbpf.PolicySplice, false); d != (counters.Totals{SplicePaired: 4}) {
		t.Errorf("splice-enrolled loopback connection: counters moved %+v, want splicePaired 4 only", d)
	}
	// Sockmap-enrolled: the splice program stays out.
	if d := connect(t, sbpf.PolicyEnabled|sbpf.PolicyLoopback, false); d != (counters.Totals{Paired: 2}) {
		t.Errorf("sockmap-enrolled loopback connection: counters moved %+v, want paired 2 only", d)
	}
	// Loopback not allowed: refused by policy, by both splice programs.
	if d := connect(t, sbpf.PolicyEnabled|sbpf.PolicySplice, false); d != (counters.Totals{PolicyRefused: 4}) {
		t.Errorf("splice-enrolled without loopback: counters moved %+v, want policyRefused 4 only", d)
	}
	// MPTCP on both ends: every subflow stays plain TCP, counted once per
	// program level. Splice: the listener's subflow at listen (never
	// handed to bpf_sock_splice_listen), and the client's and the
	// accepted subflows at ESTABLISHED, by both levels: 6. Sockmap (one
	// level, no listen callback): the two connected subflows.
	t.Run("mptcp", func(t *testing.T) {
		testenv.RequireMPTCP(t)
		if d := connect(t, sbpf.PolicyEnabled|sbpf.PolicyLoopback|sbpf.PolicySplice, true); d != (counters.Totals{Mptcp: 6}) {
			t.Errorf("splice-enrolled MPTCP loopback connection: counters moved %+v, want mptcp 6 only", d)
		}
		if d := connect(t, sbpf.PolicyEnabled|sbpf.PolicyLoopback, true); d != (counters.Totals{Mptcp: 2}) {
			t.Errorf("sockmap-enrolled MPTCP loopback connection: counters moved %+v, want mptcp 2 only", d)
		}
	})
}

// An upgrade moves each pinned link to this build's program of the engine
// it runs; without this build's splice program a splice link keeps its own.
func TestUpgradeMovesLinksByEngine(t *testing.T) {
	o := stubbedNode(t)
	dir := o.Dir
	cg := testenv.NewCgroup(t, testenv.CgroupRoot(t))
	sockmapPin := filepath.Join(dir, node.ContainersDir, "a")
	spliceLink := filepath.Join(dir, node.ContainersDir, "b")
	if err := cgroup.Attach(cg, o.SockOps, sockmapPin); err != nil {
		t.Fatal(err)
	}
	if err := cgroup.Attach(cg, o.Splice, spliceLink); err != nil {
		t.Fatal(err)
	}
	for pin, want := range map[string]bool{sockmapPin: false, spliceLink: true} {
		if got, err := node.LinkRunsSplice(pin); err != nil || got != want {
			t.Errorf("LinkRunsSplice(%s) = %v, %v; want %v", pin, got, err, want)
		}
	}
	oldSplice := testenv.ProgID(t, o.Splice)
	if err := o.PutMeta(node.MetaNode, node.Meta{Stamp: "old"}); err != nil {
		t.Fatal(err)
	}
	o.Close()

	o2, err := node.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Close()
	if got, want := testenv.PinnedLink(t, sockmapPin).Program, testenv.ProgID(t, o2.SockOps); got != want {
		t.Errorf("sockmap link runs program %d, want the new sockops %d", got, want)
	}
	want := oldSplice
	if o2.Splice != nil {
		want = testenv.ProgID(t, o2.Splice)
	}
	if got := testenv.PinnedLink(t, spliceLink).Program; got != want {
		t.Errorf("splice link runs program %d, want %d (new splice program loaded: %v)", got, want, o2.Splice != nil)
	}
	os.Remove(sockmapPin)
	os.Remove(spliceLink)
}
