// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

// TestInstallCommand runs the installer as an operator would, through
// the socksplice binary: install --watch until SIGTERM with
// --uninstall-on-exit, uninstall --purge, manifest and module.
func TestInstallCommand(t *testing.T) {
	bin := testenv.PluginBinary(t)
	binDir, confDir := t.TempDir(), t.TempDir()
	pins := filepath.Join(t.TempDir(), "pins")
	primary := filepath.Join(confDir, "87-podman-bridge.conflist")
	if err := os.WriteFile(primary, []byte(`{"cniVersion":"0.4.0","name":"podman","plugins":[{"type":"bridge"},{"type":"portmap"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--cni-bin-dir=" + binDir, "--cni-conf-dir=" + confDir, "--pin-dir=/sys/fs/bpf/socksplice-cmd-test", `--plugin-options={"ports":[6379]}`}
	cmd := exec.Command(bin, append([]string{"install", "--watch", "--uninstall-on-exit"}, flags...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Its log says when it chained; then it watches until told to stop.
	sc := bufio.NewScanner(stderr)
	var log []string
	for sc.Scan() && !strings.Contains(sc.Text(), "chained after "+primary) {
		log = append(log, sc.Text())
	}
	own := filepath.Join(confDir, install.DefaultConfName)
	l, err := libcni.ConfListFromFile(own)
	if err != nil {
		t.Fatalf("%v; installer said %q", err, log)
	}
	last := string(l.Plugins[len(l.Plugins)-1].Bytes)
	if l.Name != "podman" || len(l.Plugins) != 3 || !strings.Contains(last, `"ports":[6379]`) {
		t.Errorf("conflist %s, want podman's two plugins and socksplice with ports [6379]", l.Bytes)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, stderr)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("install --watch after SIGTERM: %v", err)
	}
	if _, err := os.Stat(own); !os.IsNotExist(err) {
		t.Errorf("--uninstall-on-exit left %s (%v)", own, err)
	}
	if _, err := os.Stat(filepath.Join(binDir, "socksplice")); err != nil {
		t.Errorf("the binary is gone without --purge: %v", err)
	}

	if err := os.MkdirAll(pins, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "uninstall", "--purge", "--cni-bin-dir="+binDir, "--cni-conf-dir="+confDir, "--pin-dir="+pins).CombinedOutput(); err != nil {
		t.Fatalf("uninstall --purge: %v\n%s", err, out)
	}
	for _, p := range []string{filepath.Join(binDir, "socksplice"), pins} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("uninstall --purge left %s (%v)", p, err)
		}
	}
	if _, err := os.Stat(primary); err != nil {
		t.Errorf("uninstall touched the primary: %v", err)
	}

	// Bad options: a CLI error naming the flag, and nothing written.
	out, err := exec.Command(bin, append([]string{"install", "--mode=fast"}, flags...)...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "mode") {
		t.Errorf("install --mode=fast: %v: %s", err, out)
	}
	if ents, _ := os.ReadDir(binDir); len(ents) != 0 {
		t.Errorf("a refused install wrote %d files into the bin dir", len(ents))
	}

	out, err = exec.Command(bin, "manifest", "--image=example/socksplice:test", "--namespace=accel").Output()
	if err != nil || !strings.Contains(string(out), "kind: DaemonSet") || !strings.Contains(string(out), "image: example/socksplice:test") {
		t.Errorf("manifest: %v\n%s", err, out)
	}
	report := filepath.Join(t.TempDir(), "module.json")
	out, err = exec.Command(bin, "module", "--report="+report).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "splice module: ") {
		t.Errorf("module: %v: %s", err, out)
	}
	t.Logf("socksplice module: %s", strings.TrimSpace(string(out)))
	if b, err := os.ReadFile(report); err != nil || !strings.Contains(string(b), `"how":`) {
		t.Errorf("module report: %s %v", b, err)
	}
}
