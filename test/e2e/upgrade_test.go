// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/test/testenv"
)

// Issue 16, item 4: upgrade under traffic, sockmap engine (the splice
// engine's run is in splice_upgrade_test.go, in the VM).
func TestUpgradeUnderTraffic(t *testing.T) {
	testenv.RequireRoot(t)
	upgradeUnderTraffic(t, map[string]any{"mode": "sockmap"}, 247)
}

// variantChanges is what each plugin variant (testenv.Variants) changes
// against this tree's build, and so what an upgrade to it must do: the
// maps it must replace (the others it must reuse, entries and all), and
// whether every program's code differs (else only the maps they use).
var variantChanges = map[string]struct {
	maps    []string
	newCode bool
}{
	"program": {nil, true},
	"layout":  {[]string{"holds", "pairs"}, false}, // both sized SS_PAIR_SLOTS
}

// upgradeUnderTraffic runs, for each plugin variant, an upgrade from this
// tree's build to the variant and a downgrade back, each while streams
// run through the fast path (see step), on a network with plugin's
// config; subnets 10.octet.N.0/24.
func upgradeUnderTraffic(t *testing.T, plugin map[string]any, octet int) {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enabling BPF run counts (BPF_ENABLE_STATS): %v", err)
	}
	t.Cleanup(func() { stats.Close() })
	names := make([]string, 0, len(testenv.Variants))
	for n := range testenv.Variants {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, name := range names {
		t.Run(name, func(t *testing.T) {
			want, ok := variantChanges[name]
			if !ok {
				t.Fatalf("variant %s: say in variantChanges what it changes", name)
			}
			base, variant := testenv.PluginBinary(t), testenv.PluginVariant(t, name)
			dir := testenv.PluginDir(t, base)
			n := testenv.NewNetwork(t, testenv.NetOpts{Subnet: fmt.Sprintf("10.%d.%d.0/24", octet, i),
				PinDir: testenv.PinDir(t), Plugin: plugin})
			n.UsePluginDir(dir)
			a, b := testenv.NewContainer(t, "a"), testenv.NewContainer(t, "b")
			n.MustAdd(t, a)
			n.MustAdd(t, b)
			u := &upgrade{net: n, pluginDir: dir, a: a, b: b, splice: plugin["mode"] == "splice",
				maps: want.maps, newCode: want.newCode}
			u.step(t, "upgrade to "+name, variant, 1)
			u.step(t, "downgrade from "+name, base, 2)
		})
	}
}

// The streams write at most 256 KiB every streamPace, so that they keep
// moving through the upgrade without starving the plugin's ADD of CPU
// (the VM emulates every instruction); each new connection exchanges
// this many bytes each way.
const (
	streamPace = 20 * time.Millisecond
	exchanged  = 1 << 20
)

type upgrade struct {
	net       *testenv.Network
	pluginDir string
	a, b      *testenv.Container
	splice    bool
	maps      []string // the maps each step must replace
	newCode   bool     // each step's programs have other code (tags)
}

// nodeObjects are the programs and maps pinned under a pin directory,
// by pin name.
type nodeObjects struct {
	progs map[string]progObj
	maps  map[string]ebpf.MapID
}

type progObj struct {
	id  ebpf.ProgramID
	tag string
}

func pinnedObjects(t *testing.T, pinDir string) nodeObjects {
	t.Helper()
	o := nodeObjects{progs: map[string]progObj{}, maps: map[string]ebpf.MapID{}}
	for _, name := range dirEntries(t, filepath.Join(pinDir, node.ProgsDir)) {
		p, err := ebpf.LoadPinnedProgram(filepath.Join(pinDir, node.ProgsDir, name), nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := p.Info()
		p.Close()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		o.progs[name] = progObj{id, info.Tag}
	}
	for _, name := range dirEntries(t, filepath.Join(pinDir, node.MapsDir)) {
		m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, node.MapsDir, name), nil)
		if err != nil {
			t.Fatal(err)
		}
		o.maps[name] = testenv.MapID(t, m)
		m.Close()
	}
	return o
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// liveObjects enumerates the IDs of every program and map in the kernel,
// as bpftool prog/map show does.
func liveObjects(t *testing.T) (map[ebpf.ProgramID]bool, map[ebpf.MapID]bool) {
	t.Helper()
	return enumerate(t, "programs", ebpf.ProgramGetNextID), enumerate(t, "maps", ebpf.MapGetNextID)
}

func enumerate[I ~uint32](t *testing.T, what string, next func(I) (I, error)) map[I]bool {
	t.Helper()
	ids := map[I]bool{}
	for id := I(0); ; {
		n, err := next(id)
		if errors.Is(err, os.ErrNotExist) {
			return ids
		}
		if err != nil {
			t.Fatalf("enumerating %s: %v", what, err)
		}
		ids[n], id = true, n
	}
}

// alive returns which of objs's programs and which of its maps in
// replaced are still in the kernel, as "name#id".
func alive(t *testing.T, objs nodeObjects, replaced []string) []string {
	t.Helper()
	progs, maps := liveObjects(t)
	var out []string
	for name, p := range objs.progs {
		if progs[p.id] {
			out = append(out, fmt.Sprintf("program %s#%d", name, p.id))
		}
	}
	for _, name := range replaced {
		if maps[objs.maps[name]] {
			out = append(out, fmt.Sprintf("map %s#%d", name, objs.maps[name]))
		}
	}
	sort.Strings(out)
	return out
}

// runCount is how often the program ran since the test enabled the
// kernel's BPF statistics; 0 once it is gone.
func runCount(t *testing.T, id ebpf.ProgramID) uint64 {
	t.Helper()
	p, err := ebpf.NewProgramFromID(id)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s.RunCount
}

// step installs bin over the running plugin while two streams run
// between a and b (client in a) through the fast path, and checks:
//   - the ADD of a new container with bin replaces every program (new IDs;
//     new tags where the code changed), keeps every map whose layout
//     stayed and replaces the others;
//   - new connections (new container to a, and a new one between a and b)
//     are paired by the new programs: the new programs ran, the old
//     sock_ops programs are gone;
//   - the streams, which span the upgrade, lose no byte either way (sha256
//     of what each end sent against what the other received), stay on the
//     fast path (the veths carry < 1% of what moved) and, on the sockmap
//     engine, keep running their old sk_msg program after the upgrade;
//   - every old program and every replaced map is gone once its last user
//     is: at the upgrade, or when the last stream closed.
func (u *upgrade) step(t *testing.T, what, bin string, seq int) {
	t.Helper()
	n := u.net
	before := pinnedObjects(t, n.PinDir)
	veth0 := testenv.VethBytes(t, u.a.HostVeth(n)) + testenv.VethBytes(t, u.b.HostVeth(n))

	// The streams: two from a client in a to a server in b, each end
	// sending until Stop.
	sm := n.Meter(t)
	addrs := []string{netip.AddrPortFrom(u.b.IP(n), uint16(6000+10*seq)).String(),
		netip.AddrPortFrom(u.b.IP(n), uint16(6001+10*seq)).String()}
	streams := testenv.StartStreams(t, u.b, u.a, addrs, uint64(1600+10*seq), streamPace)
	var d testenv.Counters
	waitFor(t, 10*time.Second, "", func() bool {
		d = sm.Counters()
		if u.splice {
			return d.SplicePaired >= 4
		}
		return d.Paired >= 4 && d.RedirectBytes >= 1<<20
	})
	if !u.splice && (d.Paired < 4 || d.RedirectBytes < 1<<20) || u.splice && d.SplicePaired < 4 {
		t.Fatalf("%s: the streams are not on the fast path 10 s after they started: %+v", what, d)
	}
	oldMsg := before.progs["msg"].id
	msgRuns0 := runCount(t, oldMsg)

	// The upgrade: bin installs itself; the next ADD loads its objects.
	testenv.InstallPlugin(t, u.pluginDir, bin)
	addStart := time.Now()
	c := testenv.NewContainer(t, fmt.Sprintf("c%d", seq))
	n.MustAdd(t, c)
	addTook := time.Since(addStart)
	after := pinnedObjects(t, n.PinDir)
	msgRuns1 := runCount(t, oldMsg)

	var replaced []string
	for name, id := range before.maps {
		if after.maps[name] != id {
			replaced = append(replaced, name)
		}
	}
	sort.Strings(replaced)
	if !slices.Equal(replaced, u.maps) {
		t.Errorf("%s: maps replaced %v, want %v (the others reused)", what, replaced, u.maps)
	}
	if !slices.Equal(sortedKeys(after.maps), sortedKeys(before.maps)) || !slices.Equal(sortedKeys(after.progs), sortedKeys(before.progs)) {
		t.Errorf("%s: pins changed: programs %v, maps %v; before: %v, %v", what,
			sortedKeys(after.progs), sortedKeys(after.maps), sortedKeys(before.progs), sortedKeys(before.maps))
	}
	for name, p := range before.progs {
		q := after.progs[name]
		if q.id == p.id {
			t.Errorf("%s: program %s kept its ID %d: not replaced", what, name, p.id)
		}
		if (q.tag != p.tag) != u.newCode {
			t.Errorf("%s: program %s: tag %s, was %s; want the code changed: %v", what, name, q.tag, p.tag, u.newCode)
		}
	}
	t.Logf("%s: ADD of a new container took %v; programs %v replaced (code changed: %v), maps replaced %v, %d reused",
		what, addTook.Round(time.Millisecond), sortedKeys(before.progs), u.newCode, replaced, len(before.maps)-len(replaced))

	// New connections: the new container to a, and a new one from a to b.
	for _, x := range []struct {
		srv, cli *testenv.Container
		port     uint16
	}{{u.a, c, 6100}, {u.b, u.a, 6101}} {
		m := n.Meter(t, x.cli)
		runs := map[string]uint64{}
		for name, p := range after.progs {
			runs[name] = runCount(t, p.id)
		}
		exchange(t, x.srv, x.cli, netip.AddrPortFrom(x.srv.IP(n), x.port+uint16(10*seq)), exchanged, uint64(1700+10*seq)+uint64(x.port), 0)
		d, v := m.Counters(), m.VethBytes()
		engineProg := "sockops"
		if u.splice {
			engineProg = "splice"
			if d.SplicePaired < 2 {
				t.Errorf("%s: new connection %s->%s: splice paired +%d, want 2", what, x.cli.ID, x.srv.ID, d.SplicePaired)
			}
		} else {
			// The streams redirect meanwhile: the network's counters
			// hold at least this connection's bytes.
			if d.Paired < 2 || d.RedirectBytes < 2*exchanged {
				t.Errorf("%s: new connection %s->%s: paired +%d, redirected +%d B; want >= 2 and >= %d B", what, x.cli.ID, x.srv.ID, d.Paired, d.RedirectBytes, 2*exchanged)
			}
			if got := runCount(t, after.progs["msg"].id) - runs["msg"]; got == 0 {
				t.Errorf("%s: new connection %s->%s: the new sk_msg program never ran", what, x.cli.ID, x.srv.ID)
			}
		}
		if v[0]*100 >= 2*exchanged {
			t.Errorf("%s: new connection %s->%s: %s's veth carried %d B of the %d B exchanged: not the fast path", what, x.cli.ID, x.srv.ID, x.cli.ID, v[0], 2*exchanged)
		}
		if got := runCount(t, after.progs[engineProg].id) - runs[engineProg]; got < 2 {
			t.Errorf("%s: new connection %s->%s: the new %s program ran %d times, want >= 2 (both ends' ESTABLISHED)", what, x.cli.ID, x.srv.ID, engineProg, got)
		}
	}
	// Links and pins were the old sock_ops programs' only users.
	progs, _ := liveObjects(t)
	for _, name := range []string{"sockops", "splice"} {
		if p, ok := before.progs[name]; ok && progs[p.id] {
			t.Errorf("%s: the old %s program #%d is still in the kernel after every link moved to the new one", what, name, p.id)
		}
	}
	atUpgrade := alive(t, before, replaced)

	// The streams end: every byte each end sent arrived, in order.
	time.Sleep(300 * time.Millisecond)
	msgRuns2 := runCount(t, oldMsg)
	moved, lines, err := streams.Stop()
	if err != nil {
		t.Errorf("%s: the streams across the upgrade: %v", what, err)
	}
	t.Logf("%s: streams: %s", what, strings.Join(lines, "; "))
	veth := testenv.VethBytes(t, u.a.HostVeth(n)) + testenv.VethBytes(t, u.b.HostVeth(n)) - veth0
	moved += 4 * exchanged
	if veth*100 >= uint64(moved) {
		t.Errorf("%s: the veths of a and b carried %d B of %d B moved: not the fast path", what, veth, moved)
	}
	if !u.splice && msgRuns2 <= msgRuns1 {
		t.Errorf("%s: the old sk_msg program #%d did not run after the upgrade (%d runs then, %d later): the streams did not move on their old pairing", what, oldMsg, msgRuns1, msgRuns2)
	}

	// The old objects go with their last user.
	var left []string
	closed := time.Now()
	waitFor(t, 5*time.Second, "", func() bool {
		left = alive(t, before, replaced)
		return len(left) == 0
	})
	if len(left) > 0 {
		t.Errorf("%s: still in the kernel 5 s after the last old stream closed: %v", what, left)
	}
	carried := "the module carried them" // its pairs hold no program
	if !u.splice {
		carried = fmt.Sprintf("their old sk_msg program ran %d times before the upgrade, %d after", msgRuns1-msgRuns0, msgRuns2-msgRuns1)
	}
	t.Logf("summary: %s under traffic: 2 streams across it, %d B moved in all, veths %d B, every byte intact both ways, %s; "+
		"new connections paired by the new programs; of the old %d programs and %d replaced maps, alive after the upgrade %v, "+
		"%d left %v after the last old stream closed", what, moved, veth, carried, len(before.progs), len(replaced), atUpgrade,
		len(left), time.Since(closed).Round(10*time.Millisecond))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// waitFor polls cond every 50 ms for up to d; with a what, it fails the
// test when cond never held.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(end) {
			if what != "" {
				t.Fatalf("waited %v for %s", d, what)
			}
			return
		}
	}
}
