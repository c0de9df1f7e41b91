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

// rawBlocking returns c's descriptor switched to blocking mode, for exact
// syscalls (Go's own reads would poll instead of blocking in the kernel).
func rawBlocking(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	fd := testenv.ConnFD(t, c)
	if err := unix.SetNonblock(fd, false); err != nil {
		t.Fatal(err)
	}
	return fd
}

// TestSpliceConfigHonoured shows ringKiB and busyPollUs from the conflist
// reaching the module: a writer to a peer that does not read gets exactly
// ringKiB in before EAGAIN, and a blocking reader of a request/response
// exchange busy-polls the ring (the module's counters).
func TestSpliceConfigHonoured(t *testing.T) {
	e := newSpliceEnv(t, "10.226.0.0/24", map[string]any{"mode": "splice", "ringKiB": 8, "busyPollUs": 1000})
	ln := e.listen(t, 7300)
	base := testenv.ModuleStats(t)
	cli, err := e.dial(ln.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ln.SetDeadline(time.Now().Add(10 * time.Second))
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if m := testenv.ModuleStats(t); m["paired"]-base["paired"] != 1 {
		t.Fatalf("connection not spliced (module paired +%d)", m["paired"]-base["paired"])
	}
	cfd, sfd := rawBlocking(t, cli), rawBlocking(t, srv.(*net.TCPConn))

	// ringKiB: the server does not read; a nonblocking writer fills the
	// ring and no more.
	buf := make([]byte, 64<<10)
	var queued int
	for {
		n, err := unix.SendmsgN(cfd, buf, nil, nil, unix.MSG_DONTWAIT)
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		queued += n
	}
	inq, _ := unix.IoctlGetInt(sfd, unix.SIOCINQ)
	t.Logf("ringKiB 8: the writer queued %d bytes before EAGAIN; the reader's FIONREAD says %d", queued, inq)
	if queued != 8<<10 || inq != 8<<10 {
		t.Errorf("queued %d, FIONREAD %d: want exactly the 8 KiB ring", queued, inq)
	}
	for got := 0; got < queued; {
		n, err := unix.Read(sfd, buf)
		if err != nil {
			t.Fatalf("drain: %v", err)
		}
		got += n
	}

	// busyPollUs: 200 blocking request/response rounds of 64 bytes.
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		b := make([]byte, 64)
		for i := 0; i < 200; i++ {
			if _, err := unix.Read(sfd, b); err != nil {
				done <- err
				return
			}
			if _, err := unix.Write(sfd, b); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b0 := testenv.ModuleStats(t)
	req := make([]byte, 64)
	for i := 0; i < 200; i++ {
		if _, err := unix.Write(cfd, req); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < len(req); {
			n, err := unix.Read(cfd, req[got:])
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	m := testenv.ModuleStats(t)
	polls, hits := m["busy_polls"]-b0["busy_polls"], m["busy_poll_hits"]-b0["busy_poll_hits"]
	t.Logf("busyPollUs 1000: 200 blocking round trips: %d busy-poll spins, %d ended with data", polls, hits)
	if polls == 0 || hits == 0 {
		t.Errorf("busy-poll spins %d, hits %d: want both > 0", polls, hits)
	}
}
