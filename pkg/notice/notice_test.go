// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package notice

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestLogReachesTheSystemLog writes a unique line and reads it back from
// where Log says it went (the kernel log on a node without a syslog daemon).
func TestLogReachesTheSystemLog(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: writing the kernel log needs root")
	}
	b := make([]byte, 8)
	rand.Read(b)
	tag := "notice-test-" + hex.EncodeToString(b)
	long := tag + " " + strings.Repeat("x", 2000)
	where, err := Log(long)
	if err != nil {
		t.Fatal(err)
	}
	if where != "kernel log" {
		t.Skipf("SKIP: the line went to %s; this test reads back only the kernel log", where)
	}
	out, err := exec.Command("dmesg").Output()
	if err != nil {
		t.Fatalf("dmesg: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, tag) {
			if !strings.Contains(l, "socksplice[") || !strings.HasSuffix(l, "...") {
				t.Errorf("kernel log line %q: want the socksplice[pid] tag and a truncated end", l)
			}
			t.Logf("kernel log: %.80s...", l)
			return
		}
	}
	t.Errorf("line %s not found in dmesg", tag)
}
