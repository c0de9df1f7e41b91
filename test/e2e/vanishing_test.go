// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

// What ADD left can vanish before DEL: an operator removes pinDir or
// unmounts bpffs, the runtime removes the container's netns or cgroup
// first, someone detaches a link by hand. Each command must then give the
// correct answer, never panic, and DEL must succeed.

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/containernetworking/cni/pkg/types"
	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/enroll"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/test/testenv"
)

// vanishing is a network with containers X and Y added (X, Y and
// Z by role in its state view; Z is added later by some tests).
type vanishing struct {
	*faultRun
	z      *testenv.Container
	checks int
}

func newVanishing(t *testing.T, pinDir, mode string, noCgroups bool) *vanishing {
	t.Helper()
	testenv.RequireRoot(t)
	v := &vanishing{faultRun: &faultRun{t: t}}
	v.n = testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.232.0.0/24", PinDir: pinDir, NoCgroups: noCgroups, Plugin: map[string]any{"mode": mode}})
	v.x, v.y, v.z = testenv.NewContainer(t, "x"), testenv.NewContainer(t, "y"), testenv.NewContainer(t, "z")
	v.view = newStateView(t, v.n, map[string]*testenv.Container{"X": v.x, "Y": v.y, "Z": v.z})
	for _, c := range []*testenv.Container{v.x, v.y} {
		if _, err := v.n.Add(t, c); err != nil {
			t.Fatalf("ADD %s: %v", c.ID, err)
		}
	}
	v.view.learn(t)
	return v
}

// wantErr fails unless err is a CNI error with code whose message says
// what.
func (v *vanishing) wantErr(cmd string, err error, code uint, what string) {
	v.t.Helper()
	v.checks++
	var e *types.Error
	if !errors.As(err, &e) || e.Code != code || !strings.Contains(e.Msg+" "+e.Details, what) {
		v.t.Errorf("%s: %v; want CNI error %d saying %q", cmd, err, code, what)
	}
}

// wantOK fails unless err is nil.
func (v *vanishing) wantOK(cmd string, err error) {
	v.t.Helper()
	v.checks++
	if err != nil {
		v.t.Errorf("%s: %v", cmd, err)
	}
}

// answers runs the commands that must answer whatever vanished: GC
// keeping both succeeds, CNI STATUS succeeds or fails with code 50 naming
// statusErr, and `socksplice status` prints the node (exit 0, never a
// panic), saying whether objects are loaded.
func (v *vanishing) answers(loaded bool, statusErr string) {
	v.t.Helper()
	v.wantOK("GC keeping X and Y", v.gc(v.x, v.y))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := v.n.CNI.GetStatusNetworkList(ctx, v.n.List); statusErr == "" {
		v.wantOK("STATUS", err)
	} else {
		v.wantErr("STATUS", err, 50, statusErr)
	}
	out, err := exec.Command(testenv.PluginBinary(v.t), "status", v.n.PinDir).Output()
	var st struct {
		Loaded bool `json:"loaded"`
	}
	if err != nil {
		v.t.Errorf("socksplice status: %v\n%s", err, out)
	} else if err := json.Unmarshal(out, &st); err != nil {
		v.t.Errorf("socksplice status: %v\n%s", err, out)
	} else if st.Loaded != loaded {
		v.t.Errorf("socksplice status: loaded %v, want %v\n%s", st.Loaded, loaded, out)
	}
	v.checks += 2
}

// has fails unless the state has exactly the lines starting with prefix
// that want lists.
func (v *vanishing) has(prefix string, want ...string) {
	v.t.Helper()
	v.checks++
	var got []string
	for _, l := range v.view.state(v.t) {
		if strings.HasPrefix(l, prefix) {
			got = append(got, l)
		}
	}
	if d := diffState(want, got); d != "" {
		v.t.Errorf("state lines %q:%s", prefix, d)
	}
}

// TestVanishingPinDir: pinDir removed between ADD and DEL (as `rm -rf` or
// a reboot without persistent bpffs would). The links go with their pins,
// CHECK says nothing is loaded, DEL succeeds, and the next ADD loads the
// node again.
func TestVanishingPinDir(t *testing.T) {
	v := newVanishing(t, testenv.PinDir(t), "sockmap", false)
	if err := os.RemoveAll(v.n.PinDir); err != nil {
		t.Fatal(err)
	}
	v.has("cgroup ", "cgroup X runs []", "cgroup Y runs []", "cgroup Z runs []")
	v.wantErr("CHECK X", v.check(v.x), 101, "not loaded")
	v.answers(false, "")
	v.wantOK("DEL X", v.n.Del(t, v.x))
	v.wantOK("ADD Z", v.add(v.z))
	v.wantOK("CHECK Z", v.check(v.z))
	v.wantErr("CHECK Y, enrolled in the removed pins", v.check(v.y), 102, "not enrolled")
	v.wantOK("DEL Y", v.n.Del(t, v.y))
	v.has("record ", "record net Z eth0: netns Z, engine sockmap, flags 0x1, addrs [Z.addr]")
	v.has("cgroup ", "cgroup X runs []", "cgroup Y runs []", "cgroup Z runs [sockops]")
	t.Logf("summary: pinDir removed after 2 ADDs: %d answers checked (CHECK 101 not loaded, STATUS, GC, DEL, reload by the next ADD)", v.checks)
}

// TestVanishingBPFFS: the bpffs holding pinDir unmounted between ADD and
// DEL (a private one, mounted for the test: the host's stays). Then the
// pin directory is a plain directory: ADD refuses it before creating
// anything, the others answer, DEL succeeds; a bpffs mounted again there
// starts the node afresh.
func TestVanishingBPFFS(t *testing.T) {
	testenv.RequireRoot(t)
	mnt := filepath.Join(t.TempDir(), "bpf")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	mount := func() {
		if err := unix.Mount("bpffs", mnt, "bpf", 0, "mode=0700"); err != nil {
			t.Skipf("SKIP: cannot mount a private bpffs at %s: %v", mnt, err)
		}
	}
	mount()
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	pinDir := filepath.Join(mnt, "socksplice")
	v := newVanishing(t, pinDir, "sockmap", false)
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatalf("unmounting the test's bpffs: %v", err)
	}
	awaitDetached(t, v.x, v.y)
	v.has("cgroup ", "cgroup X runs []", "cgroup Y runs []", "cgroup Z runs []")
	v.wantErr("CHECK X", v.check(v.x), 101, "not loaded")
	v.answers(false, "not on a bpf filesystem")
	v.wantOK("DEL X", v.n.Del(t, v.x))
	v.wantErr("ADD Z", v.add(v.z), 101, "not on a bpf filesystem")
	if _, err := os.Stat(pinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ADD refused %s, yet it exists (stat: %v)", pinDir, err)
	}
	v.wantOK("DEL Z after its failed ADD", v.n.Del(t, v.z))
	mount()
	v.wantOK("ADD Z on a bpffs mounted again", v.add(v.z))
	v.wantOK("CHECK Z", v.check(v.z))
	v.wantErr("CHECK Y, enrolled in the unmounted pins", v.check(v.y), 102, "not enrolled")
	v.wantOK("DEL Y", v.n.Del(t, v.y))
	v.has("record ", "record net Z eth0: netns Z, engine sockmap, flags 0x1, addrs [Z.addr]")
	v.has("cgroup ", "cgroup X runs []", "cgroup Y runs []", "cgroup Z runs [sockops]")
	t.Logf("summary: bpffs unmounted after 2 ADDs: %d answers checked (links gone with it, CHECK 101, ADD 101 before any side effect, DEL, a fresh node after a new mount)", v.checks)
}

// awaitDetached waits until no program is attached to the cgroups of cs
// (a link goes with its last reference, at most a moment later).
func awaitDetached(t *testing.T, cs ...*testenv.Container) {
	t.Helper()
	for _, c := range cs {
		for i := 0; ; i++ {
			ids, err := cgroup.AttachedIDs(c.Cgroup)
			if err != nil {
				t.Fatal(err)
			}
			if len(ids) == 0 {
				break
			}
			if i == 100 {
				t.Fatalf("cgroup of %s still runs %v 2 s after its link lost its last reference", c.ID, ids)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestVanishingNetns: the runtime removed the container's netns before
// DEL (its veth went with it). CHECK says so, DEL undoes everything by
// what ADD recorded (the netns cookie), and the other containers are
// untouched.
func TestVanishingNetns(t *testing.T) {
	v := newVanishing(t, testenv.PinDir(t), "sockmap", false)
	if err := v.x.RemoveNetns(); err != nil {
		t.Fatal(err)
	}
	v.wantErr("CHECK X", v.check(v.x), 102, "netns")
	v.answers(true, "")
	v.has("record ", "record net X eth0: netns X, engine sockmap, flags 0x1, addrs [X.addr]",
		"record net Y eth0: netns Y, engine sockmap, flags 0x1, addrs [Y.addr]")
	v.wantOK("DEL X", v.n.Del(t, v.x))
	v.wantOK("DEL X again", v.n.Del(t, v.x))
	v.wantOK("ADD Z", v.add(v.z))
	v.wantOK("CHECK Y", v.check(v.y))
	v.wantOK("CHECK Z", v.check(v.z))
	v.has("record ", "record net Y eth0: netns Y, engine sockmap, flags 0x1, addrs [Y.addr]",
		"record net Z eth0: netns Z, engine sockmap, flags 0x1, addrs [Z.addr]")
	v.has("enrolled X")
	v.has("counters of X")
	v.has("local address X")
	v.has("domain net: X")
	v.has("cgroup X", "cgroup X runs []")
	sockmapExchange(t, "Y and Z after X's netns vanished", v.n, v.z, v.y, 5032, 1<<20, 3200)
	t.Logf("summary: netns removed before DEL: %d answers checked (CHECK 102 netns, DEL twice, X's records, enrollment, addresses, counters and link gone, Y and Z pair)", v.checks)
}

// TestVanishingCgroup: the runtime removed the container's cgroup before
// DEL, which detaches its link although the pin stays. CHECK says the
// link is detached; DEL succeeds, also with the netns gone too; and a
// plugin upgrade meanwhile (a new stamp) does not trip over the detached
// link.
func TestVanishingCgroup(t *testing.T) {
	v := newVanishing(t, testenv.PinDir(t), "sockmap", false)
	if err := os.Remove(v.x.Cgroup); err != nil {
		t.Fatal(err)
	}
	v.has("cgroup X", "cgroup X gone")
	v.has("pin containers/", "pin containers/<X>", "pin containers/<Y>")
	awaitDefunct(t, filepath.Join(v.n.PinDir, node.ContainersDir), v.n, v.x)
	v.wantErr("CHECK X", v.check(v.x), 102, "detached")
	v.answers(true, "")

	// An upgrade: the next ADD loads this build's objects again and moves
	// every pinned link to the new programs.
	o := openNode(t, v.n.PinDir)
	if err := o.PutMeta(node.MetaNode, node.Meta{Stamp: "a previous build"}); err != nil {
		t.Fatal(err)
	}
	o.Close()
	v.wantOK("ADD Z, upgrading the node, with X's link detached", v.add(v.z))
	v.wantOK("CHECK Y after the upgrade", v.check(v.y))
	v.wantOK("CHECK Z", v.check(v.z))

	if err := v.x.RemoveNetns(); err != nil {
		t.Fatal(err)
	}
	v.wantOK("DEL X, its cgroup and netns gone", v.n.Del(t, v.x))
	v.has("pin containers/", "pin containers/<Y>", "pin containers/<Z>")
	v.has("record ", "record net Y eth0: netns Y, engine sockmap, flags 0x1, addrs [Y.addr]",
		"record net Z eth0: netns Z, engine sockmap, flags 0x1, addrs [Z.addr]")
	v.has("enrolled X")
	sockmapExchange(t, "Y and Z after X's cgroup vanished", v.n, v.z, v.y, 5033, 1<<20, 3300)
	t.Logf("summary: cgroup removed before DEL: %d answers checked (CHECK 102 detached, an upgrade meanwhile, DEL with cgroup and netns gone, Y and Z pair)", v.checks)
}

// awaitDefunct waits until the link pinned for c's attachment in n is
// detached (a removed cgroup lets go of its links asynchronously).
func awaitDefunct(t *testing.T, dir string, n *testenv.Network, c *testenv.Container) {
	t.Helper()
	k := enroll.RecordKey(n.Name, c.ID, "eth0")
	pin := filepath.Join(dir, hexKey(k))
	for i := 0; ; i++ {
		id, err := cgroup.LinkCgroup(pin)
		if err != nil {
			t.Fatal(err)
		}
		if id == 0 {
			return
		}
		if i == 250 {
			t.Fatalf("link %s still attached to cgroup %d 5 s after the cgroup was removed", pin, id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// detachByHand detaches the link pinned at pin as an operator would with
// `bpftool link detach`: the pin stays, the link runs nothing. It returns
// the link's ID.
func detachByHand(t *testing.T, pin string) link.ID {
	t.Helper()
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Detach(); err != nil {
		t.Fatalf("detaching %s: %v", pin, err)
	}
	return testenv.PinnedLink(t, pin).ID
}

// TestVanishingLink: a container's link removed (its pin deleted) or
// detached by hand (bpftool link detach: the pin stays), and the
// node-level link detached by hand. CHECK says so, DEL succeeds, and the
// next ADD attaches again where the link was detached, so the containers
// pair again.
func TestVanishingLink(t *testing.T) {
	v := newVanishing(t, testenv.PinDir(t), "sockmap", false)
	pins := filepath.Join(v.n.PinDir, node.ContainersDir)
	xPin := filepath.Join(pins, hexKey(enroll.RecordKey(v.n.Name, v.x.ID, "eth0")))
	yPin := filepath.Join(pins, hexKey(enroll.RecordKey(v.n.Name, v.y.ID, "eth0")))

	// X's pin removed: the kernel detaches the link with its last reference.
	if err := os.Remove(xPin); err != nil {
		t.Fatal(err)
	}
	awaitDetached(t, v.x)
	v.wantErr("CHECK X, its pin removed", v.check(v.x), 102, "missing")
	v.answers(true, "")
	v.wantOK("DEL X", v.n.Del(t, v.x))
	v.wantOK("ADD X again", v.add(v.x))
	v.wantOK("CHECK X", v.check(v.x))

	// Y's link detached by hand: the pin stays.
	detachByHand(t, yPin)
	v.has("cgroup Y", "cgroup Y runs []")
	v.wantErr("CHECK Y, its link detached", v.check(v.y), 102, "detached")
	v.answers(true, "")
	v.wantOK("ADD Y again (the runtime retrying)", v.n.Socksplice(t, "ADD", v.y, nil))
	v.has("cgroup ", "cgroup X runs [sockops]", "cgroup Y runs [sockops]", "cgroup Z runs []")
	v.wantOK("CHECK Y after ADD", v.check(v.y))
	sockmapExchange(t, "X and Y after their links vanished", v.n, v.x, v.y, 5034, 1<<20, 3400)
	v.wantOK("DEL Y", v.n.Del(t, v.y))
	v.has("pin containers/", "pin containers/<X>")

	// The node-level link (no cgroupPath, no process in the netns)
	// detached by hand: every container attached there is left out
	// until the next ADD attaches it again.
	nl := newVanishing(t, testenv.PinDir(t), "sockmap", true)
	nodePin := filepath.Join(nl.n.PinDir, node.LinksDir, "node-sockops")
	detached := detachByHand(t, nodePin)
	nl.wantErr("CHECK X, the node-level link detached", nl.check(nl.x), 102, "detached")
	nl.answers(true, "")
	if _, err := nl.n.AddNoCgroup(t, nl.z); err != nil {
		t.Fatalf("ADD Z at node level: %v", err)
	}
	if id, err := cgroup.LinkCgroup(nodePin); err != nil || id == 0 {
		t.Errorf("node-level link after the next ADD: cgroup %d, %v; want attached again", id, err)
	}
	for _, c := range []*testenv.Container{nl.x, nl.y, nl.z} {
		nl.wantOK("CHECK "+c.ID+" after the node-level link came back", nl.check(c))
	}
	// A healthy link is kept: another ADD does not replace it.
	again := testenv.PinnedLink(t, nodePin).ID
	conf := nl.n.PluginConf(t, nl.y)
	delete(conf, "runtimeConfig") // no cgroupPath: node level, as its first ADD
	nl.wantOK("ADD Y again at node level", nl.n.Socksplice(t, "ADD", nl.y, conf))
	nl.has("pin containers/")
	if again == detached || testenv.PinnedLink(t, nodePin).ID != again {
		t.Errorf("node-level link: %d detached, %d attached again, %d after one more ADD; want a new one, then kept", detached, again, testenv.PinnedLink(t, nodePin).ID)
	}
	sockmapExchange(t, "node level, after the link came back", nl.n, nl.z, nl.x, 5035, 1<<20, 3500)
	t.Logf("summary: links vanished: %d answers checked (a pin removed: CHECK 102 missing; a link and the node-level link detached by hand: CHECK 102 detached, the next ADD attaches again and the containers pair)", v.checks+nl.checks)
}
