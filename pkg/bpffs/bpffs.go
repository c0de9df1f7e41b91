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

// Ensure makes sure dir can hold pins: it mounts bpffs at /sys/fs/bpf when
// dir lies under it and nothing is mounted there yet (some hosts never mount
// it), then creates dir.
func Ensure(dir string) error {
	anc := dir
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
	ok, err := IsBPFFS(anc)
	if err != nil {
		return fmt.Errorf("pinDir %s: %w", dir, err)
	}
	if !ok {
		if dir != DefaultMount && !strings.HasPrefix(dir, DefaultMount+"/") {
			return fmt.Errorf("pinDir %s: not on a bpf filesystem (mount one, or use a directory under %s)", dir, DefaultMount)
		}
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
