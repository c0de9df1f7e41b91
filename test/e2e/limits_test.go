// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

// The node's stated limits, tested at the limit. Reaching 16384 enrolled
// containers or 131072 paired sockets with real ones would take hours on
// a test machine: the tests fill the node's real maps with entries no
// socket or netns can match (netns cookies above any the kernel has
// handed out) up to the limit, then add real containers and make real
// connections there.

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/test/testenv"
)

// fillPerHelper is how many fake sockets one helper holds: within the
// descriptors a process may have (its hard RLIMIT_NOFILE, which the Go
// runtime makes its soft limit; this host allows 20000 and no more, the
// test VM 4096 unless raised).
func fillPerHelper(t *testing.T) int {
	t.Helper()
	const want, spare = 16384, 256
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max < want+spare {
		// Helpers inherit the hard limit; raising it needs
		// CAP_SYS_RESOURCE, which this process may lack.
		raised := unix.Rlimit{Cur: lim.Cur, Max: want + spare}
		if unix.Setrlimit(unix.RLIMIT_NOFILE, &raised) == nil {
			t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &lim) })
			lim = raised
		}
	}
	return int(min(want, lim.Max-spare)) &^ 1
}

// fillSpec asks a "fillpairs" helper to put Count sockets under the fake
// keys From..From+Count-1 into the pair map (by its ID: "ip netns exec"
// hides the pins from the helper).
type fillSpec struct {
	Map         ebpf.MapID
	From, Count int
}

func init() {
	testenv.Register("fillpairs", func(s fillSpec, ready func()) (struct{}, error) {
		m, err := ebpf.NewMapFromID(s.Map)
		if err != nil {
			return struct{}{}, err
		}
		for i := s.From; i < s.From+s.Count; i += 2 {
			sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return struct{}{}, fmt.Errorf("socketpair %d: %w", i, err)
			}
			for j, fd := range sp {
				if i+j >= s.From+s.Count {
					break
				}
				if err := m.Update(pairKey(i+j), uint64(fd), ebpf.UpdateNoExist); err != nil {
					return struct{}{}, fmt.Errorf("entry %d: %w", i+j, err)
				}
			}
		}
		ready()
		time.Sleep(time.Hour) // until killed at cleanup: its sockets leave the map then
		return struct{}{}, nil
	})
}

// pairKey is the i-th fake key of the pair map.
func pairKey(i int) *sbpf.AbiSsPairKey { return &sbpf.AbiSsPairKey{Netns: fakeCookie(i)} }

// fakeCookie is a netns cookie no netns has: the kernel counts them up
// from 1.
func fakeCookie(i int) uint64 { return 1<<62 + uint64(i) }

// fill puts k entries under fake keys (key(i)) with value v(i) into m.
func fill(t *testing.T, m *ebpf.Map, k int, key func(i int) any, v func(i int) any) {
	t.Helper()
	for i := range k {
		if err := m.Update(key(i), v(i), ebpf.UpdateNoExist); err != nil {
			t.Fatalf("filling map %v: entry %d of %d: %v", m, i, k, err)
		}
	}
}

// withNode runs fn on the node's objects under pinDir, holding the node
// lock until fn returns, also when it fails the test.
func withNode(t *testing.T, pinDir string, fn func(*node.Objects)) {
	t.Helper()
	o, err := node.Open(pinDir)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	fn(o)
}

// drain deletes the entries fill put into m.
func drain(t *testing.T, m *ebpf.Map, k int, key func(i int) any) {
	t.Helper()
	for i := range k {
		if err := m.Delete(key(i)); err != nil {
			t.Fatalf("draining map %v: entry %d of %d: %v", m, i, k, err)
		}
	}
}

// TestLimitEnrolled: a node enrolls at most as many network namespaces as
// its enrollment map holds (16384). With one slot left, an ADD takes it;
// the next fails with code 102 naming the limit and leaves the node as it
// was; once a container is deleted its slot serves the next ADD, whose
// flows pair.
func TestLimitEnrolled(t *testing.T) {
	testenv.RequireRoot(t)
	n := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.246.0.0/24", PinDir: testenv.PinDir(t), Plugin: map[string]any{"mode": "sockmap"}})
	a, b, c := testenv.NewContainer(t, "a"), testenv.NewContainer(t, "b"), testenv.NewContainer(t, "c")
	n.MustAdd(t, a)

	var limit, fakes int
	cookie := func(i int) any { return fakeCookie(i) }
	withNode(t, n.PinDir, func(o *node.Objects) {
		limit = int(o.Enroll.MaxEntries())
		if ns := int(o.NsCounters.MaxEntries()); ns != limit {
			t.Fatalf("enroll holds %d netns, ns_counters %d: one entry each per enrolled netns, want the same size", limit, ns)
		}
		// a holds one slot; leave one for b.
		fakes = limit - 2
		fill(t, o.Enroll, fakes, cookie, func(int) any { return &sbpf.AbiSsPolicy{} })
		fill(t, o.NsCounters, fakes, cookie, func(int) any { return &sbpf.AbiSsNsCounters{} })
	})

	n.MustAdd(t, b)
	before := testenv.TakeFootprint(t, n.PinDir, a.Cgroup, b.Cgroup, c.Cgroup)
	_, err := n.Add(t, c)
	ce := wantCNIError(t, fmt.Sprintf("ADD of container %d", limit+1), err, 102, fmt.Sprintf("node limit reached: a node holds at most %d enrolled network namespaces", limit))
	if _, d := testenv.AwaitFootprint(t, before, n.PinDir, a.Cgroup, b.Cgroup, c.Cgroup); d != "" {
		t.Errorf("the refused ADD changed the node: %s", d)
	}
	if err := n.Del(t, c); err != nil {
		t.Errorf("DEL of the refused container: %v", err)
	}
	if err := n.Del(t, b); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	n.MustAdd(t, c)
	sockmapExchange(t, "at the limit", n, c, a, 6200, 1<<20, 6200)

	withNode(t, n.PinDir, func(o *node.Objects) {
		drain(t, o.Enroll, fakes, cookie)
		drain(t, o.NsCounters, fakes, cookie)
	})
	for _, x := range []*testenv.Container{a, c} {
		if err := n.Del(t, x); err != nil {
			t.Errorf("DEL %s: %v", x.ID, err)
		}
	}
	assertNodeEmpty(t, n.PinDir, a, b, c)
	t.Logf("summary: enrolled netns limit %d: container %d added, container %d refused with code %d (%s), node unchanged; its slot reused after a DEL, 1 MiB each way paired",
		limit, limit, limit+1, ce.Code, ce.Details)
}

// TestLimitPairs: the pair map holds 131072 sockets, two per connection.
// With it full, a new connection between enrolled containers stays plain
// TCP, counted as insert failures; with one slot left, one end pairs and
// the other cannot, and both directions stay on TCP; with two, it pairs.
// Every transfer arrives intact.
func TestLimitPairs(t *testing.T) {
	testenv.RequireRoot(t)
	n, a, b := pair(t, map[string]any{"mode": "sockmap"}, "10.246.1.0/24")
	var limit int
	var id ebpf.MapID
	withNode(t, n.PinDir, func(o *node.Objects) { limit, id = int(o.Pairs.MaxEntries()), testenv.MapID(t, o.Pairs) })
	// Fake keys need a socket each (the kernel holds it, and refuses one
	// socket twice in maps with an sk_msg program): connected unix
	// socket pairs, held by helper processes (one process may not hold
	// that many descriptors here), which nothing sends on. The entries
	// go when the helpers do, at cleanup.
	t0 := time.Now()
	filler := testenv.NewContainer(t, "filler") // not enrolled: a place to run the helpers
	var fillers []*testenv.Proc
	per := fillPerHelper(t)
	for from := 0; from < limit; from += per {
		p, err := filler.StartHelper(t, testenv.Helper{Role: "fillpairs", Ready: true,
			Spec: fillSpec{Map: id, From: from, Count: min(per, limit-from)}})
		if err != nil {
			t.Fatal(err)
		}
		fillers = append(fillers, p)
	}
	if got := testenv.MapEntries(t, n.PinDir)["pairs"]; got != limit {
		t.Fatalf("pair map holds %d entries after filling, want %d", got, limit)
	}
	t.Logf("filled the pair map with %d sockets held by %d processes in %v", limit, len(fillers), time.Since(t0).Round(time.Millisecond))
	var figures []string
	for free := 0; free <= 2; free++ {
		if free > 0 {
			withNode(t, n.PinDir, func(o *node.Objects) {
				if err := o.Pairs.Delete(pairKey(limit - free)); err != nil {
					t.Fatal(err)
				}
			})
		}
		m := n.Meter(t, a, b)
		port := uint16(6210 + free)
		exchange(t, b, a, netip.AddrPortFrom(b.IP(n), port), 1<<20, uint64(port), 0)
		d, v := m.Counters(), m.VethBytes()
		switch free {
		case 2:
			wantSockmap(t, "two slots free", d, 2, 2<<20)
		default:
			if d.Paired != uint64(free) || d.InsertFailures != uint64(2-free) || d.RedirectBytes != 0 || v[0] < 2<<20 {
				t.Errorf("%d slots free: paired +%d, insert failures +%d, redirected +%d B, veth carried %d B; want %d, %d, 0 and the payload",
					free, d.Paired, d.InsertFailures, d.RedirectBytes, v[0], free, 2-free)
			}
		}
		figures = append(figures, fmt.Sprintf("%d free: paired +%d, insert failures +%d, lookup misses +%d, redirected %d B, veth %d B",
			free, d.Paired, d.InsertFailures, d.LookupMiss, d.RedirectBytes, v[0]))
		waitPairs(t, n.PinDir, limit-free)
	}

	// The kernel drops a socket's entries as it closes.
	for _, p := range fillers {
		p.Kill()
		p.Wait()
	}
	waitPairs(t, n.PinDir, 0)
	t.Logf("summary: pair map limit %d sockets (%d connections); 1 MiB each way intact each time: %s; empty again once the fake entries' sockets closed",
		limit, limit/2, strings.Join(figures, "; "))
}

// waitPairs waits until the pair map holds want entries: the sockets of a
// finished transfer leave it as they close.
func waitPairs(t *testing.T, pinDir string, want int) {
	t.Helper()
	var got int
	for range 100 {
		if got = testenv.MapEntries(t, pinDir)["pairs"]; got == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("pair map holds %d entries after the transfer, want %d", got, want)
}
