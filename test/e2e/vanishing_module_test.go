//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/socksplice/socksplice/conf"
	"github.com/socksplice/socksplice/test/testenv"
)

// TestVanishingModule (VM only: the host loads no modules): the splice
// module unloaded between ADD and DEL. While the splice engine's program
// is pinned the kernel refuses rmmod; once pinDir is removed the module
// can go, and then DEL succeeds, CHECK says nothing is loaded, ADD and CNI
// STATUS of a splice network fail (codes 100 and 50) with the reason
// `socksplice status` gives for splice being unavailable, and auto picks
// another engine. The module is loaded again at the end.
func TestVanishingModule(t *testing.T) {
	testenv.RequireReloadableModule(t)
	v := newVanishing(t, testenv.PinDir(t), "splice", false)
	v.wantOK("CHECK X on the splice engine", v.check(v.x))
	err := testenv.RmmodSplice()
	v.checks++
	if !testenv.ModuleBusy(err) {
		t.Fatalf("rmmod with the splice engine's program pinned and two containers enrolled: %v; want it refused (busy)", err)
	}

	if err := os.RemoveAll(v.n.PinDir); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for err = testenv.RmmodSplice(); err != nil; err = testenv.RmmodSplice() {
		if !testenv.ModuleBusy(err) || time.Since(start) > 30*time.Second {
			t.Fatalf("rmmod after pinDir was removed: %v after %v (module: %v)", err, time.Since(start).Round(time.Millisecond), testenv.ModuleStats(t))
		}
		time.Sleep(50 * time.Millisecond) // the program goes after an RCU grace period
	}
	t.Logf("module unloaded %v after pinDir was removed", time.Since(start).Round(time.Millisecond))

	v.wantErr("CHECK X", v.check(v.x), 101, "not loaded")
	v.wantOK("DEL X", v.n.Del(t, v.x))
	// ADD loads the node's objects again, then cannot run the splice
	// engine; status says why, and ADD and STATUS name the same reason
	// (on 6.15 and later: the module is not loaded; on the patched 6.12
	// test kernel the probe cannot tell sock_ops kfunc support without it).
	addErr := v.add(v.z)
	out, err := exec.Command(testenv.PluginBinary(t), "status", v.n.PinDir).Output()
	var st struct {
		SpliceUnavailable string `json:"spliceUnavailable"`
	}
	v.checks++
	if err != nil || json.Unmarshal(out, &st) != nil || st.SpliceUnavailable == "" {
		t.Fatalf("socksplice status after the module went: %v, spliceUnavailable %q; want the reason\n%s", err, st.SpliceUnavailable, out)
	}
	why := st.SpliceUnavailable
	v.wantErr("ADD Z with mode splice", addErr, 100, why)
	v.wantOK("DEL Z after its failed ADD", v.n.Del(t, v.z))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v.wantErr("STATUS of a splice network", v.n.CNI.GetStatusNetworkList(ctx, v.n.List), 50, why)
	v.wantOK("DEL Y", v.n.Del(t, v.y))

	auto := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.233.0.0/24", PinDir: v.n.PinDir, Plugin: map[string]any{"mode": string(conf.ModeAuto)}})
	w := testenv.NewContainer(t, "w")
	v.wantOK("ADD W with mode auto", func() error { _, err := auto.Add(t, w); return err }())
	out, err = exec.Command(testenv.PluginBinary(t), "status", v.n.PinDir).Output()
	var st2 struct {
		Attachments []struct{ ContainerID, Engine string }
	}
	v.checks++
	if err != nil || json.Unmarshal(out, &st2) != nil || len(st2.Attachments) != 1 || st2.Attachments[0].Engine == "splice" {
		t.Errorf("auto without the module: status %v, attachments %+v; want W on sockmap or off", err, st2.Attachments)
	}
	t.Logf("summary: module unloaded between ADD and DEL: %d answers checked (rmmod refused while pinned; after pinDir went: CHECK 101, DEL, ADD 100 and STATUS 50 naming status's reason %q, auto on %+v)", v.checks, why, st2.Attachments)
}
