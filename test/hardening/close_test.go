//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package hardening

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/test/testenv"
)

// Issue 14, item 4: close with unread data resets the connection as TCP
// does (also SO_LINGER 0), the FIN comes only after the ring drained, and
// urgent data sent while the peer goes away neither crashes nor differs
// from TCP. Each case runs on plain TCP (loopback, not enrolled) and on a
// spliced connection, and the splice run must show what TCP shows.
func TestHardeningCloseReset(t *testing.T) {
	testenv.WatchKernelLog(t)
	e := newEnv(t, "10.234.0.0/24", map[string]any{"mode": "splice", "ringKiB": 16})
	ln := e.listen(t, 7500)
	plain, err := testenv.ListenTCP("tcp4", "127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Close() })
	paths := []struct {
		name string
		conn func() (*net.TCPConn, *net.TCPConn, error)
	}{
		{"tcp", func() (*net.TCPConn, *net.TCPConn, error) {
			return connect(plain, func() (*net.TCPConn, error) {
				c, err := testenv.Dialer(false).Dial("tcp4", plain.Addr().String())
				if err != nil {
					return nil, err
				}
				return c.(*net.TCPConn), nil
			})
		}},
		{"splice", func() (*net.TCPConn, *net.TCPConn, error) { return e.conn(t, ln) }},
	}
	cases := []struct {
		name string
		run  func(t *testing.T, cli, srv *net.TCPConn) string
	}{
		{"unread-close", closeUnread},
		{"linger0-close", closeLinger0},
		{"write-1MiB-close", writeThenClose},
		{"oob-after-peer-close", oobAfterClose},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := map[string]string{}
			for _, p := range paths {
				base := testenv.ModuleStats(t)
				cli, srv, err := p.conn()
				if err != nil {
					t.Fatal(err)
				}
				got[p.name] = c.run(t, cli, srv)
				m := testenv.ModuleStats(t)
				t.Logf("%s: %s (module: paired +%d)", p.name, got[p.name], delta(m, base, "paired"))
				if p.name == "splice" && delta(m, base, "paired") < 1 {
					t.Errorf("the splice connection was not paired")
				}
			}
			if got["tcp"] != got["splice"] {
				t.Errorf("splice: %s\n  TCP: %s", got["splice"], got["tcp"])
			}
		})
	}
	waitNoLive(t)
}

// errName names a result for comparison: the errno, or "ok".
func errName(err error) string {
	var en unix.Errno
	var ne net.Error
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.As(err, &en):
		return unix.ErrnoName(en)
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return err.Error()
}

// waitInq waits until fd has at least n bytes to read (SIOCINQ counts the
// ring on a spliced socket).
func waitInq(fd, n int) int {
	var q int
	for i := 0; i < 100; i++ {
		q, _ = unix.IoctlGetInt(fd, unix.SIOCINQ)
		if q >= n {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return q
}

// (a) The reader closes with bytes unread: TCP sends RST, so the writer's
// next read fails with ECONNRESET.
func closeUnread(t *testing.T, cli, srv *net.TCPConn) string {
	defer cli.Close()
	if _, err := cli.Write(make([]byte, 1000)); err != nil {
		return "write: " + errName(err)
	}
	s := testenv.RawFD(t, srv)
	q := waitInq(s.Int(), 1000)
	s.Close()
	cli.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := cli.Read(make([]byte, 10))
	return fmt.Sprintf("reader had %d unread; writer's read after the close: %s", q, errName(err))
}

// (b) SO_LINGER {1, 0} and nothing unread: the close resets.
func closeLinger0(t *testing.T, cli, srv *net.TCPConn) string {
	defer cli.Close()
	if err := srv.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	cli.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := cli.Read(make([]byte, 10))
	return "peer's read after linger-0 close: " + errName(err)
}

// (c) The writer writes 1 MiB (the ring holds 16 KiB) and closes at once;
// the reader, starting late, reads exactly the 1 MiB and then EOF.
func writeThenClose(t *testing.T, cli, srv *net.TCPConn) string {
	defer srv.Close()
	payload := make([]byte, 1<<20)
	for i := range payload {
		payload[i] = byte(i*7 + i>>11)
	}
	werr := make(chan error, 1)
	go func() {
		cli.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err := cli.Write(payload)
		cli.Close()
		werr <- err
	}()
	time.Sleep(200 * time.Millisecond)
	srv.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(srv)
	wr := <-werr
	same := bytes.Equal(got, payload)
	if !same {
		t.Errorf("read %d bytes (sha %x), want the 1 MiB written (sha %x)", len(got), sha256.Sum256(got), sha256.Sum256(payload))
	}
	return fmt.Sprintf("write %s; read %d bytes intact=%v then %s", errName(wr), len(got), same, errName(err))
}

// (d) The peer closes (nothing unread), then urgent data follows twice:
// the first send goes out (the peer answers RST), the second fails.
func oobAfterClose(t *testing.T, cli, srv *net.TCPConn) string {
	c := testenv.RawFD(t, cli)
	defer c.Close()
	srv.Close()
	time.Sleep(100 * time.Millisecond)
	var out []string
	for i := 0; i < 2; i++ {
		_, err := unix.SendmsgN(c.Int(), []byte("!"), nil, nil, unix.MSG_OOB|unix.MSG_NOSIGNAL)
		out = append(out, errName(err))
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Sprintf("send(MSG_OOB) after the peer's close: %v", out)
}
