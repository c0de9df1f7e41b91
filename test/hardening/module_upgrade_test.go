//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package hardening

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/pkg/kmod"
	"github.com/socksplice/socksplice/test/testenv"
)

// Issue 16, item 4, the module: a rebuilt splice module cannot replace
// the loaded one while spliced streams use it. The kernel cannot swap a
// module's code, and refuses delete_module while anything holds it. So
// the node's loader (kmod.Load, what "socksplice module" and the
// DaemonSet's init container run) must keep the loaded module and say
// why, the streams must go on intact, and once no container uses the
// engine the old module must unload and the rebuilt one load and serve
// new connections. The rebuilt module is the same source built a second
// time by the harness (kernel/vm/test.sh: SOCKSPLICE_MODULE_REBUILT_KO),
// installed where a package puts it (MODULES/RELEASE/updates/dkms).
func TestHardeningModuleUpgrade(t *testing.T) {
	klog := testenv.WatchKernelLog(t)
	testenv.RequireReloadableModule(t)
	rebuilt := os.Getenv("SOCKSPLICE_MODULE_REBUILT_KO")
	if rebuilt == "" {
		t.Skip("SKIP: SOCKSPLICE_MODULE_REBUILT_KO is not set (kernel/vm/test.sh builds the module a second time for this test)")
	}
	modules := installedModule(t, rebuilt)

	e := newEnv(t, "10.249.0.0/24", map[string]any{"mode": "splice"})
	base := testenv.ModuleStats(t)
	streams := testenv.StartStreams(t, e.srv, e.cli, []string{netip.AddrPortFrom(e.addr, 8200).String(),
		netip.AddrPortFrom(e.addr, 8201).String()}, 1900, 20*time.Millisecond)
	var m map[string]int64
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if m = testenv.ModuleStats(t); delta(m, base, "paired") >= 2 { // pairs, not sockets
			break
		}
	}
	if delta(m, base, "paired") < 2 {
		t.Fatalf("the streams were not spliced: module paired +%d", delta(m, base, "paired"))
	}

	// The upgrade path while the streams run: the loader keeps the
	// module, and says why; rmmod is refused every time.
	r := kmod.Load(context.Background(), kmod.Options{ModulesDir: modules})
	t.Logf("loader with the rebuilt module installed, streams running: %s", r)
	if r.How != kmod.AlreadyLoaded || !strings.Contains(r.Detail, "in use") || !strings.Contains(r.Detail, "cannot be replaced") {
		t.Errorf("loader report %q, want %q saying the module is in use and cannot be replaced", r, kmod.AlreadyLoaded)
	}
	refused, tries := 0, 20
	for i := 0; i < tries; i++ {
		if err := testenv.RmmodSplice(); testenv.ModuleBusy(err) {
			refused++
		} else if err == nil {
			t.Fatal("rmmod succeeded while 2 spliced streams ran")
		} else {
			t.Errorf("rmmod: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	m = testenv.ModuleStats(t)
	t.Logf("streams running: rmmod refused %d of %d times; refcnt %d, live pairs %d", refused, tries, m["refcnt"], m["live_pairs"])

	moved, _, err := streams.Stop()
	if err != nil {
		t.Errorf("the streams across the refused upgrade: %v", err)
	}

	// Drain: no container uses the engine any more; the module goes and
	// the loader loads the rebuilt one.
	for _, c := range []*testenv.Container{e.srv, e.cli} {
		if err := e.net.Del(t, c); err != nil {
			t.Errorf("DEL: %v", err)
		}
	}
	if err := os.RemoveAll(e.net.PinDir); err != nil {
		t.Fatal(err)
	}
	// The streams' accepted ends shut down writing and get the peer's FIN
	// before close(): TIME_WAIT, which holds nothing of the module
	// (kernel/README.md, unloading). Only the frees after close are
	// waited for.
	start := time.Now()
	tw := timeWaits(t, e.srv, e.cli)
	for time.Since(start) < 90*time.Second {
		if err = testenv.RmmodSplice(); err == nil || !testenv.ModuleBusy(err) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("rmmod still fails %v after the streams closed and the network went: %v (refcnt %d; TIME_WAIT sockets at the start: %s)",
			time.Since(start).Round(100*time.Millisecond), err, testenv.ModuleStats(t)["refcnt"], tw)
	}
	unloadedAfter := time.Since(start)
	t.Logf("rmmod went through %v after the drain began; TIME_WAIT sockets then: %s", unloadedAfter.Round(10*time.Millisecond), tw)
	if unloadedAfter > 10*time.Second {
		t.Errorf("rmmod was refused for %v after the drain began (TIME_WAIT sockets then: %s): something still held the module",
			unloadedAfter.Round(100*time.Millisecond), tw)
	}
	r = kmod.Load(context.Background(), kmod.Options{ModulesDir: modules})
	t.Logf("loader after the drain: %s", r)
	if r.How != kmod.FromPackage {
		t.Fatalf("loader report %q after the drain, want %q", r, kmod.FromPackage)
	}

	// The rebuilt module serves a new network.
	e2 := newEnv(t, "10.249.1.0/24", map[string]any{"mode": "splice"})
	base = testenv.ModuleStats(t)
	ln := e2.listen(t, 8210)
	cli, srv, err := e2.conn(t, ln)
	if err != nil {
		t.Fatal(err)
	}
	msg := testenv.Payload(1910, 1<<20)
	go func() { cli.Write(msg); cli.CloseWrite() }()
	srv.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, rerr := io.ReadAll(srv)
	cli.Close()
	srv.Close()
	if rerr != nil || !bytes.Equal(got, msg) {
		t.Errorf("new connection on the rebuilt module: read %d of %d bytes (%v), intact %v", len(got), len(msg), rerr, bytes.Equal(got, msg))
	}
	if p := delta(testenv.ModuleStats(t), base, "paired"); p < 1 {
		t.Errorf("new connection on the rebuilt module: module paired +%d, want 1", p)
	}
	klog.Check(t, "after the module upgrade")
	t.Logf("summary: module upgrade under traffic: loader kept the loaded module (%q), rmmod refused %d of %d times while 2 streams ran (%d B, intact both ways); after the drain rmmod went through in %v (TIME_WAIT sockets at the drain: %s), the rebuilt module loaded (%s) and spliced a new connection (1 MiB intact)",
		kmod.AlreadyLoaded, refused, tries, moved, unloadedAfter.Round(10*time.Millisecond), tw, r.How)
}

// installedModule puts ko where a package installs the module for the
// running kernel, under a modules directory of the test's own, and
// returns that directory.
func installedModule(t *testing.T, ko string) string {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dst := filepath.Join(dir, unix.ByteSliceToString(u.Release[:]), "updates", "dkms", kmod.Name+".ko")
	b, err := os.ReadFile(ko)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// timeWaits lists the TIME_WAIT sockets in the containers' netns (ss).
func timeWaits(t *testing.T, cs ...*testenv.Container) string {
	var out []string
	for _, c := range cs {
		b, err := exec.Command("ip", "netns", "exec", c.NetnsName, "ss", "-Htan", "state", "time-wait").CombinedOutput()
		if err != nil {
			out = append(out, fmt.Sprintf("%s: ss: %v %s", c.ID, err, b))
			continue
		}
		n := len(strings.Fields(strings.TrimSpace(string(b)))) / 4
		out = append(out, fmt.Sprintf("%s: %d %q", c.ID, n, strings.TrimSpace(string(b))))
	}
	return strings.Join(out, "; ")
}
