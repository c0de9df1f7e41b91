// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package runtime

// Root filesystems for containers, built locally: no registry is
// reachable from the test machines.

import (
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// helperPath is where busyboxRootfs puts ./boxtool, which runs testenv's
// helper roles (such as xfer), inside the root filesystem.
const helperPath = "/boxtool"

// busyboxRootfs returns a new root filesystem in a temporary directory:
// busybox-static with a few applets linked (sh, sleep, cat, ls, ip) and
// the static boxtool at helperPath. It skips when busybox is not
// the static build (package busybox-static).
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	bb := "/bin/busybox"
	if err := requireStatic(bb); err != nil {
		t.Skipf("SKIP: %s is not usable in an empty root filesystem (install busybox-static): %v", bb, err)
	}
	root := t.TempDir()
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, bb, filepath.Join(root, "bin", "busybox"))
	for _, applet := range []string{"sh", "sleep", "cat", "ls", "ip"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	buildHelper(t, filepath.Join(root, helperPath))
	return root
}

// buildHelper builds ./boxtool static (no libc in the container) to dst.
func buildHelper(t *testing.T, dst string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-trimpath", "-o", dst, "./boxtool")
	cmd.Dir = filepath.Dir(file)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the container helper: %v\n%s", err, out)
	}
}

// requireStatic fails unless path is an ELF executable without an
// interpreter (statically linked).
func requireStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return &os.PathError{Op: "check", Path: path, Err: errDynamic}
		}
	}
	return nil
}

var errDynamic = errors.New("dynamically linked")

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
