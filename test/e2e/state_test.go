// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

// A node's whole socksplice state as lines that do not depend on the run,
// so that the state after a fault can be compared with a clean run's line
// by line: containers by role (X, Y), their netns cookies and addresses
// by their container's role, programs by name, link pins by the role they
// belong to.

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/counters"
	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/pkg/enroll"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/test/testenv"
)

// stateView reads one network's node state under role names.
type stateView struct {
	n       *testenv.Network
	roles   map[string]*testenv.Container
	cookies map[uint64]string     // netns cookie -> role, learnt while the netns lives
	addrs   map[netip.Addr]string // address -> role of the container that had it
	strays  map[string]bool       // self-test cgroups of dead plugins before the view
}

func newStateView(t *testing.T, n *testenv.Network, roles map[string]*testenv.Container) *stateView {
	t.Helper()
	v := &stateView{n: n, roles: roles, cookies: map[uint64]string{}, addrs: map[netip.Addr]string{}, strays: map[string]bool{}}
	for _, d := range straySelfTestCgroups(t) {
		v.strays[d] = true
	}
	v.learn(t)
	return v
}

// learn notes the cookie and eth0 addresses of each container whose netns
// still exists; they keep their role after it is gone.
func (v *stateView) learn(t *testing.T) {
	t.Helper()
	for role, c := range v.roles {
		if ip := c.IP(v.n); ip.IsValid() {
			v.addrs[ip] = role
		}
		if _, err := os.Stat(c.Netns); err != nil {
			continue
		}
		if ck, err := enroll.NetnsCookie(c.Netns); err == nil {
			v.cookies[ck] = role
		}
		out, err := exec.Command("ip", "-n", c.NetnsName, "-j", "addr", "show").Output()
		if err != nil {
			t.Fatalf("addresses in %s: %v", c.NetnsName, err)
		}
		var links []struct {
			AddrInfo []struct {
				Local string `json:"local"`
			} `json:"addr_info"`
		}
		if err := json.Unmarshal(out, &links); err != nil {
			t.Fatalf("addresses in %s: %v %s", c.NetnsName, err, out)
		}
		for _, l := range links {
			for _, a := range l.AddrInfo {
				if ad, err := netip.ParseAddr(a.Local); err == nil && !ad.IsLoopback() {
					v.addrs[ad] = role
				}
			}
		}
	}
}

func (v *stateView) cookie(ck uint64) string {
	if r, ok := v.cookies[ck]; ok {
		return r
	}
	return fmt.Sprintf("?netns=%d", ck)
}

func (v *stateView) addr(a netip.Addr) string {
	if r, ok := v.addrs[a.Unmap()]; ok {
		return r + ".addr"
	}
	return "?addr=" + a.String()
}

func (v *stateView) network(name string) string {
	switch name {
	case v.n.Name:
		return "net"
	case counters.SelfTest:
		return "(self-test)"
	}
	return "?network=" + name
}

func (v *stateView) container(id string) string {
	for role, c := range v.roles {
		if c.ID == id {
			return role
		}
	}
	return "?container=" + id
}

// wordsAddr undoes enroll's addrWords (network order in native words).
func wordsAddr(w [4]uint32) netip.Addr {
	var b [16]byte
	for i, x := range w {
		b[i*4], b[i*4+1], b[i*4+2], b[i*4+3] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
	}
	return netip.AddrFrom16(b).Unmap()
}

// state returns the node's state, sorted: the pins; the stamp and verdicts;
// the attachment records; the enrollment, address, counters and pair
// maps; the self-test marker; the programs attached to each container's
// cgroup and ours at the cgroup root; self-test cgroups of dead plugins;
// and what `socksplice status` prints of the attachments and networks.
func (v *stateView) state(t *testing.T) []string {
	t.Helper()
	v.learn(t)
	var out []string
	add := func(f string, a ...any) { out = append(out, fmt.Sprintf(f, a...)) }

	keys := map[string]string{}
	for role, c := range v.roles {
		keys[hexKey(enroll.RecordKey(v.n.Name, c.ID, "eth0"))] = role
	}
	err := filepath.WalkDir(v.n.PinDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(v.n.PinDir, p)
		dir, name := filepath.Split(rel)
		if r, ok := keys[name]; ok && dir == node.ContainersDir+"/" {
			name = "<" + r + ">"
		}
		add("pin %s%s", dir, name)
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		add("no pinDir")
	} else if err != nil {
		t.Fatalf("listing %s: %v", v.n.PinDir, err)
	}

	progs := map[ebpf.ProgramID]string{}
	o, err := node.Open(v.n.PinDir)
	switch {
	case errors.Is(err, node.ErrNotLoaded):
		add("objects not loaded")
	case err != nil:
		add("objects unreadable: %v", err)
	default:
		out = append(out, v.objects(t, o, progs)...)
		o.Close()
	}

	for role, c := range v.roles {
		ids, err := cgroup.AttachedIDs(c.Cgroup)
		if errors.Is(err, os.ErrNotExist) {
			add("cgroup %s gone", role)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, id := range ids {
			names = append(names, progName(id, progs))
		}
		slices.Sort(names)
		add("cgroup %s runs %v", role, names)
	}
	if ids, err := cgroup.AttachedIDs(testenv.CgroupRoot(t)); err == nil {
		for _, id := range ids {
			if p, ok := progs[id]; ok {
				add("cgroup root runs our %s", p)
			}
		}
	}
	for _, d := range straySelfTestCgroups(t) {
		if !v.strays[d] {
			add("self-test cgroup of a dead plugin: %s", d)
		}
	}
	out = append(out, v.status(t)...)
	slices.Sort(out)
	return out
}

// hexKey names a record key as the link pins do.
func hexKey(k [32]byte) string { return hex.EncodeToString(k[:]) }

func progName(id ebpf.ProgramID, ours map[ebpf.ProgramID]string) string {
	if p, ok := ours[id]; ok {
		return p
	}
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return fmt.Sprintf("?prog=%d", id)
	}
	defer p.Close()
	info, _ := p.Info()
	return "other:" + info.Name
}

func (v *stateView) objects(t *testing.T, o *node.Objects, progs map[ebpf.ProgramID]string) []string {
	t.Helper()
	var out []string
	add := func(f string, a ...any) { out = append(out, fmt.Sprintf(f, a...)) }
	for name, p := range map[string]*ebpf.Program{"sockops": o.SockOps, "msg": o.Msg, "splice": o.Splice} {
		if p != nil {
			progs[testenv.ProgID(t, p)] = name
		}
	}
	meta, err := o.ReadMeta()
	if err != nil {
		t.Fatal(err)
	}
	add("stamp current=%v", meta.Stamp == node.Stamp())
	var vd engine.Verdicts
	if err := o.GetMeta(node.MetaEngine, &vd); err != nil {
		t.Fatal(err)
	}
	for eng, st := range map[string]*engine.SelfTest{"sockmap": vd.SelfTest, "splice": vd.SpliceTest} {
		if st != nil {
			add("verdict %s: %s", eng, st.Engine)
		}
	}
	add("notices told: %d", len(vd.Noticed))

	recs, err := enroll.Records(o)
	if err != nil {
		t.Fatal(err)
	}
	domain := ""
	for key, r := range recs {
		nw, cid, ifn, ok := r.Identity(key)
		if !ok {
			add("record without identity")
			continue
		}
		var as []string
		for _, a := range r.AddrList() {
			as = append(as, v.addr(a))
		}
		if nw == v.n.Name {
			domain = strconv.FormatUint(r.Domain, 10)
		}
		add("record %s %s %s: netns %s, engine %s, flags %#x, addrs %v", v.network(nw), v.container(cid), ifn, v.cookie(r.Netns), r.Engine(), r.Flags, as)
	}
	dom := func(d uint64) string {
		if strconv.FormatUint(d, 10) == domain {
			return "net"
		}
		return fmt.Sprintf("?domain=%d", d)
	}

	var ck uint64
	var pol sbpf.AbiSsPolicy
	it := o.Enroll.Iterate()
	for it.Next(&ck, &pol) {
		add("enrolled %s: flags %#x, busy-poll %d us, ring %d KiB, ports %v", v.cookie(ck), pol.Flags, pol.BusyPollUs, pol.RingKib, pol.Ports[:min(int(pol.Nports), len(pol.Ports))])
	}
	var lk sbpf.AbiSsLocalKey
	var d uint64
	it = o.LocalAddrs.Iterate()
	for it.Next(&lk, &d) {
		add("local address %s of %s in domain %s", v.addr(wordsAddr(lk.Addr)), v.cookie(lk.Netns), dom(d))
	}
	var dk sbpf.AbiSsDomainKey
	it = o.DomainAddrs.Iterate()
	for it.Next(&dk, &ck) {
		add("domain %s: %s is %s", dom(dk.Domain), v.addr(wordsAddr(dk.Addr)), v.cookie(ck))
	}
	ns, err := counters.ReadNS(o)
	if err != nil {
		t.Fatal(err)
	}
	for ck, c := range ns {
		add("counters of %s: %s", v.cookie(ck), fmtNS(c))
	}
	retired, err := counters.ReadRetired(o)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range retired {
		if name == counters.SelfTest {
			// A self-test killed with its plugin ran again: its own
			// counts rightly differ from a clean run's.
			add("retired (self-test)")
			continue
		}
		if c != (counters.NS{}) {
			add("retired %s: %s", v.network(name), fmtNS(c))
		}
	}
	if o.SelfTestNetns != nil {
		var mark uint64
		if err := o.SelfTestNetns.Lookup(uint32(0), &mark); err != nil {
			t.Fatal(err)
		}
		if mark != 0 {
			add("self-test marker set: %s", v.cookie(mark))
		}
	}
	add("pairs: %d", testenv.MapEntriesOf(t, o)["pairs"])
	return out
}

// fmtNS lists the counters that are not zero.
func fmtNS(c counters.NS) string {
	var out []string
	for k, n := range c.Fields() {
		if n != 0 {
			out = append(out, fmt.Sprintf("%s=%d", k, n))
		}
	}
	slices.Sort(out)
	return "{" + strings.Join(out, " ") + "}"
}

// openNode opens the pins under dir, failing the test if it cannot.
func openNode(t *testing.T, dir string) *node.Objects {
	t.Helper()
	o, err := node.Open(dir)
	if err != nil {
		t.Fatalf("opening pins %s: %v", dir, err)
	}
	return o
}

// status is what `socksplice status` says of the attachments and networks
// (the node-wide and self-test counters include every self-test run).
func (v *stateView) status(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command(testenv.PluginBinary(t), "status", v.n.PinDir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 && !strings.Contains(stderr.String(), "panic") {
			return []string{"status: fails"}
		}
		t.Fatalf("socksplice status: %v: %s", err, stderr.String())
	}
	var st struct {
		Attachments []struct {
			Network, ContainerID, IfName, Engine string
			Counters                             *counters.NS
		}
		Networks []struct {
			Name        string         `json:"name"`
			Attachments map[string]int `json:"attachments"`
			Counters    counters.NS    `json:"counters"`
		} `json:"networks"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("socksplice status: %v\n%s", err, b)
	}
	var out []string
	for _, a := range st.Attachments {
		c := "none"
		if a.Counters != nil {
			c = fmtNS(*a.Counters)
		}
		out = append(out, fmt.Sprintf("status: attachment %s %s %s engine %s counters %s", v.network(a.Network), v.container(a.ContainerID), a.IfName, a.Engine, c))
	}
	for _, nw := range st.Networks {
		out = append(out, fmt.Sprintf("status: network %s attachments %v counters %s", v.network(nw.Name), nw.Attachments, fmtNS(nw.Counters)))
	}
	return out
}

// straySelfTestCgroups lists the self-test cgroups whose plugin is gone.
func straySelfTestCgroups(t *testing.T) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(testenv.CgroupRoot(t), "socksplice-selftest-*"))
	var out []string
	for _, d := range m {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "socksplice-selftest-"))
		if err == nil && syscall.Kill(pid, 0) == syscall.ESRCH {
			out = append(out, filepath.Base(d))
		}
	}
	return out
}

// diffState says how got differs from want, "" if not at all.
func diffState(want, got []string) string {
	var b strings.Builder
	for _, l := range want {
		if !slices.Contains(got, l) {
			fmt.Fprintf(&b, "\n  missing: %s", l)
		}
	}
	for _, l := range got {
		if !slices.Contains(want, l) {
			fmt.Fprintf(&b, "\n  extra:   %s", l)
		}
	}
	if b.Len() == 0 && len(want) != len(got) {
		fmt.Fprintf(&b, "\n  %d lines, want %d (duplicates)", len(got), len(want))
	}
	return b.String()
}
