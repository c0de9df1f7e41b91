//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socksplice/socksplice/test/testenv"
)

// backToBaseline waits until every spliced socket has let go: no live
// sockets, pairs or ring memory, and the module's reference count is what
// it was before the traffic (TIME_WAIT sockets hold nothing of it).
func backToBaseline(t *testing.T, base map[string]int64) {
	t.Helper()
	var m map[string]int64
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
		m = testenv.ModuleStats(t)
		if m["live_socks"] == 0 && m["live_pairs"] == 0 && m["live_ring_bytes"] == 0 &&
			m["refcnt"] == base["refcnt"] {
			t.Logf("back to baseline: live sockets 0, pairs 0, ring bytes 0, refcnt %d", m["refcnt"])
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("not back to baseline 10 s after close: live sockets %d, pairs %d, ring bytes %d, refcnt %d (baseline %d)",
		m["live_socks"], m["live_pairs"], m["live_ring_bytes"], m["refcnt"], base["refcnt"])
}

// stressEnv is a splice network attached at node level, so that this
// process's own sockets in the two containers are spliced.
type stressEnv struct {
	srv, cli *testenv.Container
	addr     netip.Addr
}

func newStressEnv(t *testing.T, subnet string) *stressEnv {
	return newSpliceEnv(t, subnet, map[string]any{"mode": "splice", "ringKiB": 16})
}

func newSpliceEnv(t *testing.T, subnet string, plugin map[string]any) *stressEnv {
	testenv.RequireRoot(t)
	testenv.RequireSpliceModule(t)
	n := testenv.NewNetwork(t, testenv.NetOpts{Subnet: subnet, PinDir: testenv.PinDir(t),
		Plugin: plugin, NoCgroups: true})
	e := &stressEnv{srv: testenv.NewContainer(t, "ssrv"), cli: testenv.NewContainer(t, "scli")}
	for _, c := range []*testenv.Container{e.srv, e.cli} {
		if _, err := n.AddNoCgroup(t, c); err != nil {
			t.Fatalf("ADD: %v", err)
		}
	}
	e.addr = e.srv.IP(n)
	return e
}

func (e *stressEnv) listen(t *testing.T, port uint16) *net.TCPListener {
	return e.srv.Listen(t, netip.AddrPortFrom(e.addr, port))
}

func (e *stressEnv) dial(addr net.Addr) (*net.TCPConn, error) {
	return e.cli.Dial(addr, 10*time.Second)
}

// collect waits for the workers, fails the test with each error they
// sent, stops the server and returns the module's stats.
func collect(t *testing.T, wg *sync.WaitGroup, errs chan error, ln net.Listener) map[string]int64 {
	t.Helper()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ln.Close()
	return testenv.ModuleStats(t)
}

// echo serves every connection by copying it back to itself: Go's
// ReadFrom between TCP connections uses splice(2) both ways, which goes
// through the module's splice_read and its sendmsg.
func echo(ln *net.TCPListener) {
	testenv.Serve(ln, func(c *net.TCPConn) {
		c.ReadFrom(c)
		c.CloseWrite()
	})
}

// echoRandom fills payload from rng, sends it through the echo server at
// ln on a new connection and checks that exactly it comes back.
func (e *stressEnv) echoRandom(ln net.Listener, rng *rand.Rand, payload []byte) error {
	for j := range payload {
		payload[j] = byte(rng.Uint32())
	}
	c, err := e.dial(ln.Addr())
	if err != nil {
		return err
	}
	return roundTrip(c, payload)
}

// roundTrip sends payload and checks that exactly it comes back.
func roundTrip(c *net.TCPConn, payload []byte) error {
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	got, rerr := io.ReadAll(c)
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("read after %d bytes: %w", len(got), rerr)
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("echo differs: sent %d bytes (sha %x), got %d (sha %x)",
			len(payload), sha256.Sum256(payload), len(got), sha256.Sum256(got))
	}
	return nil
}

// TestSpliceChurn opens 64 x 100 connections (64 x 300 under make soak),
// each echoing a random payload of up to 48 KiB (3 rings), and checks
// every byte, that nearly all of them were spliced, and that nothing of
// the module stays behind. (64 x 300 took 152 s of CI's guest.)
func TestSpliceChurn(t *testing.T) {
	e := newStressEnv(t, "10.224.0.0/24")
	base := testenv.ModuleStats(t)
	ln := e.listen(t, 7100)
	go echo(ln)

	const workers = 64
	perWorker := 100
	if testenv.Soak() {
		perWorker = 300
	}
	var failed atomic.Int64
	var bytesOK atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for i := 0; i < perWorker; i++ {
				msg := make([]byte, 1+rng.IntN(48<<10))
				if err := e.echoRandom(ln, rng, msg); err != nil {
					if failed.Add(1) <= 5 {
						errs <- fmt.Errorf("worker %d connection %d: %w", w, i, err)
					}
					return
				}
				bytesOK.Add(int64(2 * len(msg)))
			}
		}(w)
	}
	m := collect(t, &wg, errs, ln)
	paired := m["paired"] - base["paired"]
	t.Logf("churn: %d connections, %d bytes echoed intact; module: paired +%d, refused +%d, ring bytes +%d, ring-full waits +%d",
		workers*perWorker, bytesOK.Load(), paired, m["refused"]-base["refused"], m["ring_bytes"]-base["ring_bytes"], m["ring_full_waits"]-base["ring_full_waits"])
	if paired < int64(workers*perWorker*9/10) {
		t.Errorf("only %d of %d connections were spliced", paired, workers*perWorker)
	}
	backToBaseline(t, base)
}

// TestSpliceSoak runs mixed request/response and stream traffic on
// spliced connections for 1 minute, 10 under make soak, or as long as
// SOCKSPLICE_SOAK says when it is a duration (make vm-test SOAK=30m):
// every response and every streamed byte is checked against what was
// sent.
func TestSpliceSoak(t *testing.T) {
	dur := time.Minute
	if d, err := time.ParseDuration(os.Getenv("SOCKSPLICE_SOAK")); err == nil && d > 0 {
		dur = d
	} else if testenv.Soak() {
		dur = 10 * time.Minute
	}
	e := newStressEnv(t, "10.225.0.0/24")
	base := testenv.ModuleStats(t)
	ln := e.listen(t, 7200)
	go echo(ln)
	end := time.Now().Add(dur)

	var rrTxns, streamBytes atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	// Request/response: one connection each, 1 KiB requests echoed back,
	// reconnecting every 1000 transactions so teardown runs under load.
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			req, resp := make([]byte, 1024), make([]byte, 1024)
			for time.Now().Before(end) {
				c, err := e.dial(ln.Addr())
				if err != nil {
					report(err)
					return
				}
				for i := 0; i < 1000 && time.Now().Before(end); i++ {
					for j := range req {
						req[j] = byte(rng.Uint32())
					}
					c.SetDeadline(time.Now().Add(30 * time.Second))
					if _, err := c.Write(req); err != nil {
						report(fmt.Errorf("rr %d: write: %w", w, err))
						c.Close()
						return
					}
					if _, err := io.ReadFull(c, resp); err != nil || !bytes.Equal(req, resp) {
						report(fmt.Errorf("rr %d: transaction %d: response differs or failed (%v)", w, i, err))
						c.Close()
						return
					}
					rrTxns.Add(1)
				}
				c.Close()
			}
		}(w)
	}
	// Streams: 4 MiB at a time with random write sizes, checked on return.
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			payload := make([]byte, 4<<20)
			for time.Now().Before(end) {
				if err := e.echoRandom(ln, rng, payload); err != nil {
					report(fmt.Errorf("stream %d: %w", w, err))
					return
				}
				streamBytes.Add(2 * int64(len(payload)))
			}
		}(w)
	}
	m := collect(t, &wg, errs, ln)
	t.Logf("soak %v: %d RR transactions and %d stream bytes checked; module: paired +%d, refused +%d, ring bytes +%d",
		dur, rrTxns.Load(), streamBytes.Load(), m["paired"]-base["paired"], m["refused"]-base["refused"], m["ring_bytes"]-base["ring_bytes"])
	if rrTxns.Load() == 0 || streamBytes.Load() == 0 || m["paired"] == base["paired"] {
		t.Errorf("the soak moved nothing through the splice engine")
	}
	backToBaseline(t, base)
}
