// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/socksplice/socksplice/pkg/install"
	"github.com/socksplice/socksplice/test/testenv"
)

// TestInstalledConflist installs socksplice on a node made of temp dirs
// whose primary is a bridge + host-local conflist, as a runtime would
// find it, then runs two containers through the conflist the runtime
// reads there (ours, first by name) with the plugin binary the installer
// copied: ADD, a paired transfer, DEL at cleanup.
func TestInstalledConflist(t *testing.T) {
	testenv.RequireRoot(t)
	binDir, confDir := t.TempDir(), t.TempDir()
	primary := filepath.Join(confDir, "10-bridge.conflist")
	name := fmt.Sprintf("ssinst%d", os.Getpid()%100000)
	data := fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[
		{"type":"bridge","bridge":%q,"isGateway":false,"ipMasq":false,
		 "ipam":{"type":"host-local","ranges":[[{"subnet":"10.219.0.0/24"}]]}}]}`, name, name)
	if err := os.WriteFile(primary, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	o := install.Defaults()
	o.BinDir, o.ConfDir, o.Source = binDir, confDir, testenv.PluginBinary(t)
	o.Mode, o.PinDir = "sockmap", testenv.PinDir(t)
	o.Logf = t.Logf
	st, err := install.Install(o)
	if err != nil || !st.Chained {
		t.Fatalf("install: %s, %v", st, err)
	}

	// What the runtime reads: the first config by name.
	files, err := libcni.ConfFiles(confDir, install.ConfExtensions)
	if err != nil || len(files) != 2 || files[0] != filepath.Join(confDir, install.DefaultConfName) {
		t.Fatalf("conf dir lists %v (%v); want ours first, then the primary", files, err)
	}
	list, err := libcni.ConfListFromFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	n := testenv.NetworkFromConfList(t, list.Bytes)
	// socksplice from the installed copy, the primary's plugins from the
	// test build.
	n.CNI = libcni.NewCNIConfigWithCacheDir([]string{binDir, testenv.BinDir(t)}, t.TempDir(), nil)
	a, b := testenv.NewContainer(t, "a"), testenv.NewContainer(t, "b")
	n.MustAdd(t, a)
	n.MustAdd(t, b)
	sockmapExchange(t, "through the installed conflist", n, b, a, 5101, 4<<20, 500)

	if err := install.Uninstall(o); err != nil {
		t.Fatal(err)
	}
	if files, _ := libcni.ConfFiles(confDir, install.ConfExtensions); len(files) != 1 || files[0] != primary {
		t.Errorf("after uninstall the conf dir lists %v, want only the primary", files)
	}
}
