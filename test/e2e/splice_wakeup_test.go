//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/test/testenv"
)

// TestSpliceReaderWakeups: a reader asleep in recv is woken by data, as
// TCP wakes it, and not by its peer reading what it sent. TCP wakes a
// writer for room only once it ran out of it (SOCK_NOSPACE); a wake for
// room reaches every thread asleep on the socket, so one sent after every
// read woke the other end of a request/response exchange twice per
// message (measured on the module before the fix: 84 sleeps for 40 round
// trips, plain TCP 41), a wake-up on every message's critical path.
func TestSpliceReaderWakeups(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("SKIP: needs 2 CPUs, one per end")
	}
	e := newSpliceEnv(t, "10.248.0.0/24", map[string]any{"mode": "splice"})
	cli, srv := splicedConn(t, e, 7302)

	// Plain TCP beside it: loopback of the test's own netns, which no ADD
	// enrolled.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	base := testenv.ModuleStats(t)
	pc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ps, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	if m := testenv.ModuleStats(t); m["paired"] != base["paired"] {
		t.Fatalf("the loopback connection was paired (+%d): no plain TCP to compare with", m["paired"]-base["paired"])
	}

	const n = 40
	tcp := blockedReadSleeps(t, rawBlocking(t, pc.(*net.TCPConn)), testenv.ConnFD(t, ps.(*net.TCPConn)), n)
	spl := blockedReadSleeps(t, rawBlocking(t, cli), testenv.ConnFD(t, srv), n)
	t.Logf("%d round trips, the answer 5 ms after the request was read: the blocked reader slept %d times on plain TCP, %d times spliced", n, tcp, spl)
	if spl > tcp+n/4 {
		t.Errorf("spliced reader slept %d times in %d round trips, plain TCP %d: it is woken for something other than its data", spl, n, tcp)
	}
}

// blockedReadSleeps runs n round trips of 64 bytes on the blocking
// descriptor cfd, the other end (sfd, nonblocking) reading each request
// 5 ms after it was sent and answering 5 ms later, so the client is
// asleep in recv both times. It returns how often the client's thread
// slept (voluntary context switches) meanwhile.
func blockedReadSleeps(t *testing.T, cfd, sfd, n int) int64 {
	t.Helper()
	done := echoServer(sfd, n, func(int, bool) { time.Sleep(5 * time.Millisecond) })
	restore, err := testenv.PinThread(0)
	if err != nil {
		t.Fatal(err)
	}
	defer restore()
	var before, after unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &before); err != nil {
		t.Fatal(err)
	}
	roundTrips(t, cfd, n)
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &after); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return after.Nvcsw - before.Nvcsw
}
