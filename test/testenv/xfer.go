// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Xfer is the helper role "xfer": a server accepts one connection, a
// client dials; both then send Bytes of seeded random data with random
// write sizes (or, with StopFile, until that file exists) while reading
// everything the peer sends, until EOF.
type Xfer struct {
	Role      string        `json:"role"` // "server" or "client"
	Addr      string        `json:"addr"` // listen or dial address, host:port
	LocalPort int           `json:"localPort,omitempty"`
	Bytes     int64         `json:"bytes"`
	Seed      uint64        `json:"seed"`
	Timeout   time.Duration `json:"timeout"` // 0: 120 s
	// SpliceRead makes the helper read with splice(2) into a pipe, as Go's
	// io.Copy between two TCP connections does.
	SpliceRead bool `json:"spliceRead,omitempty"`
	// MPTCP listens or dials with MPTCP; otherwise plain TCP (see ListenTCP).
	MPTCP bool `json:"mptcp,omitempty"`
	// StopFile, if set, makes the helper send until that file exists
	// (checked before each write) instead of Bytes: a stream that spans
	// whatever the test does meanwhile. Pace sleeps after each write.
	StopFile string        `json:"stopFile,omitempty"`
	Pace     time.Duration `json:"pace,omitempty"`
}

// XferResult is what an xfer helper reports.
type XferResult struct {
	SentSHA   string `json:"sentSHA"`
	SentBytes int64  `json:"sentBytes"`
	RecvSHA   string `json:"recvSHA"`
	RecvBytes int64  `json:"recvBytes"`
	ReadEnd   string `json:"readEnd"` // how reading stopped: EOF, an error, a timeout
	Local     string `json:"local"`
	Remote    string `json:"remote"`
	Proto     int    `json:"proto"` // SO_PROTOCOL of the connection's socket: 6 TCP, 262 MPTCP
}

func init() { Register("xfer", runXfer) }

// Payload returns n bytes of seeded random data: what an xfer helper with
// this seed sends, for tests that send it themselves.
func Payload(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8(seedBytes(seed)).Read(b)
	return b
}

// PayloadSHA is the sha256 of what an xfer helper with this seed sends.
func PayloadSHA(seed uint64, n int64) string {
	h := sha256.New()
	io.CopyN(h, rand.NewChaCha8(seedBytes(seed)), n)
	return hex.EncodeToString(h.Sum(nil))
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	for i := 0; i < 8; i++ {
		s[i] = byte(seed >> (8 * i))
	}
	return s
}

// StartXfer starts an xfer helper in c; a server is listening when it
// returns.
func (c *Container) StartXfer(t T, x Xfer) *Proc {
	t.Helper()
	if x.Timeout == 0 {
		x.Timeout = 120 * time.Second
	}
	p, err := c.StartHelper(t, Helper{Role: "xfer", Spec: x, Ready: x.Role == "server"})
	if err != nil {
		t.Fatalf("starting xfer %s: %v", x.Role, err)
	}
	return p
}

// XferResult waits for an xfer helper's report; the helper's own deadline
// bounds the wait.
func (p *Proc) XferResult() (XferResult, error) {
	var r XferResult
	err := p.Result(&r, 0)
	return r, err
}

// Exchange runs server in srv and client in cli, waits for both, and
// checks that each received exactly what the other's seed sends (computed
// here, independently of both helpers).
func Exchange(t T, srv, cli *Container, server, client Xfer) (s, c XferResult, err error) {
	t.Helper()
	sp := srv.StartXfer(t, server)
	cp := cli.StartXfer(t, client)
	return awaitExchange(sp, cp, server, client, fmt.Sprintf("%s->%s", cli.ID, srv.ID), fmt.Sprintf("%s->%s", srv.ID, cli.ID))
}

// awaitExchange waits for both helpers of an exchange and checks what
// each received against the other's seed; up and down name the client's
// and the server's direction in errors.
func awaitExchange(sp, cp *Proc, server, client Xfer, up, down string) (s, c XferResult, err error) {
	s, c, serr, cerr := awaitPair[XferResult](sp, cp)
	if serr != nil || cerr != nil {
		return s, c, fmt.Errorf("server: %v; client: %v", serr, cerr)
	}
	return s, c, checkExchange(s, c, server, client, down, up)
}

// awaitPair waits for the reports of a server and a client helper at
// once (each may wait for the other); their own deadlines bound the wait.
func awaitPair[R any](sp, cp *Proc) (s, c R, serr, cerr error) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); serr = sp.Result(&s, 0) }()
	go func() { defer wg.Done(); cerr = cp.Result(&c, 0) }()
	wg.Wait()
	return s, c, serr, cerr
}

// checkExchange checks what each end of an exchange received against
// what the other's seed sends for what it sent; down and up name the
// server's and the client's direction in errors.
func checkExchange(s, c XferResult, server, client Xfer, down, up string) error {
	return errors.Join(intact(up, c, s, client), intact(down, s, c, server))
}

// intact compares what the receiver got with what the sender's seed gives
// for what it sent (Bytes, or as many as a StopFile sender sent).
func intact(what string, sender, receiver XferResult, x Xfer) error {
	n := x.Bytes
	if x.StopFile != "" {
		n = sender.SentBytes
	}
	want := PayloadSHA(x.Seed, n)
	if sender.SentBytes != n || sender.SentSHA != want {
		return fmt.Errorf("%s: sender reports %d bytes sha %s, seed gives %d bytes sha %s", what, sender.SentBytes, sender.SentSHA, n, want)
	}
	if receiver.RecvBytes != n || receiver.RecvSHA != want {
		return fmt.Errorf("%s: received %d bytes sha %s, want %d bytes sha %s", what, receiver.RecvBytes, receiver.RecvSHA, n, want)
	}
	return nil
}

func runXfer(x Xfer, ready func()) (r XferResult, err error) {
	deadline := time.Now().Add(x.Timeout)
	conn, err := xferConn(x, deadline, ready)
	if err != nil {
		return r, err
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	r.Local, r.Remote = conn.LocalAddr().String(), conn.RemoteAddr().String()
	if r.Proto, err = soProtocol(conn); err != nil {
		return r, err
	}

	type readRes struct {
		n   int64
		sha string
		end string
		err error
	}
	rc := make(chan readRes, 1)
	go func() {
		h := sha256.New()
		if x.SpliceRead {
			n, end := spliceRead(h, conn)
			rc <- readRes{n, hex.EncodeToString(h.Sum(nil)), end, nil}
			return
		}
		buf := make([]byte, 128<<10)
		var n int64
		for {
			m, err := conn.Read(buf)
			h.Write(buf[:m])
			n += int64(m)
			if err == io.EOF {
				rc <- readRes{n, hex.EncodeToString(h.Sum(nil)), "EOF", nil}
				return
			}
			if err != nil {
				rc <- readRes{n: n, err: err}
				return
			}
		}
	}()

	src := rand.NewChaCha8(seedBytes(x.Seed))
	sizes := rand.New(rand.NewPCG(x.Seed, 7))
	h := sha256.New()
	buf := make([]byte, 256<<10)
	for left := x.Bytes; left > 0 || x.StopFile != ""; {
		if x.StopFile != "" {
			if _, err := os.Stat(x.StopFile); err == nil {
				break
			}
		}
		n := int64(1 + sizes.IntN(len(buf)))
		if x.StopFile == "" {
			n = min(n, left)
		}
		src.Read(buf[:n])
		h.Write(buf[:n])
		if _, err := conn.Write(buf[:n]); err != nil {
			return r, fmt.Errorf("write after %d bytes: %w", r.SentBytes, err)
		}
		r.SentBytes += n
		left -= n
		time.Sleep(x.Pace)
	}
	r.SentSHA = hex.EncodeToString(h.Sum(nil))
	if err := conn.CloseWrite(); err != nil {
		return r, fmt.Errorf("shutdown: %w", err)
	}
	rr := <-rc
	r.ReadEnd = rr.end
	if rr.err != nil {
		return r, fmt.Errorf("read after %d bytes: %w", rr.n, rr.err)
	}
	r.RecvBytes, r.RecvSHA = rr.n, rr.sha
	return r, nil
}

// xferConn accepts (server) or dials (client) the helper's connection.
func xferConn(x Xfer, deadline time.Time, ready func()) (*net.TCPConn, error) {
	switch x.Role {
	case "server":
		ln, err := ListenTCP("tcp", x.Addr, x.MPTCP)
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ready()
		ln.SetDeadline(deadline)
		return ln.AcceptTCP()
	case "client":
		d := Dialer(x.MPTCP)
		d.Deadline = deadline
		if x.LocalPort != 0 {
			d.LocalAddr = &net.TCPAddr{Port: x.LocalPort}
		}
		return dialRetry(d, x.Addr)
	}
	return nil, errors.New("unknown role " + x.Role)
}

// dialRetry dials addr, again for a while if it fails: the server may
// still be binding, or the local port of a connection just reset not be
// free yet.
func dialRetry(d *net.Dialer, addr string) (*net.TCPConn, error) {
	var err error
	for i := 0; i < 50; i++ {
		var c net.Conn
		if c, err = d.Dial("tcp", addr); err == nil {
			return c.(*net.TCPConn), nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, err
}

// soProtocol returns c's SO_PROTOCOL: what the kernel made of the socket
// (an MPTCP listener may hand out a plain TCP socket, after fallback).
func soProtocol(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var proto int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		proto, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("SO_PROTOCOL: %w", serr)
	}
	return proto, nil
}

// Streams are exchanges whose ends send until Stop (Xfer.StopFile):
// traffic that spans whatever a test does meanwhile.
type Streams struct {
	stop string
	list []stream
}

type stream struct {
	sp, cp         *Proc
	server, client Xfer
	up, down       string
}

// StartStreams starts a stream to each of addrs: a server in srv, a
// client in cli, each end sending data seeded from seed on, one write
// per pace. The clients may still be connecting when it returns.
func StartStreams(t T, srv, cli *Container, addrs []string, seed uint64, pace time.Duration) *Streams {
	t.Helper()
	s := &Streams{stop: filepath.Join(t.TempDir(), "stop")}
	for i, addr := range addrs {
		x := stream{
			server: Xfer{Role: "server", Addr: addr, Seed: seed + uint64(2*i), StopFile: s.stop, Pace: pace},
			client: Xfer{Role: "client", Addr: addr, Seed: seed + uint64(2*i+1), StopFile: s.stop, Pace: pace},
			up:     fmt.Sprintf("%s->%s #%d", cli.ID, srv.ID, i),
			down:   fmt.Sprintf("%s->%s #%d", srv.ID, cli.ID, i),
		}
		x.sp = srv.StartXfer(t, x.server)
		x.cp = cli.StartXfer(t, x.client)
		s.list = append(s.list, x)
	}
	return s
}

// Stop makes the streams' ends stop sending, waits for them and checks
// that every direction received exactly what its sender sent. It returns
// the bytes sent in all (both directions of every stream) and a line per
// stream saying how much went each way.
func (s *Streams) Stop() (moved int64, lines []string, err error) {
	if err := os.WriteFile(s.stop, nil, 0o644); err != nil {
		return 0, nil, err
	}
	var errs []error
	for _, x := range s.list {
		sr, cr, err := awaitExchange(x.sp, x.cp, x.server, x.client, x.up, x.down)
		errs = append(errs, err)
		moved += sr.SentBytes + cr.SentBytes
		lines = append(lines, fmt.Sprintf("%s: %d B, %s: %d B", x.up, cr.SentBytes, x.down, sr.SentBytes))
	}
	return moved, lines, errors.Join(errs...)
}
