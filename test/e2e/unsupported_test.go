// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

// Hosts the plugin cannot accelerate on. Each runs the real plugin
// through a shell script that gives it another host than the test's: a
// mount namespace of its own without cgroup v2, without the kernel's BTF,
// with cgroup v2 elsewhere, or with /sys/fs/bpf read-only or unmounted
// (and no right to mount it). The bridge and host-local plugins run on
// the test's host as usual.
//
// A kernel without sockmap is not simulated: this kernel has it, and a
// refusal cannot be injected here (BPF LSM and tracing programs fail to
// load on this host with EPERM). The plugin decides it by the same code
// path as a kernel without BTF (engine.Precheck on the probe's SockHash,
// TestPrecheck), before it would create the SOCKHASH.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/socksplice/socksplice/pkg/bpffs"
	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/pkg/status"
	"github.com/socksplice/socksplice/test/testenv"
)

// privateMounts is a wrapper script body: setup runs in a mount namespace
// of the plugin's own, then the plugin.
func privateMounts(setup string) string {
	return `exec unshare -m --propagation private sh -c '` + setup + ` || exit 1; exec "$@"' - "$SOCKSPLICE" "$@"`
}

// TestUnsupportedNoCgroupV2: a host without cgroup v2 (the plugin's
// mount namespace has none mounted).
func TestUnsupportedNoCgroupV2(t *testing.T) {
	testenv.RequireRoot(t)
	root := testenv.CgroupRoot(t)
	offHost(t, "10.245.0.0/24", privateMounts("umount -l "+root), "lacks: a mounted cgroup v2 hierarchy")
}

// TestUnsupportedNoBTF: a kernel without BTF. The plugin's mount
// namespace hides /sys/kernel/btf and every other place the loader looks
// for it (/boot, /lib/modules, /usr/lib/debug); the plugin decides from
// the probe, before the verifier would need the kernel's own copy.
func TestUnsupportedNoBTF(t *testing.T) {
	testenv.RequireRoot(t)
	var hide []string
	for _, d := range []string{"/sys/kernel/btf", "/boot", "/lib/modules", "/usr/lib/modules", "/usr/lib/debug"} {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			hide = append(hide, "mount -t tmpfs none "+d)
		}
	}
	offHost(t, "10.245.1.0/24", privateMounts(strings.Join(hide, " && ")), "lacks: kernel BTF")
}

// offHost checks a host where no engine can run: mode auto adds
// containers on plain TCP, says why on stderr and in socksplice status,
// loads, enrolls and attaches nothing, passes CHECK, STATUS, DEL and GC;
// mode sockmap fails ADD with code 100 naming the reason before creating
// anything, and so does its STATUS.
func offHost(t *testing.T, subnet, script, why string) {
	t.Helper()
	pin := testenv.PinDir(t)
	auto := testenv.NewNetwork(t, testenv.NetOpts{Subnet: subnet, PinDir: pin, Plugin: map[string]any{"mode": "auto"}})
	wrapper := auto.WrapSocksplice(t, script)
	var log bytes.Buffer
	auto.LogTo(t, &log)
	a, b := testenv.NewContainer(t, "a"), testenv.NewContainer(t, "b")
	auto.MustAdd(t, a)
	auto.MustAdd(t, b)
	if !strings.Contains(log.String(), "runs plain TCP on this node") || !strings.Contains(log.String(), why) {
		t.Errorf("the ADD log does not say that auto runs plain TCP because the host %s:\n%s", why, log.String())
	}
	m := auto.Meter(t, a, b)
	exchange(t, b, a, netip.AddrPortFrom(b.IP(auto), 6100), 1<<20, 6100, 0)
	if v := m.VethBytes(); v[0] < 2<<20 {
		t.Errorf("veth %s carried %d B of 2x1 MiB: the payload did not take plain TCP", m.Veths[0], v[0])
	}
	if err := auto.Socksplice(t, "CHECK", a, nil); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	ctx := context.Background()
	if err := auto.CNI.GetStatusNetworkList(ctx, auto.List); err != nil {
		t.Errorf("STATUS with mode auto: %v", err)
	}
	st := statusVia(t, wrapper, pin)
	if st.Loaded || !strings.Contains(st.SockmapUnavailable, why) || len(st.Attachments) != 0 {
		t.Errorf("socksplice status: loaded %v, sockmapUnavailable %q, %d attachments; want false, %q, none",
			st.Loaded, st.SockmapUnavailable, len(st.Attachments), why)
	}
	// Nothing but the memory of the notice: the system log heard it
	// once for both ADDs.
	if _, err := node.Open(pin); !errors.Is(err, node.ErrNotLoaded) {
		t.Errorf("node objects under %s: %v, want none loaded", pin, err)
	}
	told, _ := os.ReadDir(filepath.Join(pin, engine.NoticesDir))
	if ents, _ := os.ReadDir(pin); len(ents) != 1 || len(told) != 1 {
		t.Errorf("pinDir holds %v, notices %v; want only the one notice", ents, told)
	}
	noPrograms(t, a, b)
	for _, c := range []*testenv.Container{a, b} {
		if err := auto.Del(t, c); err != nil {
			t.Errorf("DEL %s: %v", c.ID, err)
		}
	}
	if err := auto.CNI.GCNetworkList(ctx, auto.List, &libcni.GCArgs{}); err != nil {
		t.Errorf("GC: %v", err)
	}

	forcedPin := testenv.PinDir(t)
	forced := testenv.NewNetwork(t, testenv.NetOpts{Subnet: subnet, PinDir: forcedPin, Plugin: map[string]any{"mode": "sockmap"}})
	forced.WrapSocksplice(t, script)
	c := testenv.NewContainer(t, "c")
	_, err := forced.Add(t, c)
	ce := wantCNIError(t, "ADD with mode sockmap", err, 100, why)
	if _, err := os.Stat(forcedPin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pinDir %s exists after the refused ADD (stat: %v)", forcedPin, err)
	}
	noPrograms(t, c)
	if err := forced.Del(t, c); err != nil {
		t.Errorf("DEL after the refused ADD: %v", err)
	}
	se := wantCNIError(t, "STATUS with mode sockmap", forced.CNI.GetStatusNetworkList(ctx, forced.List), types.ErrPluginNotAvailable, why)
	t.Logf("summary: mode auto: ADD x2 on plain TCP (1 MiB each way intact over the veths), CHECK, STATUS, DEL, GC ok, nothing loaded or attached, status says %q; "+
		"mode sockmap: ADD code %d %q, nothing created; STATUS code %d", st.SockmapUnavailable, ce.Code, ce.Msg, se.Code)
}

// wantCNIError fails t unless err is a CNI error with code whose message
// or details name want; it returns that error (empty if it was not one).
func wantCNIError(t *testing.T, what string, err error, code uint, want string) *types.Error {
	t.Helper()
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != code || !strings.Contains(ce.Msg+" "+ce.Details, want) {
		t.Errorf("%s: %v; want CNI error %d naming %q", what, err, code, want)
		return &types.Error{}
	}
	return ce
}

// noPrograms fails t if any program is attached to the containers' cgroups.
func noPrograms(t *testing.T, cs ...*testenv.Container) {
	t.Helper()
	for _, c := range cs {
		if ids, err := cgroup.AttachedIDs(c.Cgroup); err != nil || len(ids) != 0 {
			t.Errorf("cgroup of %s: programs %v (%v), want none", c.ID, ids, err)
		}
	}
}

// statusVia runs "socksplice status pinDir" through bin (a wrapper).
func statusVia(t *testing.T, bin, pinDir string) status.Status {
	t.Helper()
	out, err := exec.Command(bin, "status", pinDir).Output()
	if err != nil {
		t.Fatalf("socksplice status: %v", err)
	}
	var st status.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("status output: %v\n%s", err, out)
	}
	return st
}

// TestUnsupportedCgroupV2Elsewhere: cgroup v2 mounted at another place
// than this host's (the plugin's mount namespace has it at a temporary
// directory only). The plugin finds it in its mountinfo, attaches under
// it, and the runtime's relative cgroupPath resolves there: flows pair
// and DEL undoes everything.
func TestUnsupportedCgroupV2Elsewhere(t *testing.T) {
	testenv.RequireRoot(t)
	root, elsewhere := testenv.CgroupRoot(t), t.TempDir()
	n := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.245.3.0/24", PinDir: testenv.PinDir(t), Plugin: map[string]any{"mode": "sockmap"}})
	wrapper := n.WrapSocksplice(t, privateMounts("umount -l "+root+" && mount -t cgroup2 none "+elsewhere))
	a, b := testenv.NewContainer(t, "a"), testenv.NewContainer(t, "b")
	n.MustAdd(t, a)
	n.MustAdd(t, b)
	st := statusVia(t, wrapper, n.PinDir)
	if st.Kernel.CgroupRoot != elsewhere {
		t.Errorf("status: cgroup root %q, want %q", st.Kernel.CgroupRoot, elsewhere)
	}
	for _, c := range []*testenv.Container{a, b} {
		if ids, err := cgroup.AttachedIDs(c.Cgroup); err != nil || len(ids) != 1 {
			t.Errorf("cgroup of %s: programs %v (%v), want the sock_ops program", c.ID, ids, err)
		}
		if err := n.Socksplice(t, "CHECK", c, nil); err != nil {
			t.Errorf("CHECK %s: %v", c.ID, err)
		}
	}
	sockmapExchange(t, "cgroup v2 elsewhere", n, b, a, 6103, 4<<20, 6103)
	for _, c := range []*testenv.Container{a, b} {
		if err := n.Del(t, c); err != nil {
			t.Errorf("DEL %s: %v", c.ID, err)
		}
	}
	assertNodeEmpty(t, n.PinDir, a, b)
	t.Logf("summary: cgroup v2 at %s for the plugin: ADD attached to the containers' cgroups there, CHECK ok, 4 MiB each way through sockmap, DEL left nothing", elsewhere)
}

// TestUnsupportedBPFFSNotMountable: nothing is mounted at /sys/fs/bpf and
// the plugin may not mount bpffs (its mount namespace has none, and it
// runs without CAP_SYS_ADMIN). ADD fails with code 101 naming the mount,
// creating nothing, whatever the mode; STATUS says the same beforehand;
// DEL succeeds.
func TestUnsupportedBPFFSNotMountable(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("SKIP: needs setpriv (util-linux)")
	}
	hostBPFFS(t)
	script := `exec unshare -m --propagation private sh -c 'umount -l /sys/fs/bpf || exit 1; ` +
		`exec setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin "$@"' - "$SOCKSPLICE" "$@"`
	figures := refusedInEveryMode(t, 4, script, "may not mount one (no CAP_SYS_ADMIN)", "mounting bpffs at /sys/fs/bpf: operation not permitted")
	t.Logf("summary: bpffs not mountable: %s; nothing created, DEL ok", strings.Join(figures, "; "))
}

// refusedInEveryMode checks, in modes auto and sockmap on a fresh pin
// directory (subnets 10.245.net+i.0/24), that the plugin run through
// script fails STATUS (code 50, naming status) and ADD (code 101, naming
// add), that the ADD made nothing and that DEL succeeds. It returns a
// figure per mode.
func refusedInEveryMode(t *testing.T, net int, script, status, add string) []string {
	t.Helper()
	var figures []string
	for i, mode := range []string{"auto", "sockmap"} {
		n := testenv.NewNetwork(t, testenv.NetOpts{Subnet: fmt.Sprintf("10.245.%d.0/24", net+i), PinDir: testenv.PinDir(t), Plugin: map[string]any{"mode": mode}})
		n.WrapSocksplice(t, script)
		c := testenv.NewContainer(t, "c")
		se := wantCNIError(t, "STATUS, mode "+mode, n.CNI.GetStatusNetworkList(context.Background(), n.List), types.ErrPluginNotAvailable, status)
		_, err := n.Add(t, c)
		ce := wantCNIError(t, "ADD, mode "+mode, err, 101, add)
		nothingMade(t, n, c)
		if err := n.Del(t, c); err != nil {
			t.Errorf("DEL, mode %s: %v", mode, err)
		}
		figures = append(figures, fmt.Sprintf("mode %s: STATUS code %d, ADD code %d %q", mode, se.Code, ce.Code, ce.Msg+": "+ce.Details))
	}
	return figures
}

// hostBPFFS mounts bpffs at /sys/fs/bpf where nothing is (a fresh test
// VM), as the plugin's first ADD would: the tests change that mount for
// the plugin alone.
func hostBPFFS(t *testing.T) {
	t.Helper()
	if err := bpffs.Ensure(bpffs.DefaultMount); err != nil {
		t.Fatal(err)
	}
}

// nothingMade fails t if a refused ADD left anything: the pin directory,
// or a program on the container's cgroup.
func nothingMade(t *testing.T, n *testenv.Network, c *testenv.Container) {
	t.Helper()
	if _, err := os.Stat(n.PinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pinDir %s exists after the refused ADD (stat: %v)", n.PinDir, err)
	}
	noPrograms(t, c)
}

// TestUnsupportedReadOnlyBPFFS: /sys/fs/bpf is mounted read-only for the
// plugin. Before any pins exist, ADD fails with code 101 (whatever the
// mode) and STATUS says so beforehand. With the node's pins made earlier,
// an ADD fails with code 102 and leaves the node exactly as it was; a DEL
// succeeds but cannot unpin its link, and keeps its record so that GC,
// once the mount is writable again, removes the rest.
func TestUnsupportedReadOnlyBPFFS(t *testing.T) {
	testenv.RequireRoot(t)
	hostBPFFS(t)
	ro := privateMounts("mount -o remount,bind,ro /sys/fs/bpf")
	figures := refusedInEveryMode(t, 6, ro, "read-only", "read-only file system")

	// The node's pins exist (a first container), then the mount turns
	// read-only.
	n := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.245.8.0/24", PinDir: testenv.PinDir(t), Plugin: map[string]any{"mode": "sockmap"}})
	a, b := testenv.NewContainer(t, "a"), testenv.NewContainer(t, "b")
	n.MustAdd(t, a)
	before := testenv.TakeFootprint(t, n.PinDir, a.Cgroup, b.Cgroup)
	n.WrapSocksplice(t, ro)
	var log bytes.Buffer
	n.LogTo(t, &log)
	_, err := n.Add(t, b)
	ce := wantCNIError(t, "ADD with the pins read-only", err, 102, "read-only file system")
	if _, d := testenv.AwaitFootprint(t, before, n.PinDir, a.Cgroup, b.Cgroup); d != "" {
		t.Errorf("the refused ADD changed the node: %s", d)
	}
	if err := n.Del(t, b); err != nil {
		t.Errorf("DEL of the refused container: %v", err)
	}
	if err := n.Socksplice(t, "CHECK", a, nil); err != nil {
		t.Errorf("CHECK of the earlier container with the pins read-only: %v", err)
	}
	if err := n.Del(t, a); err != nil {
		t.Errorf("DEL with the pins read-only: %v", err)
	}
	if !strings.Contains(log.String(), "left for GC") {
		t.Errorf("DEL with the pins read-only did not say what it left:\n%s", log.String())
	}
	left := testenv.TakeFootprint(t, n.PinDir, a.Cgroup)
	if left.Maps["attach"] != 1 || left.CgroupProgs != 1 {
		t.Errorf("after DEL with the pins read-only: %s; want its record kept with the link it could not unpin", left)
	}
	// Writable again: GC (the runtime no longer lists the container)
	// removes what DEL could not.
	n.WrapSocksplice(t, `exec "$SOCKSPLICE" "$@"`)
	if err := n.CNI.GCNetworkList(context.Background(), n.List, &libcni.GCArgs{}); err != nil {
		t.Errorf("GC: %v", err)
	}
	assertNodeEmpty(t, n.PinDir, a, b)
	t.Logf("summary: read-only bpffs, no pins yet: %s; with pins: ADD code %d %q, node unchanged; DEL ok, its link and record left (%s) and removed by GC once writable",
		strings.Join(figures, "; "), ce.Code, ce.Details, left)
}
