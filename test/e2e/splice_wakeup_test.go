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

// TestSpliceReaderWakeups: how a read of a spliced socket wakes the
// other end. A thread asleep in recv for the answer to what it sent is
// woken once its request was read (the wake-ahead: it comes out of idle
// while the answer is made; without it sockperf 1 KiB ping-pong ran at
// 0.70-0.76 of the rate), and by its data; so it sleeps twice per round
// trip where TCP's sleeps once, never more. A poller is not woken for
// nothing: an edge-triggered epoll asking for input and output (what Go's
// netpoll asks) sees no event between its request and the answer, as on
// TCP; the module before this test (its wake was EPOLLOUT to every
// sleeper) gave one per message.
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
	tcpC, tcpS := rawBlocking(t, pc.(*net.TCPConn)), testenv.ConnFD(t, ps.(*net.TCPConn))
	splC, splS := rawBlocking(t, cli), testenv.ConnFD(t, srv)

	const n = 40
	tcp := blockedReadSleeps(t, tcpC, tcpS, n)
	spl := blockedReadSleeps(t, splC, splS, n)
	t.Logf("%d round trips, the answer 5 ms after the request was read: the blocked reader slept %d times on plain TCP, %d times spliced", n, tcp, spl)
	if spl > tcp+n+n/4 {
		t.Errorf("spliced reader slept %d times in %d round trips, plain TCP %d: woken more than once per message for nothing", spl, n, tcp)
	}
	if spl < tcp+n/2 {
		t.Errorf("spliced reader slept %d times in %d round trips, plain TCP %d: the wake-ahead after its request was read is gone", spl, n, tcp)
	}

	tcpEv := epollEventsForNothing(t, tcpC, tcpS, n)
	splEv := epollEventsForNothing(t, splC, splS, n)
	t.Logf("%d round trips under edge-triggered epoll (in and out): events before the answer: plain TCP %d, spliced %d", n, tcpEv, splEv)
	if splEv > tcpEv+n/4 {
		t.Errorf("spliced epoll waiter got %d events with no answer to read in %d round trips, plain TCP %d: a poller is woken for nothing", splEv, n, tcpEv)
	}
}

// epollEventsForNothing runs n round trips of 64 bytes on cfd, waiting
// for each answer in an edge-triggered epoll for input and output, the
// other end (sfd) reading each request 5 ms after it was sent and
// answering 5 ms later. It returns how many events came while there was
// no answer to read.
func epollEventsForNothing(t *testing.T, cfd, sfd, n int) int {
	t.Helper()
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(cfd)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, cfd, &ev); err != nil {
		t.Fatal(err)
	}
	defer unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, cfd, nil)
	evs := make([]unix.EpollEvent, 4)
	// The state at registration: writable, reported once.
	if _, err := testenv.RetryEINTR(func() (int, error) { return unix.EpollWait(ep, evs, 0) }); err != nil {
		t.Fatal(err)
	}
	done := echoServer(sfd, n, func(int, bool) { time.Sleep(5 * time.Millisecond) })
	nothing := 0
	b := make([]byte, 64)
	for i := 0; i < n; i++ {
		if _, err := unix.Write(cfd, b); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < len(b); {
			k, err := testenv.RetryEINTR(func() (int, error) { return unix.EpollWait(ep, evs, 5000) })
			if err != nil {
				t.Fatal(err)
			}
			if k == 0 {
				t.Fatalf("round trip %d: no event in 5 s", i)
			}
			r, _, err := unix.Recvfrom(cfd, b[got:], unix.MSG_DONTWAIT)
			if err == unix.EAGAIN {
				nothing++
				continue
			}
			if err != nil || r == 0 {
				t.Fatalf("round trip %d: read %d, %v", i, r, err)
			}
			got += r
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return nothing
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
