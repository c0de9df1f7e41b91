// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package install

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/socksplice/socksplice/conf"
)

const repoRoot = "../.."

// TestExampleConflist: the conflist make install-conflist installs loads
// in libcni and its socksplice entry passes the plugin's own validation.
func TestExampleConflist(t *testing.T) {
	l, err := libcni.ConfListFromFile(filepath.Join(repoRoot, "conf", "example.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	last := l.Plugins[len(l.Plugins)-1]
	if last.Network.Type != PluginType {
		t.Fatalf("last plugin is %q, want socksplice", last.Network.Type)
	}
	var e map[string]any
	if err := json.Unmarshal(last.Bytes, &e); err != nil {
		t.Fatal(err)
	}
	e["name"], e["cniVersion"] = l.Name, l.CNIVersion
	b, _ := json.Marshal(e)
	if _, err := conf.Parse(b); err != nil {
		t.Errorf("socksplice entry: %v", err)
	}
}

// TestMakeInstall runs make install, install-conflist and uninstall into
// a DESTDIR, with the build going to a temp dir too.
func TestMakeInstall(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("SKIP: needs make")
	}
	dest, bin := t.TempDir(), t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("make", append([]string{"--no-print-directory", "-C", repoRoot, "DESTDIR=" + dest, "BIN=" + bin, "CNI_BIN_DIR=/usr/lib/cni"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make %v: %v\n%s", args, err, out)
		}
	}
	run("install", "INSTALL_CONFLIST=1")
	plugin := filepath.Join(dest, "usr/lib/cni/socksplice")
	example := filepath.Join(dest, "etc/cni/net.d/50-socksplice.conflist")
	if fi, err := os.Stat(plugin); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("%s: %v %v, want an executable", plugin, fi, err)
	}
	if out, err := exec.Command(plugin, "version").CombinedOutput(); err != nil {
		t.Errorf("installed plugin: %v\n%s", err, out)
	}
	if _, err := libcni.ConfListFromFile(example); err != nil {
		t.Errorf("installed example: %v", err)
	}
	run("uninstall")
	for _, p := range []string{plugin, example} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("after make uninstall %s: %v", p, err)
		}
	}
	// Nothing else was left, e.g. a temp file.
	filepath.WalkDir(dest, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("left after uninstall: %s", p)
		}
		return nil
	})
}
