//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package hardening

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/test/testenv"
)

// The churn test runs before the TIME_WAIT test (declaration order): its
// final rmmod must not wait for the other's TIME_WAIT sockets.

// Issue 14, item 2b: rmmod under connection churn is refused while
// anything holds the module, and succeeds at once when everything has
// closed and the network is gone (CNI DEL, pins removed); never an oops.
// The last references are dropped by a burst of closes racing a tight
// rmmod loop: today ss_close runs on after ss_teardown's module_put
// (base->close, which may sleep), so the module may go while its code
// still runs. The module is loaded again at the end.
func TestHardeningUnloadChurn(t *testing.T) {
	klog := testenv.WatchKernelLog(t)
	ko := testenv.RequireReloadableModule(t)
	t.Logf("module refcnt at the start: %d", testenv.ModuleStats(t)["refcnt"])
	e := newEnv(t, "10.240.0.0/24", map[string]any{"mode": "splice", "ringKiB": 16})
	ln := e.listen(t, 8100)
	go testenv.Serve(ln, func(c *net.TCPConn) {
		c.ReadFrom(c)
		c.CloseWrite()
	})

	// Phase 1: churn for a while, rmmod all along: always refused.
	churn := time.Duration(envInt("SOCKSPLICE_HARDENING_SECS", 60)/4) * time.Second
	var stop atomic.Bool
	var wg sync.WaitGroup
	var conns, failures atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for !stop.Load() {
				c, err := e.cli.Dial(ln.Addr(), 10*time.Second)
				if err != nil {
					failures.Add(1)
					continue
				}
				c.SetDeadline(time.Now().Add(20 * time.Second))
				msg := make([]byte, 1+rng.IntN(40000))
				go func() { c.Write(msg); c.CloseWrite() }()
				io.Copy(io.Discard, c)
				c.Close()
				conns.Add(1)
			}
		}(w)
	}
	var tries, refused int
	var unexpected []string
	end := time.Now().Add(churn)
	for time.Now().Before(end) {
		err := testenv.RmmodSplice()
		tries++
		switch {
		case testenv.ModuleBusy(err):
			refused++
		case err == nil:
			unexpected = append(unexpected, "rmmod SUCCEEDED while the network's program and its connections were live")
			stop.Store(true)
			if err := testenv.InsmodSplice(ko); err != nil {
				t.Errorf("insmod: %v", err)
			}
			end = time.Now()
		default:
			unexpected = append(unexpected, err.Error())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("churn %v: %d echo connections (%d failed dials); rmmod tried %d times, refused %d", churn, conns.Load(), failures.Load(), tries, refused)
	for _, u := range unexpected {
		t.Errorf("rmmod during churn: %s", u)
	}
	klog.Check(t, "during the churn")

	// Phase 2: hold paired connections open, take the network away, close
	// the accepted ends with RST (no TIME_WAIT), then close the clients
	// in a burst while another thread tries rmmod without pause.
	ln.Close()
	ln2 := e.listen(t, 8101)
	type pair struct{ cli, srv *net.TCPConn }
	var held []pair
	for i := 0; i < 64; i++ {
		cli, srv, err := e.conn(t, ln2)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, pair{cli, srv})
	}
	ln2.Close()
	m := testenv.ModuleStats(t)
	t.Logf("holding %d paired connections: refcnt %d, live sockets %d", len(held), m["refcnt"], m["live_socks"])
	for _, c := range []*testenv.Container{e.srv, e.cli} {
		if err := e.net.Del(t, c); err != nil {
			t.Errorf("DEL: %v", err)
		}
	}
	if err := os.RemoveAll(e.net.PinDir); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the program goes after an RCU grace period
	for _, p := range held {
		p.srv.SetLinger(0)
		p.srv.Close()
	}
	time.Sleep(200 * time.Millisecond)
	m = testenv.ModuleStats(t)
	t.Logf("network gone, accepted ends reset: refcnt %d, live sockets %d", m["refcnt"], m["live_socks"])

	var gone atomic.Bool
	var goneAt atomic.Int64
	rmDone := make(chan int)
	spinning := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		n := 0
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) {
			n++
			err := testenv.RmmodSplice()
			if n == 1 {
				close(spinning) // refused once: the loop runs, the closes may begin
			}
			if err == nil {
				goneAt.Store(time.Now().UnixNano())
				gone.Store(true)
				break
			}
			if n%64 == 0 {
				runtime.Gosched()
			}
		}
		rmDone <- n
	}()
	<-spinning
	closed := time.Now()
	for _, p := range held {
		p.cli.Close()
	}
	var tried int
	select {
	case tried = <-rmDone:
	case <-time.After(100 * time.Second):
		t.Fatalf("the rmmod loop did not end")
	}
	if !gone.Load() {
		m = testenv.ModuleStats(t)
		t.Errorf("rmmod still refused 90 s after every connection closed and the network went (refcnt %d, live sockets %d, pairs %d)",
			m["refcnt"], m["live_socks"], m["live_pairs"])
	} else {
		after := time.Duration(goneAt.Load() - closed.UnixNano())
		t.Logf("rmmod succeeded %v after the close burst began (%d tries)", after.Round(time.Millisecond), tried)
		if after > 2*time.Second {
			t.Errorf("rmmod was refused for %v after the close burst began (the network already gone)", after.Round(100*time.Millisecond))
		}
	}
	time.Sleep(500 * time.Millisecond)
	klog.Check(t, "after the unload")
	if !testenv.ModuleLoaded() {
		if err := testenv.InsmodSplice(ko); err != nil {
			t.Fatalf("insmod %s: %v", ko, err)
		}
	}
	if !testenv.ModuleLoaded() {
		t.Fatalf("the module is not back")
	}
	t.Logf("module loaded again: %s", fmt.Sprint(testenv.ModuleStats(t)["refcnt"]))
}

// Issue 14, item 2a: once every paired connection has closed, the module
// holds no reference for them. The accepted (passive) end is the one that
// goes to TIME_WAIT here. It was cloned from the prepared listener's proto
// (.owner = THIS_MODULE), so it holds a module reference through
// sk_prot_creator, and a TIME_WAIT socket made from it another one
// (inet_twsk_alloc takes one on tw_prot's owner, the creator's): the
// reference count would stay up for the TIME_WAIT's 60 s. Two close
// orders get there: the accepted end closes first, or it shuts down
// writing and its peer's FIN arrives before its close() (TIME_WAIT is
// then entered in softirq, with the file still open).
func TestHardeningUnloadTimeWait(t *testing.T) {
	t.Run("close", func(t *testing.T) { unloadTimeWait(t, false) })
	t.Run("halfclose", func(t *testing.T) { unloadTimeWait(t, true) })
}

func unloadTimeWait(t *testing.T, half bool) {
	testenv.WatchKernelLog(t)
	e := newEnv(t, "10.239.0.0/24", map[string]any{"mode": "splice"})
	ln := e.listen(t, 8000)
	base := testenv.ModuleStats(t)
	const conns = 20
	for i := 0; i < conns; i++ {
		cli, srv, err := e.conn(t, ln)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(srv, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		if half {
			// FIN first, then the peer's FIN while the file is open:
			// FIN_WAIT2 -> TIME_WAIT in softirq, close() after.
			if err := srv.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			cli.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := cli.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("client read after the accepted end's shutdown: %d, %v (want EOF)", n, err)
			}
			cli.Close()
			srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := srv.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("accepted end's read after the client's close: %d, %v (want EOF)", n, err)
			}
			waitClosed(t, srv)
			srv.Close()
			continue
		}
		srv.Close() // the passive end closes first: it goes to TIME_WAIT
		cli.SetReadDeadline(time.Now().Add(5 * time.Second))
		cli.Read(make([]byte, 1)) // EOF
		cli.Close()
	}
	m := testenv.ModuleStats(t)
	order := "accepted end closed first"
	if half {
		order = "accepted end shut down writing, then got the peer's FIN before close()"
	}
	t.Logf("%d connections, %s: paired +%d", conns, order, delta(m, base, "paired"))
	if delta(m, base, "paired") < conns {
		t.Errorf("only %d of %d connections were paired", delta(m, base, "paired"), conns)
	}
	start := time.Now()
	limit := 2 * time.Second
	measure := time.Duration(envInt("SOCKSPLICE_HARDENING_TW_SECS", 70)) * time.Second
	back := time.Duration(-1)
	reported := false
	for time.Since(start) < measure {
		m = testenv.ModuleStats(t)
		if m["refcnt"] <= base["refcnt"] {
			back = time.Since(start)
			break
		}
		if time.Since(start) > limit && !reported {
			reported = true
			t.Errorf("module refcnt %d, %v after every paired connection closed (baseline %d: the network's program and the listener): +%d references held by closed connections",
				m["refcnt"], limit, base["refcnt"], m["refcnt"]-base["refcnt"])
		}
		time.Sleep(250 * time.Millisecond)
	}
	if back < 0 {
		t.Errorf("module refcnt still %d after %v (baseline %d)", m["refcnt"], measure, base["refcnt"])
	} else {
		t.Logf("module refcnt back to its baseline %d after %v", base["refcnt"], back.Round(100*time.Millisecond))
	}
	ln.Close()
	waitNoLive(t)
}

// waitClosed waits until c's socket has left for TIME_WAIT: the full
// socket is then TCP_CLOSE (tcp_done), its connection in a timewait sock.
func waitClosed(t *testing.T, c *net.TCPConn) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var state uint8
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		var ierr error
		if err := rc.Control(func(fd uintptr) {
			var info *unix.TCPInfo
			info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			if info != nil {
				state = info.State
			}
		}); err != nil {
			t.Fatal(err)
		}
		if ierr != nil {
			t.Fatal(ierr)
		}
		if state == 7 { // TCP_CLOSE
			return
		}
	}
	t.Fatalf("the accepted end is in TCP state %d 5 s after both FINs, not TCP_CLOSE (its TIME_WAIT)", state)
}
