// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package install

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
)

// testOptions installs into temp dirs; the binary step is off unless a
// test sets BinDir.
func testOptions(t *testing.T) Options {
	o := Defaults()
	o.BinDir = ""
	o.ConfDir = t.TempDir()
	o.PinDir = "/sys/fs/bpf/socksplice-install-test"
	o.Logf = t.Logf
	return o
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withVersion returns the config with its cniVersion replaced.
func withVersion(t *testing.T, data []byte, v string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	m["cniVersion"] = v
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// asList loads a primary the way a runtime does: a conflist as is, a
// single plugin config converted with libcni.ConfListFromConf.
func asList(t *testing.T, path string) *libcni.NetworkConfigList {
	t.Helper()
	if strings.HasSuffix(path, ".conflist") {
		l, err := libcni.ConfListFromFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	c, err := libcni.ConfFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l, err := libcni.ConfListFromConf(c)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

// checkChained fails t unless the runtime's view of dir is our conflist,
// and that is the primary's plugins with socksplice appended.
func checkChained(t *testing.T, o Options, primaryPath string) {
	t.Helper()
	files, err := libcni.ConfFiles(o.ConfDir, ConfExtensions)
	if err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(o.ConfDir, o.ConfName)
	if len(files) == 0 || files[0] != own {
		t.Fatalf("the runtime would read %v first, want %s", files, own)
	}
	got, err := libcni.ConfListFromFile(own)
	if err != nil {
		t.Fatalf("libcni cannot load our conflist: %v\n%s", err, readFile(t, own))
	}
	want := asList(t, primaryPath)
	if got.Name != want.Name || got.CNIVersion != want.CNIVersion || got.DisableCheck != want.DisableCheck {
		t.Errorf("name/cniVersion/disableCheck %q/%q/%v, want the primary's %q/%q/%v",
			got.Name, got.CNIVersion, got.DisableCheck, want.Name, want.CNIVersion, want.DisableCheck)
	}
	if len(got.Plugins) != len(want.Plugins)+1 {
		t.Fatalf("%d plugins, want the primary's %d + socksplice", len(got.Plugins), len(want.Plugins))
	}
	for i, p := range want.Plugins {
		if !jsonEqual(t, got.Plugins[i].Bytes, p.Bytes) {
			t.Errorf("plugins[%d] = %s, want the primary's %s", i, got.Plugins[i].Bytes, p.Bytes)
		}
	}
	last := got.Plugins[len(got.Plugins)-1]
	var e struct {
		Type         string          `json:"type"`
		Mode         string          `json:"mode"`
		PinDir       string          `json:"pinDir"`
		Capabilities map[string]bool `json:"capabilities"`
	}
	if err := json.Unmarshal(last.Bytes, &e); err != nil {
		t.Fatal(err)
	}
	if e.Type != "socksplice" || e.Mode != o.Mode || e.PinDir != o.PinDir ||
		!e.Capabilities["io.kubernetes.cri.pod-annotations"] || !e.Capabilities["cgroupPath"] {
		t.Errorf("our entry is %s", last.Bytes)
	}
}

// TestChainsCommonPrimaries runs the installer against the primaries of
// podman, containerd, flannel, calico, cilium (alone and chained after
// aws-cni) and a single-plugin .conf, as they ship them.
func TestChainsCommonPrimaries(t *testing.T) {
	fixtures, err := filepath.Glob("testdata/*.conf*")
	if err != nil || len(fixtures) < 7 {
		t.Fatalf("fixtures: %v %v", fixtures, err)
	}
	for _, f := range fixtures {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data := readFile(t, f)
			var v struct {
				CNIVersion string `json:"cniVersion"`
			}
			if err := json.Unmarshal(data, &v); err != nil {
				t.Fatal(err)
			}
			for _, version := range []string{v.CNIVersion, "1.0.0", "0.2.0"} {
				o := testOptions(t)
				p := filepath.Join(o.ConfDir, filepath.Base(f))
				writeFile(t, p, withVersion(t, data, version))
				st, err := Install(o)
				if err != nil {
					t.Fatal(err)
				}
				own := filepath.Join(o.ConfDir, o.ConfName)
				if version == "0.2.0" {
					// The plugin would refuse every ADD: nothing is chained.
					if st.Chained || !strings.Contains(st.Reason, `cniVersion "0.2.0"`) {
						t.Errorf("cniVersion 0.2.0: state %s, want not chained because of the version", st)
					}
					if _, err := os.Stat(own); !os.IsNotExist(err) {
						t.Errorf("%s exists (%v) though nothing can be chained", own, err)
					}
					continue
				}
				if !st.Chained || !st.Written || st.Primary != p {
					t.Fatalf("cniVersion %s: state %+v", version, st)
				}
				checkChained(t, o, p)
				// A second run changes nothing.
				if st, err := Install(o); err != nil || st.Written {
					t.Errorf("second install: %+v, %v; want nothing written", st, err)
				}
			}
		})
	}
}

// TestLeavesAlone: a primary that chains socksplice already, and a
// primary that sorts before our name, get no conflist of ours (and an
// old one of ours is removed).
func TestLeavesAlone(t *testing.T) {
	chained := `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"socksplice","mode":"sockmap"}]}`
	for _, c := range []struct{ file, data, why string }{
		{"10-chained.conflist", chained, "already chains socksplice"},
		{"00-aaa.conflist", `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}`, "sorts before"},
	} {
		o := testOptions(t)
		own := filepath.Join(o.ConfDir, o.ConfName)
		writeFile(t, own, []byte(chained)) // left from an earlier sync
		writeFile(t, filepath.Join(o.ConfDir, c.file), []byte(c.data))
		st, err := Install(o)
		if err != nil {
			t.Fatal(err)
		}
		if st.Chained || !strings.Contains(st.Reason, c.why) {
			t.Errorf("%s: state %s, want not chained: %s", c.file, st, c.why)
		}
		if _, err := os.Stat(own); !os.IsNotExist(err) {
			t.Errorf("%s: our conflist is still there (%v)", c.file, err)
		}
	}
}

// TestBadOptionsChangeNothing: invalid plugin options fail before any
// file is written, naming the field.
func TestBadOptionsChangeNothing(t *testing.T) {
	for _, c := range []struct {
		set  func(*Options)
		want string
	}{
		{func(o *Options) { o.Mode = "fast" }, "mode"},
		{func(o *Options) { o.PluginOptions = map[string]any{"ports": []int{}} }, "ports"},
		{func(o *Options) { o.PluginOptions = map[string]any{"busyPollUS": 5} }, `did you mean "busyPollUs"`},
		{func(o *Options) { o.PluginOptions = map[string]any{"type": "bridge"} }, `"type" is set by the installer`},
		{func(o *Options) { o.ConfName = "socksplice.conf" }, "--conf-name"},
		{func(o *Options) { o.PinDir = "relative" }, "pinDir"},
	} {
		o := testOptions(t)
		o.ConfDir = filepath.Join(t.TempDir(), "net.d")
		o.BinDir = filepath.Join(t.TempDir(), "bin")
		c.set(&o)
		_, err := Install(o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want one naming %s", err, c.want)
		}
		for _, d := range []string{o.ConfDir, o.BinDir} {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				t.Errorf("%s was created (%v) by an install that failed validation", d, err)
			}
		}
	}
}

// TestWatchFollowsPrimary runs the long-lived installer and changes the
// conf dir under it: the primary edited, half-written, removed and
// restored; our own conflist deleted by hand; a later-sorting config
// added. Each wait is for the state the installer reports.
func TestWatchFollowsPrimary(t *testing.T) {
	o := testOptions(t)
	o.Debounce = 20 * time.Millisecond
	o.UninstallOnExit = true
	states := make(chan State, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o, func(s State) { states <- s }) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	own := filepath.Join(o.ConfDir, o.ConfName)
	wait := func(what string, ok func(State) bool) {
		t.Helper()
		for {
			select {
			case s := <-states:
				if ok(s) {
					return
				}
			case err := <-done:
				t.Fatalf("installer stopped (%v) while waiting for: %s", err, what)
			case <-time.After(2 * time.Minute): // a hang guard, not a measurement
				t.Fatalf("no state reached: %s", what)
			}
		}
	}
	wait("nothing to chain", func(s State) bool { return !s.Chained && s.Primary == "" })

	primary := filepath.Join(o.ConfDir, "10-net.conflist")
	v1 := `{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"bridge","bridge":"br1"}]}`
	v2 := `{"cniVersion":"1.1.0","name":"net","plugins":[{"type":"bridge","bridge":"br2"},{"type":"portmap"}]}`
	writeFile(t, primary, []byte(v1))
	wait("chained v1", func(s State) bool { return s.Chained && bytes.Contains(readFile(t, own), []byte("br1")) })
	checkChained(t, o, primary)

	writeFile(t, primary, []byte(v2))
	wait("chained v2", func(s State) bool { return s.Chained && bytes.Contains(readFile(t, own), []byte("br2")) })
	checkChained(t, o, primary)

	// Half-written by its own installer: ours stays the last good chain.
	writeFile(t, primary, []byte(v2[:30]))
	wait("parse failure reported", func(s State) bool { return strings.Contains(s.Reason, "cannot parse") })
	if !bytes.Contains(readFile(t, own), []byte("br2")) {
		t.Errorf("our conflist changed after a half-written primary:\n%s", readFile(t, own))
	}
	writeFile(t, primary, []byte(v2))
	wait("chained v2 again", func(s State) bool { return s.Chained && s.Reason == "" })

	os.Remove(own)
	wait("ours restored", func(s State) bool { return s.Written })
	checkChained(t, o, primary)

	// A config sorting after the primary does not change which is primary.
	writeFile(t, filepath.Join(o.ConfDir, "99-other.conflist"), []byte(`{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"ptp"}]}`))
	wait("still the same primary", func(s State) bool { return s.Primary == primary })
	checkChained(t, o, primary)

	os.Remove(primary)
	wait("primary gone", func(s State) bool { return s.Primary != primary })
	// 99-other is now the primary: chained after it, never after nothing.
	checkChained(t, o, filepath.Join(o.ConfDir, "99-other.conflist"))
	os.Remove(filepath.Join(o.ConfDir, "99-other.conflist"))
	wait("no primary", func(s State) bool { return s.Primary == "" })
	if _, err := os.Stat(own); !os.IsNotExist(err) {
		t.Fatalf("our conflist outlived the last primary (%v)", err)
	}

	writeFile(t, primary, []byte(v1))
	wait("chained again", func(s State) bool { return s.Chained })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil // for the cleanup
	if _, err := os.Stat(own); !os.IsNotExist(err) {
		t.Errorf("--uninstall-on-exit left %s (%v)", own, err)
	}
	if !bytes.Equal(readFile(t, primary), []byte(v1)) {
		t.Errorf("the primary was changed")
	}
}

// TestUninstall: without purge only our conflist goes; with purge the
// binary and the pin dir too; the primary is never touched.
func TestUninstall(t *testing.T) {
	for _, purge := range []bool{false, true} {
		o := testOptions(t)
		o.BinDir = filepath.Join(t.TempDir(), "bin")
		o.PinDir = filepath.Join(t.TempDir(), "pins")
		o.Source = filepath.Join(t.TempDir(), "socksplice")
		writeFile(t, o.Source, []byte("#!/bin/sh\n"))
		if err := os.MkdirAll(filepath.Join(o.PinDir, "maps"), 0o755); err != nil {
			t.Fatal(err)
		}
		primary := filepath.Join(o.ConfDir, "10-bridge.conf")
		writeFile(t, primary, readFile(t, "testdata/10-bridge.conf"))
		if st, err := Install(o); err != nil || !st.Chained {
			t.Fatalf("install: %s %v", st, err)
		}
		if fi, err := os.Stat(filepath.Join(o.BinDir, "socksplice")); err != nil || fi.Mode().Perm() != 0o755 {
			t.Fatalf("binary not installed 0755: %v %v", fi, err)
		}
		o.Purge = purge
		if err := Uninstall(o); err != nil {
			t.Fatal(err)
		}
		files, _ := libcni.ConfFiles(o.ConfDir, ConfExtensions)
		if !slices.Equal(files, []string{primary}) {
			t.Errorf("purge=%v: conf dir holds %v, want only the primary", purge, files)
		}
		for _, p := range []string{filepath.Join(o.BinDir, "socksplice"), o.PinDir} {
			if _, err := os.Stat(p); os.IsNotExist(err) != purge {
				t.Errorf("purge=%v: %s: %v", purge, p, err)
			}
		}
		if err := Uninstall(o); err != nil {
			t.Errorf("a second uninstall: %v", err)
		}
	}
}
