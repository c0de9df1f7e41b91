// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package testenv is the one place where socksplice's tests get a real
// environment to run in: "containers" (a network namespace plus a cgroup
// v2 directory), CNI networks driven through libcni with the real bridge
// and host-local plugins, helper processes re-executed from the test
// binary inside a container, and the node's counters. Everything it
// creates is removed at cleanup, also when the test fails; the demo and
// the benchmark use it outside "go test" through Main and Try.
//
// Only pkgapi.go and node.go import socksplice's own packages; the
// packages testenv imports (pkg/cgroup, pkg/counters, pkg/node,
// pkg/selftest and theirs) use it from external tests (package x_test).
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// T is the part of testing.TB the package uses, so that code outside
// "go test" (Main, Try) drives the same topologies.
type T interface {
	Helper()
	Logf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Skip(args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// RequireRoot skips loudly when the test cannot create namespaces and load
// BPF. CI runs as root, so it never skips there.
func RequireRoot(t T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (network namespaces, cgroups, BPF)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("SKIP: needs ip (iproute2)")
	}
}

// RequireMPTCP skips unless the kernel makes MPTCP sockets. The test's own
// netns answers for the containers: a new netns starts with
// net.mptcp.enabled=1.
func RequireMPTCP(t T) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_MPTCP)
	switch err {
	case nil:
		unix.Close(fd)
	case unix.EPROTONOSUPPORT, unix.EINVAL, unix.ENOPROTOOPT:
		// ENOPROTOOPT: net.mptcp.enabled=0 here.
		t.Skipf("SKIP: no MPTCP on this kernel: socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP): %v", err)
	default:
		t.Fatalf("socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP): %v", err)
	}
}

// Soak reports whether the tests run their full lengths (make soak sets
// SOCKSPLICE_SOAK): longer streams, more connections, longer rounds. CI
// runs the short versions. In the VM the variable may also be a duration,
// the splice soak's length (make vm-test SOAK=10m), which means soak too.
func Soak() bool {
	v := os.Getenv("SOCKSPLICE_SOAK")
	return v != "" && v != "0"
}

// suffix returns a short random name suffix.
func suffix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// BinDir builds the socksplice plugin and the real bridge, host-local and
// loopback plugins once per binary and returns their directory, so a test
// never runs against stale binaries. In the test VM the host built them
// ($SOCKSPLICE_CNI_BIN).
func BinDir(t T) string {
	t.Helper()
	buildOnce.Do(func() {
		if dir := os.Getenv("SOCKSPLICE_CNI_BIN"); dir != "" {
			binDir = dir
			return
		}
		binDir, buildErr = os.MkdirTemp("", "socksplice-cni-bin-")
		if buildErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", binDir+"/",
			"./plugin",
			"github.com/containernetworking/plugins/plugins/main/bridge",
			"github.com/containernetworking/plugins/plugins/ipam/host-local",
			"github.com/containernetworking/plugins/plugins/main/loopback")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..") // the module root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building plugins: %v\n%s", err, out)
			return
		}
		buildErr = os.Rename(filepath.Join(binDir, "plugin"), filepath.Join(binDir, "socksplice"))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// PluginBinary is the socksplice plugin BinDir built.
func PluginBinary(t T) string {
	t.Helper()
	return filepath.Join(BinDir(t), "socksplice")
}

// RemoveBinDir deletes the plugins BinDir built; TestMain and Main call it.
func RemoveBinDir() {
	if binDir != "" && os.Getenv("SOCKSPLICE_CNI_BIN") == "" {
		os.RemoveAll(binDir)
	}
}

// PinDir returns a fresh, not yet existing pin directory under
// /sys/fs/bpf, removed at cleanup.
func PinDir(t T) string {
	t.Helper()
	dir := "/sys/fs/bpf/socksplice-test-" + suffix()
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	return dir
}

// TestMain is a test package's TestMain body: it runs the helper role
// when the binary was re-executed as one (see StartHelper), otherwise the
// tests, then removes the built plugins.
func TestMain(m interface{ Run() int }) {
	HelperMain()
	hold := holdNetstamp()
	code := m.Run()
	RemoveBinDir()
	if hold >= 0 {
		unix.Close(hold)
	}
	os.Exit(code)
}

// holdNetstamp keeps the kernel's receive timestamps on (a socket with
// SO_TIMESTAMPNS) for the whole test run, so that netstamp_needed_key is
// patched once, at the start, and not each time a test's first timestamp
// socket opens or its last one closes. Under TCG the stock 7.3.4 kernel
// oopsed once on an int3 of that live patch in ip_local_deliver_finish,
// executed in softirq on the other vCPU while the semantics suite's
// so-timestamp case enabled it (text_poke_bp). Returns the socket, or -1.
func holdNetstamp() int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		unix.Close(fd)
		return -1
	}
	return fd
}
