//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package hardening

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/test/testenv"
)

// callResult is what one blocking call returned, and when.
type callResult struct {
	n       int
	err     error
	elapsed time.Duration
}

func (r callResult) String() string {
	return fmt.Sprintf("%d, %v after %v", r.n, r.err, r.elapsed.Round(10*time.Millisecond))
}

// boundedCall runs call on a thread of its own. If it has not returned
// after limit, unblock runs (it should make the call return), then SIGURG
// is sent to the thread every 100 ms; stuck says whether the call had to
// be unblocked. After another 5 s the test fails for good.
func boundedCall(t *testing.T, call func() (int, error), limit time.Duration, unblock func()) (r callResult, stuck bool) {
	t.Helper()
	done := make(chan callResult, 1)
	tid := make(chan int, 1)
	go func() {
		runtime.LockOSThread()
		tid <- unix.Gettid()
		start := time.Now()
		n, err := call()
		done <- callResult{n, err, time.Since(start)}
	}()
	id := <-tid
	select {
	case r = <-done:
		return r, false
	case <-time.After(limit):
	}
	unblock()
	end := time.Now().Add(5 * time.Second)
	for time.Now().Before(end) {
		select {
		case r = <-done:
			return r, true
		case <-time.After(100 * time.Millisecond):
			unix.Tgkill(os.Getpid(), id, unix.SIGURG)
		}
	}
	t.Fatalf("the call did not return even after it was unblocked and signalled (thread %d left behind)", id)
	return r, true
}

// Issue 14, item 3: with busyPollUs > 0, a blocking recv that peeks
// (MSG_PEEK) and wants more than the ring holds (MSG_WAITALL, or
// SO_RCVLOWAT above what is there) must honour SO_RCVTIMEO as TCP does.
// Today ss_busy_poll returns "data!" as soon as the ring is not empty,
// although the peek already saw those bytes, so ss_recvmsg loops between
// the ring and the busy poll and never reaches sk_wait_event, the only
// place its timeout runs down: the call spins until more bytes come.
func TestHardeningBusyPollPeek(t *testing.T) {
	testenv.WatchKernelLog(t)
	e := newEnv(t, "10.233.0.0/24", map[string]any{"mode": "splice", "busyPollUs": 1000})
	ln := e.listen(t, 7400)
	plain, err := testenv.ListenTCP("tcp4", "127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Close() })

	cases := []struct {
		name   string
		lowat  int
		flags  int
		signal bool
	}{
		{name: "peek-waitall", flags: unix.MSG_PEEK | unix.MSG_WAITALL},
		{name: "peek-rcvlowat", lowat: 100, flags: unix.MSG_PEEK},
		{name: "rcvlowat", lowat: 100}, // no peek: the ring empties, the loop sleeps
		{name: "peek-waitall-signal", flags: unix.MSG_PEEK | unix.MSG_WAITALL, signal: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := func(path string, cli, srv *net.TCPConn) callResult {
				a, b := testenv.RawFD(t, cli), testenv.RawFD(t, srv)
				defer a.Close()
				defer b.Close()
				timeo := time.Second
				if c.signal {
					timeo = 20 * time.Second
				}
				if err := testenv.SetTimeouts(b.Int(), int64(timeo), int64(timeo)); err != nil {
					t.Fatal(err)
				}
				if c.lowat > 0 {
					if err := unix.SetsockoptInt(b.Int(), unix.SOL_SOCKET, unix.SO_RCVLOWAT, c.lowat); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := unix.Write(a.Int(), make([]byte, 10)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(100 * time.Millisecond) // the 10 bytes are there
				buf := make([]byte, 100)
				var tid int
				call := func() (int, error) {
					tid = unix.Gettid()
					if c.signal {
						go func(id int) {
							time.Sleep(time.Second)
							unix.Tgkill(os.Getpid(), id, unix.SIGURG)
						}(tid)
					}
					n, _, err := unix.Recvfrom(b.Int(), buf, c.flags)
					return n, err
				}
				r, stuck := boundedCall(t, call, 4*time.Second, func() {
					unix.Write(a.Int(), make([]byte, 90)) // what it waits for
				})
				t.Logf("%s: recv(100, flags %#x, SO_RCVLOWAT %d) with 10 bytes there: %v", path, c.flags, c.lowat, r)
				if stuck {
					t.Errorf("%s: the call ignored SO_RCVTIMEO %v%s: still inside recv 4 s later, returned only once the missing 90 bytes came (%v)",
						path, timeo, map[bool]string{true: " and a signal after 1 s", false: ""}[c.signal], r)
				}
				return r
			}
			cli, srv, err := connect(plain, func() (*net.TCPConn, error) {
				c, err := testenv.Dialer(false).Dial("tcp4", plain.Addr().String())
				if err != nil {
					return nil, err
				}
				return c.(*net.TCPConn), nil
			})
			if err != nil {
				t.Fatal(err)
			}
			tcp := run("tcp", cli, srv)
			base := testenv.ModuleStats(t)
			cli, srv, err = e.conn(t, ln)
			if err != nil {
				t.Fatal(err)
			}
			sp := run("splice", cli, srv)
			m := testenv.ModuleStats(t)
			t.Logf("module: paired +%d, busy polls +%d, busy-poll hits +%d", delta(m, base, "paired"), delta(m, base, "busy_polls"), delta(m, base, "busy_poll_hits"))
			if delta(m, base, "paired") < 1 {
				t.Errorf("the splice connection was not paired")
			}
			// TCP's wait ends at the first signal, and the Go runtime's
			// own preemption signal (SIGURG, sent while the thread was
			// entering recv) can come before ours or before SO_RCVTIMEO:
			// seen on the debug kernel, TCP returning its 10 bytes at
			// once (peek-waitall-signal, and rcvlowat with the splice
			// read taking its full 1 s). SO_RCVTIMEO and our signal are
			// both at 1 s, the latest TCP would wait.
			ref := max(tcp.elapsed, time.Second)
			if (sp.err == nil) != (tcp.err == nil) || sp.elapsed > ref+time.Second {
				t.Errorf("splice returned %v, TCP %v", sp, tcp)
			}
		})
	}
	waitNoLive(t)
}
