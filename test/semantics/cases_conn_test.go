// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package semantics

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/pkg/selftest"
	"github.com/socksplice/socksplice/test/testenv"
)

// Cases about connections as a whole: liveness, churn, mixed enrollment,
// memory.

// keepalive: an idle paired connection still probes, and times out a peer
// that vanished (its link goes down, so nothing answers and nothing resets).
func keepalive(e *Env) (string, error) {
	c, _ := e.Pair()
	unix.SetsockoptInt(c, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	unix.SetsockoptInt(c, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 1)
	unix.SetsockoptInt(c, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 1)
	unix.SetsockoptInt(c, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 2)
	unix.SetsockoptTimeval(c, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 15})
	if err := e.SetLink(false); err != nil {
		return "", err
	}
	defer e.SetLink(true)
	start := time.Now()
	_, err := rd(c, make([]byte, 16))
	el := time.Since(start)
	return fmt.Sprintf("idle read ends with %s within 10s: %v", errName(err), el < 10*time.Second), nil
}

// churn: 64 workers x 300 short connections, each with a unique token that
// the server echoes; no token reaches the wrong connection, no early EOF.
func churn(e *Env) (string, error) {
	const workers, per = 64, 300
	ln := e.Listen()
	go testenv.Serve(ln, func(s *net.TCPConn) {
		s.SetDeadline(time.Now().Add(10 * time.Second))
		tok := make([]byte, 8)
		if _, err := io.ReadFull(s, tok); err == nil {
			s.Write(tok)
		}
	})
	var wrong, early, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				c, err := e.Dial(ln.Addr())
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				tok := make([]byte, 8)
				binary.BigEndian.PutUint64(tok, uint64(w)<<32|uint64(i))
				c.Write(tok)
				got, err := io.ReadAll(c)
				c.Close()
				switch {
				case err != nil:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				case len(got) < 8:
					early.Add(1)
				case !bytes.Equal(got, tok):
					wrong.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return "", fmt.Errorf("%d connections failed (first: %v)", f, firstErr.Load())
	}
	return fmt.Sprintf("%d connections: wrong token %d, early EOF %d", workers*per, wrong.Load(), early.Load()), nil
}

// unenrolledPeer: when one end is not enrolled the connection stays plain
// TCP and works.
func unenrolledPeer(e *Env) (string, error) {
	if err := e.UnenrollClient(); err != nil {
		return "", fmt.Errorf("unenrolling the client: %w", err)
	}
	before := e.paired()
	ln := e.Listen()
	c, err := e.Dial(ln.Addr())
	if err != nil {
		return "", err
	}
	defer c.Close()
	s, err := ln.AcceptTCP()
	if err != nil {
		return "", err
	}
	defer s.Close()
	paired := e.paired() - before
	deadline := time.Now().Add(10 * time.Second)
	c.SetDeadline(deadline)
	s.SetDeadline(deadline)
	data := testenv.Payload(70, 1<<20)
	go func() { c.Write(data); c.CloseWrite() }()
	var got bytes.Buffer
	if _, err := got.ReadFrom(s); err != nil || !bytes.Equal(got.Bytes(), data) {
		return "", fmt.Errorf("got %d of %d bytes (%v)", got.Len(), len(data), err)
	}
	return fmt.Sprintf("1 MiB intact; sockets paired: %d", paired), nil
}

// memInfo returns SO_MEMINFO: [rmem_alloc rcvbuf wmem_alloc sndbuf
// fwd_alloc wmem_queued optmem backlog drops].
func memInfo(fd int) [9]uint32 {
	var m [9]uint32
	l := uint32(unsafe.Sizeof(m))
	unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&m[0])), uintptr(unsafe.Pointer(&l)), 0)
	return m
}

// slowReader: a fast writer and a slow reader; the memory the kernel holds
// for the flow (receiver rmem_alloc + sender wmem_queued, from SO_MEMINFO,
// plus the splice module's ring pages) stays within selftest.FlowMemoryBound.
func slowReader(e *Env) (string, error) {
	c, s := e.Pair()
	limit := int64(selftest.FlowMemoryBound())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var written atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		unix.SetNonblock(c, true)
		buf := make([]byte, 256<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, err := wr(c, buf)
			if n > 0 {
				written.Add(int64(n))
			}
			if err == unix.EAGAIN {
				pollFor(c, unix.POLLOUT, 10*time.Millisecond)
			} else if err != nil {
				return
			}
		}
	}()
	var peak int64
	buf := make([]byte, 4096)
	end := time.Now().Add(2 * time.Second)
	var read int64
	for time.Now().Before(end) {
		n, _ := rd(s, buf)
		read += int64(max(n, 0))
		rm, sm := memInfo(s), memInfo(c)
		held := int64(rm[0]) + int64(sm[5])
		if e.Path.Module {
			// The splice ring is the module's memory, not the socket's:
			// SO_MEMINFO does not see it. Count every live ring page (this
			// flow's and any other still open, which only overstates).
			held += testenv.ModuleStats(e.t)["live_ring_bytes"]
		}
		if held > peak {
			peak = held
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	e.t.Logf("%s/%s: slow reader read %d B while the writer queued %d B; peak kernel memory %d B (bound %d)",
		e.Path.Name, e.Topo, read, written.Load(), peak, limit)
	return fmt.Sprintf("peak socket memory within tcp_rmem[2]+tcp_wmem[2]+1MiB: %v", peak <= limit), nil
}
