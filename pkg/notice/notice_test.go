// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package notice

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/socksplice/socksplice/test/testenv"
)

// TestLogReachesTheSystemLog writes a unique, over-long line and reads it
// back from the kernel log, where Log goes on a node without a syslog
// daemon: tagged, on one record, cut short.
func TestLogReachesTheSystemLog(t *testing.T) {
	testenv.RequireRoot(t)
	if testenv.HasSyslog() {
		t.Skip("SKIP: a syslog daemon listens on /dev/log, so Log writes there, which this test does not read")
	}
	klog := testenv.TailKernelLog(t)
	b := make([]byte, 8)
	rand.Read(b)
	tag := "notice-test-" + hex.EncodeToString(b)
	where, err := Log(tag + " " + strings.Repeat("x", 2000))
	if err != nil || where != "kernel log" {
		t.Fatalf("Log: went to %q, %v; want the kernel log", where, err)
	}
	got := klog.Messages(tag)
	if len(got) != 1 || !strings.HasPrefix(got[0], "socksplice[") || !strings.HasSuffix(got[0], "...") {
		t.Fatalf("kernel log records with %s: %q; want one, tagged socksplice[pid] and cut short", tag, got)
	}
	t.Logf("kernel log: %.80s...", got[0])
}
