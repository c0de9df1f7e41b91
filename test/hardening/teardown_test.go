//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package hardening

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/test/testenv"
)

// Issue 14, item 1: teardown (connect(AF_UNSPEC) or the peer's close)
// while other threads of the process sleep in sendmsg/recvmsg/poll on
// either end. Today ss_teardown kfree()s the ss_sock that a sleeping
// reader or writer uses again after waking (ss->pair, ss->busy_poll_us),
// and once both ends tore down ss_pair_put frees the pair and both rings
// under a reader that still holds r. On the KASAN kernel this is a
// use-after-free report; on the plain kernel it may go unseen, crash, or
// leave live objects behind. Seen on the debug kernel (2026-11-30):
// "BUG: KASAN: slab-use-after-free in ss_peer_gone" from ss_send_ring
// (ss->pair of a kfree()d ss_sock, 192-byte object, offset 32) within 40
// iterations, then general protection faults in ss_ring_read under
// ss_recvmsg (a freed ring's page array). After such an oops, threads of
// the test stay stuck in the kernel (the test reports them and stops),
// and the test binary cannot exit: the VM's time limit ends the run. On
// the plain test kernel the same run ended in a panic ("general
// protection fault" in queued_spin_lock_slowpath, from ss_peer_get's
// spin_lock_bh on a freed pair in ss_send_ring; "Fatal exception in
// interrupt"), which ends the whole guest run (kernel/vm/run.sh keeps the
// package's log as results/vm-partial-*.log).
func TestHardeningTeardownRace(t *testing.T) {
	teardownRace(t, "10.231.0.0/24", map[string]any{"mode": "splice", "ringKiB": 16})
}

// The same with busy polling: a woken reader spins on ss->busy_poll_us and
// the freed ring before it sleeps again.
func TestHardeningTeardownRaceBusyPoll(t *testing.T) {
	teardownRace(t, "10.232.0.0/24", map[string]any{"mode": "splice", "ringKiB": 16, "busyPollUs": 50})
}

// worker is one thread hammering one end with one kind of call. Each end
// gets two senders and two readers: the first thread back from a sleep
// consumes sk_err (sock_error), the second goes on to use the freed state.
type worker struct {
	kind string
	tid  atomic.Int64
	done chan struct{}
	last atomic.Value // string: the last call's result
}

func runWorker(w *worker, fd int, stop *atomic.Bool, started *sync.WaitGroup) {
	defer close(w.done)
	runtime.LockOSThread() // the thread ends with the goroutine: nothing reuses it
	w.tid.Store(int64(unix.Gettid()))
	started.Done()
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = byte(i)
	}
	for !stop.Load() {
		var n int
		var err error
		switch w.kind {
		case "send":
			n, err = unix.SendmsgN(fd, buf, nil, nil, unix.MSG_NOSIGNAL)
		case "recv":
			n, _, err = unix.Recvfrom(fd, buf, 0)
		case "peek":
			n, _, err = unix.Recvfrom(fd, buf[:64], unix.MSG_PEEK)
		case "poll":
			p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLOUT | unix.POLLPRI}}
			n, err = unix.Poll(p, 20)
		}
		w.last.Store(fmt.Sprintf("%s = %d, %v", w.kind, n, err))
		if err == unix.EBADF {
			return
		}
		if (err != nil && err != unix.EAGAIN && err != unix.EINTR) || (n == 0 && w.kind != "poll") {
			time.Sleep(50 * time.Microsecond) // disconnected: do not starve the CPUs
		}
		if w.kind == "peek" && n > 0 {
			runtime.Gosched()
		}
	}
}

func teardownRace(t *testing.T, subnet string, plugin map[string]any) {
	klog := testenv.WatchKernelLog(t)
	e := newEnv(t, subnet, plugin)
	base := testenv.ModuleStats(t)
	ln := e.listen(t, 7300)
	iters := envInt("SOCKSPLICE_HARDENING_ITERS", 2000)
	limit := time.Duration(envInt("SOCKSPLICE_HARDENING_SECS", 60)) * time.Second
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	start := time.Now()
	modes := [3]int{}
	i := 0
	for ; i < iters && time.Since(start) < limit; i++ {
		cli, srv, err := e.conn(t, ln)
		if err != nil {
			t.Fatalf("iteration %d: %v", i, err)
		}
		a, b := testenv.RawFD(t, cli), testenv.RawFD(t, srv)
		for _, f := range []*testenv.FD{a, b} {
			if err := testenv.SetTimeouts(f.Int(), int64(300*time.Millisecond), int64(300*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
		}
		// mode 0: workers on both ends, disconnect a then b; 1: b then
		// a; 2: workers on a only, b (the peer) closes, then a
		// disconnects.
		mode := i % 3
		modes[mode]++
		var stop atomic.Bool
		var started sync.WaitGroup
		var ws []*worker
		ends := []*testenv.FD{a, b}
		if mode == 2 {
			ends = ends[:1]
		}
		for _, f := range ends {
			for _, k := range []string{"send", "send", "recv", "recv", "peek", "poll"} {
				w := &worker{kind: k, done: make(chan struct{})}
				ws = append(ws, w)
				started.Add(1)
				go runWorker(w, f.Int(), &stop, &started)
			}
		}
		started.Wait()
		time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
		var derr []error
		switch mode {
		case 0:
			derr = append(derr, testenv.Disconnect(a.Int()), testenv.Disconnect(b.Int()))
		case 1:
			derr = append(derr, testenv.Disconnect(b.Int()), testenv.Disconnect(a.Int()))
		case 2:
			b.Close()
			time.Sleep(time.Duration(rng.IntN(500)) * time.Microsecond)
			derr = append(derr, testenv.Disconnect(a.Int()))
		}
		for _, err := range derr {
			if err != nil {
				t.Logf("iteration %d: connect(AF_UNSPEC): %v", i, err)
			}
		}
		time.Sleep(time.Millisecond)
		stop.Store(true)
		if stuck := waitWorkers(ws, 3*time.Second); len(stuck) > 0 {
			t.Errorf("iteration %d (mode %d): %d threads still inside a syscall 3 s after teardown (SO_RCVTIMEO/SO_SNDTIMEO 300 ms), also after SIGURG:", i, mode, len(stuck))
			for _, w := range stuck {
				t.Errorf("  %s thread %d, last call: %v", w.kind, w.tid.Load(), w.last.Load())
			}
			t.Errorf("giving up: the stuck threads are left behind")
			return
		}
		a.Close()
		b.Close()
		if i%100 == 99 && !klog.Check(t, fmt.Sprintf("after %d iterations", i+1)) {
			i++
			break
		}
	}
	ln.Close()
	m := waitNoLive(t)
	t.Logf("%d iterations (modes %v) in %v; module: paired +%d, refused +%d, ring bytes +%d; live sockets %d, pairs %d, ring bytes %d",
		i, modes, time.Since(start).Round(time.Millisecond), delta(m, base, "paired"), delta(m, base, "refused"),
		delta(m, base, "ring_bytes"), m["live_socks"], m["live_pairs"], m["live_ring_bytes"])
	if delta(m, base, "paired") < int64(i)/2 {
		t.Errorf("only %d of %d connections were paired: the race was not exercised", delta(m, base, "paired"), i)
	}
}

// waitWorkers waits up to d for every worker, then nudges the rest with
// SIGURG (Go ignores it; a sleeping syscall with a timeout returns EINTR)
// for up to d more, and returns those still running.
func waitWorkers(ws []*worker, d time.Duration) []*worker {
	deadline := time.Now().Add(d)
	for _, w := range ws {
		select {
		case <-w.done:
		case <-time.After(time.Until(deadline)):
		}
	}
	var stuck []*worker
	for _, w := range ws {
		select {
		case <-w.done:
		default:
			stuck = append(stuck, w)
		}
	}
	if len(stuck) == 0 {
		return nil
	}
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		left := stuck[:0]
		for _, w := range stuck {
			select {
			case <-w.done:
			default:
				unix.Tgkill(os.Getpid(), int(w.tid.Load()), unix.SIGURG)
				left = append(left, w)
			}
		}
		stuck = left
		if len(stuck) == 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return stuck
}
