// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package semantics

import (
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/pkg/selftest"
	"github.com/socksplice/socksplice/test/testenv"
)

// Receive-side API cases: what recv, ioctls, poll and epoll report.

// peek: MSG_PEEK then read return the same bytes.
func peek(e *Env) (string, error) {
	c, s := e.Pair()
	if err := sendSettled(c, s, []byte("hello, world")); err != nil {
		return "", err
	}
	buf := make([]byte, 64)
	n, _, err := recvFrom(s, buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	peeked := string(buf[:max(n, 0)])
	if err != nil {
		peeked = errName(err)
	}
	n, err = rd(s, buf)
	read := string(buf[:max(n, 0)])
	if err != nil {
		read = errName(err)
	}
	return fmt.Sprintf("peek %q, read %q", peeked, read), nil
}

// msgTrunc: on TCP, recv(MSG_TRUNC) discards the bytes without copying them
// (with MSG_PEEK it only counts them), and the stream goes on after them.
func msgTrunc(e *Env) (string, error) {
	c, s := e.Pair()
	if err := sendSettled(c, s, []byte("0123456789")); err != nil {
		return "", err
	}
	var out []string
	for _, f := range []int{unix.MSG_PEEK | unix.MSG_TRUNC, unix.MSG_TRUNC} {
		buf := []byte("....")
		n, _, err := recvFrom(s, buf, f|unix.MSG_DONTWAIT)
		out = append(out, fmt.Sprintf("n=%d %s buf=%q", n, errName(err), buf))
	}
	buf := make([]byte, 64)
	n, err := rd(s, buf)
	out = append(out, fmt.Sprintf("read %q %s", buf[:max(n, 0)], errName(err)))
	return strings.Join(out, "; "), nil
}

// waitAll: MSG_WAITALL returns the full length although it arrives in pieces.
func waitAll(e *Env) (string, error) {
	c, s := e.Pair()
	const size = 64 << 10
	go func() {
		data := testenv.Payload(30, size)
		for i := 0; i < 16; i++ {
			writeAll(c, data[i*4096:(i+1)*4096])
			time.Sleep(2 * time.Millisecond)
		}
	}()
	buf := make([]byte, size)
	n, _, err := recvFrom(s, buf, unix.MSG_WAITALL)
	return fmt.Sprintf("recv(MSG_WAITALL, %d) = %d (%s)", size, n, errName(err)), nil
}

// inq: FIONREAD/SIOCINQ is exact after the peer wrote N bytes; SIOCOUTQ
// drains to 0 once they are read.
func inq(e *Env) (string, error) {
	c, s := e.Pair()
	if err := writeAll(c, testenv.Payload(40, 1000)); err != nil {
		return "", err
	}
	pollFor(s, unix.POLLIN, 2*time.Second)
	waitFor(200*time.Millisecond, func() bool { return ioctlInt(s, unix.SIOCINQ) == 1000 })
	in := ioctlInt(s, unix.SIOCINQ)
	readFull(s, 1000)
	drained := waitFor(2*time.Second, func() bool { return ioctlInt(c, unix.SIOCOUTQ) == 0 })
	return fmt.Sprintf("SIOCINQ=%d after 1000 written; SIOCINQ=%d after reading; SIOCOUTQ reaches 0: %v",
		in, ioctlInt(s, unix.SIOCINQ), drained), nil
}

// rcvLowat: poll readiness and read honour SO_RCVLOWAT.
func rcvLowat(e *Env) (string, error) {
	c, s := e.Pair()
	unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1000)
	writeAll(c, testenv.Payload(50, 500))
	early := pollFor(s, unix.POLLIN, 300*time.Millisecond)&unix.POLLIN != 0
	writeAll(c, testenv.Payload(51, 600))
	late := pollFor(s, unix.POLLIN, 2*time.Second)&unix.POLLIN != 0
	time.Sleep(20 * time.Millisecond)
	n, err := rd(s, make([]byte, 4096))
	return fmt.Sprintf("readable after 500 B: %v; after 1100 B: %v; read %d (%s)", early, late, n, errName(err)), nil
}

// epollOn returns an epoll instance watching fd for events, closed at
// cleanup.
func (e *Env) epollOn(fd int, events uint32) int {
	e.t.Helper()
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { unix.Close(ep) })
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: events, Fd: int32(fd)}); err != nil {
		e.t.Fatal(err)
	}
	return ep
}

func epollWait(ep int, d time.Duration) uint32 {
	ev := make([]unix.EpollEvent, 1)
	n, err := epollWaitSys(ep, ev, int(d/time.Millisecond))
	if err != nil || n == 0 {
		return 0
	}
	return ev[0].Events
}

func evNames(ev uint32) string {
	if ev == 0 {
		return "none"
	}
	s := ""
	for _, f := range []struct {
		bit  uint32
		name string
	}{{unix.EPOLLIN, "IN"}, {unix.EPOLLOUT, "OUT"}, {unix.EPOLLRDHUP, "RDHUP"}, {unix.EPOLLHUP, "HUP"}, {unix.EPOLLERR, "ERR"}} {
		if ev&f.bit != 0 {
			if s != "" {
				s += "|"
			}
			s += f.name
		}
	}
	return s
}

// epollLevel: level-triggered EPOLLIN repeats while data is unread.
func epollLevel(e *Env) (string, error) {
	c, s := e.Pair()
	ep := e.epollOn(s, unix.EPOLLIN)
	before := epollWait(ep, 100*time.Millisecond)
	writeAll(c, []byte("0123456789"))
	first := epollWait(ep, 2*time.Second)
	again := epollWait(ep, 100*time.Millisecond)
	readFull(s, 10)
	after := epollWait(ep, 100*time.Millisecond)
	return fmt.Sprintf("idle %s; after write %s; again unread %s; after read %s",
		evNames(before), evNames(first), evNames(again), evNames(after)), nil
}

// epollEdge: edge-triggered EPOLLIN fires once per arrival.
func epollEdge(e *Env) (string, error) {
	c, s := e.Pair()
	ep := e.epollOn(s, unix.EPOLLIN|unix.EPOLLET)
	writeAll(c, []byte("a"))
	first := epollWait(ep, 2*time.Second)
	again := epollWait(ep, 100*time.Millisecond)
	writeAll(c, []byte("b"))
	second := epollWait(ep, 2*time.Second)
	return fmt.Sprintf("first write %s; no new data %s; second write %s", evNames(first), evNames(again), evNames(second)), nil
}

// epollRdhup: the peer's shutdown(SHUT_WR) raises EPOLLRDHUP.
func epollRdhup(e *Env) (string, error) {
	c, s := e.Pair()
	ep := e.epollOn(s, unix.EPOLLIN|unix.EPOLLRDHUP)
	unix.Shutdown(c, unix.SHUT_WR)
	return "after peer SHUT_WR: " + evNames(epollWait(ep, 2*time.Second)), nil
}

// rcvTimeout: SO_RCVTIMEO bounds a blocking read with nothing to read.
func rcvTimeout(e *Env) (string, error) {
	_, s := e.Pair()
	unix.SetsockoptTimeval(s, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200000})
	start := time.Now()
	_, err := rd(s, make([]byte, 16))
	el := time.Since(start)
	return fmt.Sprintf("read -> %s after 200ms timeout: within [150ms, 1s]: %v", errName(err), el >= 150*time.Millisecond && el < time.Second), nil
}

// sndTimeout: SO_SNDTIMEO bounds a blocking write to a peer that does not
// read, once the flow's buffers (selftest.FlowMemoryBound) are full. As in
// backpressure, the writer stops at twice the bound, below the global
// tcp_mem pressure line.
func sndTimeout(e *Env) (string, error) {
	c, _ := e.Pair()
	unix.SetsockoptTimeval(c, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Usec: 200000})
	bound := selftest.FlowMemoryBound()
	buf := make([]byte, 1<<20)
	var total int
	var err error
	timedOut := false
	start := time.Now()
	// Bounded by volume and wall time; what counts is whether a write timed
	// out (a short write or EAGAIN) before the bound, not how far it got.
	for total < 2*bound && time.Since(start) < 10*time.Second {
		var n int
		n, err = wr(c, buf)
		total += max(n, 0)
		if err == unix.EAGAIN || (err == nil && n < len(buf)) {
			timedOut = true
			break
		}
		if err != nil {
			return "", fmt.Errorf("write: %s", errName(err))
		}
	}
	e.t.Logf("%s/%s: timed out %v after %d B (bound %d)", e.Path.Name, e.Topo, timedOut, total, bound)
	return fmt.Sprintf("a blocking write to a non-reading peer times out within tcp_rmem[2]+tcp_wmem[2]+1MiB: %v",
		timedOut && total <= bound), nil
}
