// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package bpffs

import (
	"os"
	"strings"
	"testing"
)

// TestUsable: a pin directory off bpffs and outside /sys/fs/bpf is
// refused, as Ensure would refuse it; one not yet made on a writable
// bpffs is usable, and Usable creates nothing. The read-only and
// unmountable cases run in test/e2e (TestUnsupported*).
func TestUsable(t *testing.T) {
	if err := Usable(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not on a bpf filesystem") {
		t.Errorf("Usable(a tmp dir) = %v, want 'not on a bpf filesystem'", err)
	}
	if ok, err := IsBPFFS(DefaultMount); err != nil || !ok || os.Geteuid() != 0 {
		t.Skipf("SKIP: needs root and bpffs at %s (%v, %v)", DefaultMount, ok, err)
	}
	dir := DefaultMount + "/socksplice-test-usable/sub"
	if err := Usable(dir); err != nil {
		t.Errorf("Usable(%s) = %v, want nil", dir, err)
	}
	if _, err := os.Stat(DefaultMount + "/socksplice-test-usable"); !os.IsNotExist(err) {
		t.Errorf("Usable created something: %v", err)
	}
}
