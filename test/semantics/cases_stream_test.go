// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package semantics

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/test/testenv"
)

// Stream cases: the byte stream itself, its ends, and teardown.

// integrity sends size bytes each way at once with random write sizes.
func integrity(size int) func(e *Env) (string, error) {
	return func(e *Env) (string, error) {
		c, s := e.Conns()
		deadline := time.Now().Add(60 * time.Second)
		c.SetDeadline(deadline)
		s.SetDeadline(deadline)
		up, down := testenv.Payload(1, size), testenv.Payload(2, size)
		var wg sync.WaitGroup
		var gotUp, gotDown []byte
		var e1, e2, e3, e4 error
		send := func(conn *net.TCPConn, b []byte, seed uint64, errp *error) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, 1))
			for len(b) > 0 {
				n := min(1+r.IntN(128<<10), len(b))
				if _, err := conn.Write(b[:n]); err != nil {
					*errp = err
					return
				}
				b = b[n:]
			}
			*errp = conn.CloseWrite()
		}
		recv := func(conn *net.TCPConn, out *[]byte, errp *error) {
			defer wg.Done()
			var buf bytes.Buffer
			_, *errp = buf.ReadFrom(conn)
			*out = buf.Bytes()
		}
		wg.Add(4)
		go send(c, up, 3, &e1)
		go send(s, down, 4, &e2)
		go recv(s, &gotUp, &e3)
		go recv(c, &gotDown, &e4)
		wg.Wait()
		for _, err := range []error{e1, e2, e3, e4} {
			if err != nil {
				return "", err
			}
		}
		if !bytes.Equal(gotUp, up) || !bytes.Equal(gotDown, down) {
			return "", fmt.Errorf("data differs: up %d/%d bytes (sha %s want %s), down %d/%d bytes",
				len(gotUp), size, sum(gotUp), sum(up), len(gotDown), size)
		}
		return "intact both ways", nil
	}
}

// bothWriteFirst: each side writes 4 MiB before reading anything.
func bothWriteFirst(e *Env) (string, error) {
	c, s := e.Conns()
	const size = 4 << 20
	deadline := time.Now().Add(20 * time.Second)
	c.SetDeadline(deadline)
	s.SetDeadline(deadline)
	var wg sync.WaitGroup
	werr := make([]error, 2)
	for i, conn := range []*net.TCPConn{c, s} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, werr[i] = conn.Write(testenv.Payload(uint64(10+i), size))
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// Give the writers a head start: how much they get done before the
	// reads begin depends on buffer sizes, not on semantics.
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	for i, conn := range []*net.TCPConn{s, c} {
		got := make([]byte, size)
		if _, err := io.ReadFull(conn, got); err != nil {
			return "", fmt.Errorf("read: %w", err)
		}
		if !bytes.Equal(got, testenv.Payload(uint64(10+i), size)) {
			return "", fmt.Errorf("data differs")
		}
	}
	<-done
	for _, err := range werr {
		if err != nil {
			return "", err
		}
	}
	return "no deadlock; intact", nil
}

// writeThenClose: the last bytes arrive, then EOF.
func writeThenClose(e *Env) (string, error) {
	c, s := e.Pair()
	data := testenv.Payload(20, 300<<10)
	if err := writeAll(c, data); err != nil {
		return "", err
	}
	unix.Close(c)
	got, err := readUntilEOF(s)
	if err != nil {
		return "", fmt.Errorf("read after %d bytes: %s", len(got), errName(err))
	}
	return fmt.Sprintf("read %d bytes intact=%v, then EOF", len(got), bytes.Equal(got, data)), nil
}

// halfClose: SHUT_WR gives the peer EOF, and the peer can still answer.
func halfClose(e *Env) (string, error) {
	c, s := e.Pair()
	if err := writeAll(c, []byte("ping")); err != nil {
		return "", err
	}
	if err := unix.Shutdown(c, unix.SHUT_WR); err != nil {
		return "", err
	}
	got, err := readUntilEOF(s)
	if err != nil {
		return "", fmt.Errorf("server read: %s", errName(err))
	}
	if err := writeAll(s, []byte("pong")); err != nil {
		return "", fmt.Errorf("server write after peer shutdown: %s", errName(err))
	}
	unix.Shutdown(s, unix.SHUT_WR)
	back, err := readUntilEOF(c)
	return fmt.Sprintf("server got %q then EOF; client got %q (%s)", got, back, errName(err)), nil
}

// lingerReset: close with SO_LINGER 0 resets; the peer sees ECONNRESET.
func lingerReset(e *Env) (string, error) {
	c, s := e.Pair()
	if err := writeAll(c, []byte("x")); err != nil {
		return "", err
	}
	// Let the byte land, so both paths reset a connection with nothing unread
	// in flight at the sender.
	pollFor(s, unix.POLLIN, 2*time.Second)
	buf := make([]byte, 1)
	rd(s, buf)
	unix.SetsockoptLinger(c, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(c)
	pollFor(s, unix.POLLIN|unix.POLLERR|unix.POLLHUP, 2*time.Second)
	n, err := rd(s, make([]byte, 16))
	_, err2 := rd(s, make([]byte, 16))
	return fmt.Sprintf("read -> n=%d %s; next read -> %s", max(n, 0), errName(err), errName(err2)), nil
}

// closeUnreadReset: closing a socket with received data still unread resets
// the connection (RFC 2525; tcp_close): the peer gets ECONNRESET, not EOF,
// and a later send fails.
func closeUnreadReset(e *Env) (string, error) {
	c, s := e.Pair()
	if err := writeAll(c, []byte("unread")); err != nil {
		return "", err
	}
	if pollFor(s, unix.POLLIN, 2*time.Second)&unix.POLLIN == 0 {
		return "", fmt.Errorf("the data never arrived")
	}
	unix.Close(s)
	pollFor(c, unix.POLLIN|unix.POLLERR|unix.POLLHUP, 2*time.Second)
	n, err := rd(c, make([]byte, 16))
	_, werr := unix.SendmsgN(c, []byte("x"), nil, nil, unix.MSG_NOSIGNAL)
	return fmt.Sprintf("read -> n=%d %s; send -> %s", max(n, 0), errName(err), errName(werr)), nil
}
