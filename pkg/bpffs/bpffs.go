// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package bpffs makes sure a pin directory lives on a BPF filesystem.
package bpffs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/pkg/crashpoint"
)

// DefaultMount is where bpffs is conventionally mounted.
const DefaultMount = "/sys/fs/bpf"

// IsBPFFS reports whether path is on a BPF filesystem.
func IsBPFFS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, err
	}
	return st.Type == unix.BPF_FS_MAGIC, nil
}

// existing returns dir's deepest ancestor (or dir) that exists, whether it
// is on bpffs, and, when it is not, whether bpffs may be mounted for dir
// (at DefaultMount, which dir lies under).
func existing(dir string) (anc string, onBPFFS bool, err error) {
	anc = dir
	for {
		if _, err := os.Stat(anc); err == nil {
			break
		}
		parent := filepath.Dir(anc)
		if parent == anc {
			break
		}
		anc = parent
	}
	onBPFFS, err = IsBPFFS(anc)
	if err != nil {
		return "", false, fmt.Errorf("pinDir %s: %w", dir, err)
	}
	if !onBPFFS && dir != DefaultMount && !strings.HasPrefix(dir, DefaultMount+"/") {
		return "", false, fmt.Errorf("pinDir %s: not on a bpf filesystem (mount one, or use a directory under %s)", dir, DefaultMount)
	}
	return anc, onBPFFS, nil
}

// Ensure makes sure dir can hold pins: it mounts bpffs at /sys/fs/bpf when
// dir lies under it and nothing is mounted there yet (some hosts never mount
// it), then creates dir.
func Ensure(dir string) error {
	_, ok, err := existing(dir)
	if err != nil {
		return err
	}
	if !ok {
		if err := os.MkdirAll(DefaultMount, 0o755); err != nil {
			return fmt.Errorf("pinDir %s: %w", dir, err)
		}
		if err := unix.Mount("bpffs", DefaultMount, "bpf", 0, "mode=0700"); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("pinDir %s: mounting bpffs at %s: %w", dir, DefaultMount, err)
		}
	}
	_, missing := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pinDir %s: %w", dir, err)
	}
	if missing != nil {
		crashpoint.Done(crashpoint.PinDirCreate)
	}
	return nil
}

// Usable says why Ensure would fail for dir, without doing anything: dir
// (or what of it exists) is not on bpffs and bpffs cannot be mounted for
// it (not under /sys/fs/bpf, or the process may not mount: no
// CAP_SYS_ADMIN), or it sits on a read-only mount.
func Usable(dir string) error {
	anc, ok, err := existing(dir)
	if err != nil {
		return err
	}
	if !ok {
		if !capable(unix.CAP_SYS_ADMIN) {
			return fmt.Errorf("pinDir %s: no bpf filesystem at %s, and this process may not mount one (no CAP_SYS_ADMIN)", dir, DefaultMount)
		}
		return nil
	}
	if err := unix.Access(anc, unix.W_OK); errors.Is(err, unix.EROFS) {
		return fmt.Errorf("pinDir %s: %s is on a read-only mount", dir, anc)
	}
	return nil
}

// capable says whether capability c is in this process's effective set.
func capable(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[c/32].Effective&(1<<(uint(c)%32)) != 0
}
