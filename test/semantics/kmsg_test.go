// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package semantics

import (
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// kmsg watches the kernel log across the suite (case 24: no new WARN, BUG
// or other splat).
type kmsg struct{ fd int }

func openKmsg(t *testing.T) *kmsg {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("SKIP-proof: the suite must watch the kernel log: %v", err)
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		t.Fatalf("/dev/kmsg: %v", err)
	}
	return &kmsg{fd: fd}
}

var splat = regexp.MustCompile(`WARNING:|BUG:|BUG |Oops|general protection|KASAN|UBSAN|lockdep|refcount_t:|list_add corruption|list_del corruption|stack-protector|Call Trace:`)

func (k *kmsg) check(t *testing.T) []Cell {
	defer unix.Close(k.fd)
	var bad []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(k.fd, buf)
		if err == unix.EPIPE { // records were overwritten: keep reading
			continue
		}
		if err != nil || n <= 0 {
			break
		}
		rec := string(buf[:n])
		if _, msg, ok := strings.Cut(rec, ";"); ok && splat.MatchString(msg) {
			bad = append(bad, strings.TrimSpace(msg))
		}
	}
	cell := Cell{Case: "dmesg-clean", Path: "all", Topo: "all", Verdict: Same, Observed: "no new WARN/BUG lines"}
	if len(bad) > 0 {
		cell.Verdict, cell.Error = Fails, strings.Join(bad, " | ")
		t.Errorf("kernel log shows new splats during the suite: %s", cell.Error)
	}
	var cells []Cell
	for _, p := range paths {
		c := cell
		c.Path = p.Name
		cells = append(cells, c)
	}
	return cells
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}
