// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/socksplice/socksplice/test/testenv"
)

// stormContainers (per round, the traffic pairs included) and whether
// SOCKSPLICE_SOAK repeats rounds depend on where the test runs: see
// storm_host_test.go and storm_vm_test.go.
const (
	stormParallel = 8 // ADD, DEL and CHECK at once
	stormXfer     = 1 << 20
)

// TestStorm runs 200 containers (40 in the test VM) through the real
// bridge, host-local and socksplice plugins (libcni, mode sockmap,
// cgroupPath): ADD, CHECK, DEL and re-ADD, 8 at a time, GC every 50 ms
// between them, while two pairs of containers exchange data through the
// fast path. A fifth of the containers die without DEL (netns deleted,
// left out of GC's valid list), as when a runtime loses them: GC must
// reclaim those and no other. Afterwards every live container passes CHECK, the node holds
// exactly one enrollment, address pair, counters entry, link pin, BPF
// link and cgroup attachment per live container, and once they are all
// deleted its footprint (pins, links, map entries, cgroup attachments,
// this process's open descriptors, sockets in the pair map) is what it
// was before the storm. The transfers arrive intact and the counters say
// the sockmap engine carried every byte of them.
//
// SOCKSPLICE_SOAK (a duration; any other value means 10m) repeats the
// round with fresh containers until that much time has passed, the
// traffic pairs staying up throughout (on the host only).
func TestStorm(t *testing.T) {
	testenv.RequireRoot(t)
	var soak time.Duration
	if v := os.Getenv("SOCKSPLICE_SOAK"); v != "" && stormSoaks {
		var err error
		if soak, err = time.ParseDuration(v); err != nil {
			soak = 10 * time.Minute
		}
	}
	n := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.240.0.0/22", PinDir: testenv.PinDir(t),
		Plugin: map[string]any{"mode": "sockmap"}})

	// The node's objects load with the first ADD and stay: the baseline
	// is a node that has had a container and lost it again.
	warm := testenv.NewContainer(t, "warm")
	n.MustAdd(t, warm)
	if err := n.Del(t, warm); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	base := testenv.TakeFootprint(t, n.PinDir)
	t.Logf("baseline: %s", base)

	// The traffic pairs stay up through every round.
	tr := make([]*testenv.Container, 4)
	for i := range tr {
		tr[i] = testenv.NewContainer(t, fmt.Sprintf("tr%d", i))
		n.MustAdd(t, tr[i])
	}
	s := &storm{n: n, valid: map[types.GCAttachment]bool{}}
	for _, c := range tr {
		s.valid[gcID(c)] = true
	}

	start := time.Now()
	var total stormFigures
	for round := 1; ; round++ {
		var f stormFigures
		if soak == 0 {
			f = s.round(t, tr, base)
		} else if err := testenv.Try(t, fmt.Sprintf("storm round %d", round), func(t testenv.T) { f = s.round(t, tr, base) }); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		total.add(f)
		if soak == 0 || time.Since(start) > soak {
			break
		}
		t.Logf("round %d: %s", round, f)
	}
	for _, c := range tr {
		if err := n.Del(t, c); err != nil {
			t.Errorf("DEL %s: %v", c.ID, err)
		}
	}
	if err := s.gc(); err != nil {
		t.Errorf("GC: %v", err)
	}
	after, d := testenv.AwaitFootprint(t, base, n.PinDir)
	if d != "" {
		t.Errorf("after every container was deleted the node's footprint differs from the baseline: %s", d)
	}
	ports, leases := bridgePorts(t, n, 0), leaseCount(t, n)
	if ports != 0 || leases != 0 {
		t.Errorf("after every container was deleted: %d bridge ports, %d host-local leases; want none", ports, leases)
	}
	t.Logf("summary: storm of %s in %v; afterwards %s (baseline %s), bridge ports %d, leases %d",
		total, time.Since(start).Round(time.Second), after, base, ports, leases)
}

// storm is the runtime's view of a network under churn.
type storm struct {
	n     *testenv.Network
	mu    sync.Mutex
	valid map[types.GCAttachment]bool // what the runtime knows: GC keeps these
	// exclusive keeps GC apart from ADD and DEL, as the CNI spec asks of
	// runtimes (SPEC.md, Lifecycle & Ordering: "no add or delete
	// operations are in progress before executing gc"); they run
	// between GC runs, many at once.
	exclusive sync.RWMutex
}

func gcID(c *testenv.Container) types.GCAttachment {
	return types.GCAttachment{ContainerID: c.ID, IfName: "eth0"}
}

func (s *storm) know(c *testenv.Container, known bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if known {
		s.valid[gcID(c)] = true
	} else {
		delete(s.valid, gcID(c))
	}
}

// gc runs GC with what the runtime knows: libcni deletes the cached
// attachments left out, then each plugin runs its own GC.
func (s *storm) gc() error {
	s.exclusive.Lock()
	defer s.exclusive.Unlock()
	s.mu.Lock()
	keep := make([]types.GCAttachment, 0, len(s.valid))
	for a := range s.valid {
		keep = append(keep, a)
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return s.n.CNI.GCNetworkList(ctx, s.n.List, &libcni.GCArgs{ValidAttachments: keep})
}

// stormFigures are what one or more rounds did.
type stormFigures struct {
	Containers, Adds, Dels, Checks, Died, GCs int
	Xfers                                     int
	Paired, Redirected                        uint64
	Peak                                      int // containers alive at once (ADDed, not yet deleted or dead), at most
	Took                                      time.Duration
	AddTimes, DelTimes                        []time.Duration // each ADD and DEL of the chain (bridge, host-local, socksplice)
}

func (f *stormFigures) add(g stormFigures) {
	f.Containers += g.Containers
	f.Adds += g.Adds
	f.Dels += g.Dels
	f.Checks += g.Checks
	f.Died += g.Died
	f.GCs += g.GCs
	f.Xfers += g.Xfers
	f.Paired += g.Paired
	f.Redirected += g.Redirected
	f.Peak = max(f.Peak, g.Peak)
	f.Took += g.Took
	f.AddTimes = append(f.AddTimes, g.AddTimes...)
	f.DelTimes = append(f.DelTimes, g.DelTimes...)
}

// quantiles gives the median, 99th percentile and maximum of ds.
func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	ds = slices.Sorted(slices.Values(ds))
	q := func(p float64) time.Duration {
		return ds[min(len(ds)-1, int(p*float64(len(ds))))].Round(time.Millisecond)
	}
	return fmt.Sprintf("p50 %v p99 %v max %v", q(0.5), q(0.99), ds[len(ds)-1].Round(time.Millisecond))
}

func (f stormFigures) String() string {
	return fmt.Sprintf("%d containers (at most %d alive at once): %d ADD (%s), %d DEL (%s), %d CHECK, %d died without DEL, %d GC runs, in %v, %d at a time; "+
		"meanwhile %d transfers of %d KiB each way intact, sockets paired +%d, redirected +%d B",
		f.Containers, f.Peak, f.Adds, quantiles(f.AddTimes), f.Dels, quantiles(f.DelTimes), f.Checks, f.Died, f.GCs,
		f.Took.Round(time.Millisecond), stormParallel, f.Xfers, stormXfer>>10, f.Paired, f.Redirected)
}

// The fates of the storm's containers, by index.
const (
	fateKeep  = iota // ADD, CHECK; alive at the end
	fateDel          // ADD, DEL
	fateReAdd        // ADD, DEL, ADD; alive at the end
	fateDie          // ADD, then its netns goes without DEL: GC reclaims it
	fateChurn        // ADD, CHECK, DEL, ADD, DEL
	fates
)

// round creates the storm's containers, runs their fates 8 at a time with
// GC in a loop and traffic between the pairs in tr, checks the node
// against the containers left alive, deletes them and checks the node
// against base. It fails t (which may be a Try runner) on the first
// finding.
func (s *storm) round(t testenv.T, tr []*testenv.Container, base testenv.Footprint) stormFigures {
	t.Helper()
	n := s.n
	var f stormFigures
	cs := make([]*testenv.Container, stormContainers-len(tr))
	for i := range cs {
		cs[i] = testenv.NewContainer(t, fmt.Sprintf("st%d", i))
	}
	f.Containers = len(cs) + len(tr)
	cgroups := make([]string, 0, len(cs)+len(tr))
	for _, c := range append(slices.Clone(tr), cs...) {
		cgroups = append(cgroups, c.Cgroup)
	}
	m := n.Meter(t)
	start := time.Now()

	var checks, gcs atomic.Int64
	var mu sync.Mutex // errs, enrolled, f.Peak, f.AddTimes, f.DelTimes
	var errs []string
	enrolled := len(tr)
	fail := func(format string, a ...any) {
		mu.Lock()
		errs = append(errs, fmt.Sprintf(format, a...))
		mu.Unlock()
	}
	// took records an ADD's or DEL's time and the number enrolled after it.
	took := func(ds *[]time.Duration, d time.Duration, delta int) {
		mu.Lock()
		*ds = append(*ds, d)
		enrolled += delta
		f.Peak = max(f.Peak, enrolled)
		mu.Unlock()
	}
	add := func(c *testenv.Container) bool {
		s.exclusive.RLock()
		defer s.exclusive.RUnlock()
		s.know(c, true)
		t0 := time.Now()
		if _, err := n.Add(t, c); err != nil {
			fail("ADD %s: %v", c.ID, err)
			return false
		}
		took(&f.AddTimes, time.Since(t0), 1)
		return true
	}
	del := func(c *testenv.Container) bool {
		s.exclusive.RLock()
		defer s.exclusive.RUnlock()
		t0 := time.Now()
		if err := n.Del(t, c); err != nil {
			fail("DEL %s: %v", c.ID, err)
			return false
		}
		took(&f.DelTimes, time.Since(t0), -1)
		s.know(c, false)
		return true
	}
	check := func(c *testenv.Container) bool {
		checks.Add(1)
		if err := n.Socksplice(t, "CHECK", c, nil); err != nil {
			fail("CHECK %s: %v", c.ID, err)
			return false
		}
		return true
	}
	var died []*testenv.Container
	jobs := make(chan int)
	var workers sync.WaitGroup
	for range stormParallel {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range jobs {
				c := cs[i]
				switch i % fates {
				case fateKeep:
					_ = add(c) && check(c)
				case fateDel:
					_ = add(c) && del(c)
				case fateReAdd:
					_ = add(c) && del(c) && add(c)
				case fateDie:
					if !add(c) {
						break
					}
					if err := c.RemoveNetns(); err != nil {
						fail("%v", err)
						break
					}
					mu.Lock()
					died = append(died, c)
					enrolled--
					mu.Unlock()
					s.know(c, false)
				case fateChurn:
					_ = add(c) && check(c) && del(c) && add(c) && del(c)
				}
			}
		}()
	}
	stopGC := make(chan struct{})
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		for {
			select {
			case <-stopGC:
				return
			case <-time.After(50 * time.Millisecond):
			}
			gcs.Add(1)
			if err := s.gc(); err != nil {
				fail("GC: %v", err)
			}
		}
	}()
	go func() {
		for i := range cs {
			jobs <- i
		}
		close(jobs)
	}()
	stormDone := make(chan struct{})
	go func() { workers.Wait(); close(stormDone) }()

	// Traffic between the pairs for as long as the storm lasts.
	for k := 0; ; k++ {
		srv, cli := tr[2*(k%2)], tr[2*(k%2)+1]
		addr := netip.AddrPortFrom(srv.IP(n), uint16(7000+k%2))
		seed := uint64(9000 + 2*k)
		if _, _, err := testenv.Exchange(t, srv, cli,
			testenv.Xfer{Role: "server", Addr: addr.String(), Bytes: stormXfer, Seed: seed},
			testenv.Xfer{Role: "client", Addr: addr.String(), Bytes: stormXfer, Seed: seed + 1}); err != nil {
			fail("transfer %d %s->%s: %v", k, cli.ID, srv.ID, err)
		}
		f.Xfers++
		select {
		case <-stormDone:
		case <-time.After(100 * time.Millisecond): // CPU for the storm
			continue
		}
		break
	}
	close(stopGC)
	<-gcDone
	f.Took = time.Since(start)
	// The containers that died since GC last ran are reclaimed now.
	gcs.Add(1)
	if err := s.gc(); err != nil {
		fail("GC: %v", err)
	}
	f.Adds, f.Dels, f.Checks, f.GCs, f.Died = len(f.AddTimes), len(f.DelTimes), int(checks.Load()), int(gcs.Load()), len(died)
	if len(errs) > 0 {
		t.Fatalf("%d failures in the storm, the first: %s", len(errs), errs[0])
	}
	d := m.Counters()
	f.Paired, f.Redirected = d.Paired, d.RedirectBytes
	if want := uint64(f.Xfers) * 2; d.Paired != want || d.RedirectBytes != want*stormXfer || d.InsertFailures != 0 {
		t.Errorf("%d transfers: paired +%d sockets, redirected +%d B, insert failures +%d; want %d, %d and 0",
			f.Xfers, d.Paired, d.RedirectBytes, d.InsertFailures, want, want*stormXfer)
	}

	// Alive now: the traffic pairs, and the storm's keep and re-ADD
	// fates. Each passes CHECK (GC left it alone) and holds exactly its
	// own share of the node.
	live := slices.Clone(tr)
	for i, c := range cs {
		if i%fates == fateKeep || i%fates == fateReAdd {
			live = append(live, c)
		}
	}
	parallel(live, func(c *testenv.Container) { check(c) })
	if len(errs) > 0 {
		t.Fatalf("after the storm: %d of %d live containers fail CHECK, the first: %s", len(errs), len(live), errs[0])
	}
	k := len(live)
	want := testenv.Footprint{Pins: base.Pins + k, Links: base.Links + k, CgroupProgs: base.CgroupProgs + k, FDs: base.FDs,
		Maps: map[string]int{"pairs": 0, "enroll": k, "localAddrs": k, "domainAddrs": k, "attach": k, "nsCounters": k}}
	if _, d := testenv.AwaitFootprint(t, want, n.PinDir, cgroups...); d != "" {
		t.Errorf("with %d containers alive the node's footprint is not the baseline's plus one share each: %s", k, d)
	}
	if ports, leases := bridgePorts(t, n, k), leaseCount(t, n); ports != k || leases != k {
		t.Errorf("with %d containers alive: %d bridge ports, %d leases", k, ports, leases)
	}

	// Teardown: DEL every storm container still alive, 8 at a time.
	parallel(live[len(tr):], func(c *testenv.Container) { del(c) })
	if len(errs) > 0 {
		t.Fatalf("teardown: %s", errs[0])
	}
	want = testenv.Footprint{Pins: base.Pins + len(tr), Links: base.Links + len(tr), CgroupProgs: base.CgroupProgs + len(tr),
		FDs: base.FDs, Maps: map[string]int{"pairs": 0, "enroll": len(tr), "localAddrs": len(tr), "domainAddrs": len(tr),
			"attach": len(tr), "nsCounters": len(tr)}}
	if _, d := testenv.AwaitFootprint(t, want, n.PinDir, cgroups...); d != "" {
		t.Errorf("after the storm's containers were deleted, with the %d traffic containers left: %s", len(tr), d)
	}
	t.Logf("round: %s; footprint with %d alive: as expected", f, k)
	return f
}

// parallel runs fn on each container, stormParallel at a time.
func parallel(cs []*testenv.Container, fn func(*testenv.Container)) {
	sem := make(chan struct{}, stormParallel)
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(c)
		}()
	}
	wg.Wait()
}

// bridgePorts counts the ports of n's bridge, after giving the veths of
// deleted netns a few seconds to go (the kernel tears a netns down in the
// background).
func bridgePorts(t testenv.T, n *testenv.Network, want int) int {
	t.Helper()
	var ents []os.DirEntry
	for i := 0; i < 50; i++ {
		var err error
		if ents, err = os.ReadDir(filepath.Join("/sys/class/net", n.Bridge, "brif")); err != nil {
			t.Fatalf("ports of bridge %s: %v", n.Bridge, err)
		}
		if len(ents) <= want {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return len(ents)
}

// leaseCount counts the addresses host-local has handed out in n.
func leaseCount(t testenv.T, n *testenv.Network) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(ipamDataDir(t, n), n.Name))
	if err != nil {
		t.Fatal(err)
	}
	k := 0
	for _, e := range ents {
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			k++
		}
	}
	return k
}
