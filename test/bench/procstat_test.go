// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// A command with a space and parentheses of its own, as the kernel
	// prints it: fields count from the last ')'.
	const stat = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 464 0 0 0 123 45 0 0 20 0 1 0 4823016 10600448 1180 18446744073709551615"
	p, err := parseProcStat(stat)
	if err != nil {
		t.Fatal(err)
	}
	if p.Comm != "my (odd) cmd" || p.State != 'S' || p.UserS != 1.23 || p.SysS != 0.45 {
		t.Errorf("got %+v, want comm %q, S, 1.23 s user, 0.45 s system", p, "my (odd) cmd")
	}
	for _, bad := range []string{"", "4242 sockperf S 1", "4242 (sockperf) S 1 2 3", "4242 (sockperf) S 1 2 3 4 5 6 7 8 9 10 x 12"} {
		if p, err := parseProcStat(bad); err == nil {
			t.Errorf("%q: no error, got %+v", bad, p)
		}
	}
}

// TestZombieCPU: a child's CPU time read from /proc/PID/stat after it
// exited and before it was reaped is what wait4 then reports for it.
func TestZombieCPU(t *testing.T) {
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done")
	if err := cmd.Start(); err != nil {
		t.Skipf("SKIP: no sh: %v", err)
	}
	if err := waitExited(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	p, err := readProcCPU(cmd.Process.Pid, "sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	ru := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	got := p.UserS + p.SysS
	t.Logf("summary: zombie's /proc/PID/stat: %.2f s user + %.2f s system (state %c); wait4: %.3f s", p.UserS, p.SysS, p.State, ru)
	if p.State != 'Z' {
		t.Errorf("state %c, want Z (exited, not reaped)", p.State)
	}
	// /proc counts in 10 ms ticks, wait4 in microseconds.
	if got <= 0 || got < ru-0.02 || got > ru+0.02 {
		t.Errorf("/proc says %.3f s, wait4 %.3f s", got, ru)
	}
	if _, err := readProcCPU(os.Getpid(), "not-this-program"); err == nil || !strings.Contains(err.Error(), "not \"not-this-program\"") {
		t.Errorf("a PID of another program: got %v", err)
	}
}

func TestSocketFDs(t *testing.T) {
	n0, err := socketFDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := waitSockets(os.Getpid(), func(n int) bool { return n == n0+1 }, time.Second); err != nil {
		t.Errorf("with a listener: %d sockets (%v), want %d", n, err, n0+1)
	}
	ln.Close()
	if n, err := waitSockets(os.Getpid(), func(n int) bool { return n <= n0 }, 50*time.Millisecond); err != nil || n != n0 {
		t.Errorf("after close: %d sockets (%v), want %d", n, err, n0)
	}
	if _, err := waitSockets(os.Getpid(), func(n int) bool { return n > n0+5 }, 20*time.Millisecond); err == nil {
		t.Error("waiting for sockets that never open: no error")
	}
}
