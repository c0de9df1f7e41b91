// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/test/testenv"
)

// endRole is the helper role (testenv.Register) that runs one end of one
// connection inside a container, in a re-executed copy of this binary.
const endRole = "bench-end"

func init() { testenv.Register(endRole, runEnd) }

// EndSpec is one end of a measured connection.
type EndSpec struct {
	Role     string        `json:"role"`   // "server" or "client"
	Kind     string        `json:"kind"`   // "rr", "crr" (connect, request, response, close) or "stream"
	Family   string        `json:"family"` // "tcp", "unix" or "smc"
	Addr     string        `json:"addr"`   // ip:port, or a socket path for unix
	Size     int           `json:"size"`
	Duration time.Duration `json:"duration"` // how long the client drives the connection
	// ServerCloses (rr): the server closes the connection first, so that
	// its accepted socket, not the client's, ends in TIME_WAIT.
	ServerCloses bool `json:"serverCloses,omitempty"`
}

// EndResult is what an end reports on stdout.
type EndResult struct {
	Bytes   int64   `json:"bytes"` // payload received by this end
	Reads   int64   `json:"reads"` // reads that returned data
	Txns    int64   `json:"txns"`
	Seconds float64 `json:"seconds"` // client: its loop; stream server: first byte to EOF
	UserS   float64 `json:"userS"`
	SysS    float64 `json:"sysS"`
	VolCtx  int64   `json:"volCtx"` // voluntary context switches: sleeps

	P50us float64 `json:"p50us,omitempty"`
	P99us float64 `json:"p99us,omitempty"`
}

// The ends use blocking sockets on one locked thread, as netperf and
// sockperf do: a Go net.Conn would park in the runtime's poller and add
// an epoll round and a goroutine switch to every wait, which is not what
// an ordinary blocking application pays. A server calls ready once it
// listens.
func runEnd(s EndSpec, ready func()) (EndResult, error) {
	var r EndResult
	runtime.LockOSThread()
	sa, domain, proto, err := sockaddr(s)
	if err != nil {
		return r, err
	}
	// crr makes its connections in the measured loop; the other kinds
	// measure one connection made here.
	fd, lfd := -1, -1
	switch s.Role {
	case "server":
		if lfd, err = listenOn(s.Addr, sa, domain, proto); err != nil {
			return r, err
		}
		defer unix.Close(lfd)
		ready()
		if s.Kind != "crr" {
			if fd, _, err = unix.Accept4(lfd, unix.SOCK_CLOEXEC); err != nil {
				return r, fmt.Errorf("accept: %w", err)
			}
		}
	case "client":
		if s.Kind != "crr" {
			if fd, err = dial(s.Addr, sa, domain, proto); err != nil {
				return r, err
			}
		}
	default:
		return r, fmt.Errorf("unknown role %q", s.Role)
	}
	if fd >= 0 {
		defer unix.Close(fd)
	}
	if s.Family != "unix" && s.Kind == "rr" {
		// What netperf's TCP_RR does; the stream side keeps Nagle as an
		// application writing full buffers would.
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	ru0 := rusage()
	switch {
	case s.Kind == "rr" && s.Role == "client":
		err = rrClient(fd, s, &r)
	case s.Kind == "rr":
		err = rrServer(fd, s, &r)
	case s.Kind == "crr" && s.Role == "client":
		err = crrClient(s, sa, domain, proto, &r)
	case s.Kind == "crr":
		err = crrServer(lfd, s, &r)
	case s.Kind == "stream" && s.Role == "client":
		err = streamSender(fd, s, &r)
	case s.Kind == "stream":
		err = streamReceiver(fd, &r)
	default:
		err = fmt.Errorf("unknown kind %q", s.Kind)
	}
	ru1 := rusage()
	r.UserS = tv(ru1.Utime) - tv(ru0.Utime)
	r.SysS = tv(ru1.Stime) - tv(ru0.Stime)
	r.VolCtx = ru1.Nvcsw - ru0.Nvcsw
	return r, err
}

func listenOn(addr string, sa unix.Sockaddr, domain, proto int) (int, error) {
	lfd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if domain != unix.AF_UNIX {
		unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}
	if err := unix.Bind(lfd, sa); err != nil {
		unix.Close(lfd)
		return -1, fmt.Errorf("bind %s: %w", addr, err)
	}
	if err := unix.Listen(lfd, 8); err != nil {
		unix.Close(lfd)
		return -1, fmt.Errorf("listen: %w", err)
	}
	return lfd, nil
}

func dial(addr string, sa unix.Sockaddr, domain, proto int) (int, error) {
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect %s: %w", addr, err)
	}
	return fd, nil
}

func sockaddr(s EndSpec) (unix.Sockaddr, int, int, error) {
	if s.Family == "unix" {
		return &unix.SockaddrUnix{Name: s.Addr}, unix.AF_UNIX, 0, nil
	}
	ap, err := netip.ParseAddrPort(s.Addr)
	if err != nil {
		return nil, 0, 0, err
	}
	domain, proto := unix.AF_INET, 0
	if s.Family == "smc" {
		// AF_SMC takes AF_INET addresses; protocol 0 is SMCPROTO_SMC (IPv4).
		domain = unix.AF_SMC
	}
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}, domain, proto, nil
	}
	if s.Family == "smc" {
		proto = 1 // SMCPROTO_SMC6
	} else {
		domain = unix.AF_INET6
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}, domain, proto, nil
}

func rusage() unix.Rusage {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return ru
}

func tv(t unix.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// readFull reads exactly len(b) bytes; io.EOF when the peer closed before
// the first byte.
func readFull(fd int, b []byte, r *EndResult) error {
	for got := 0; got < len(b); {
		n, err := unix.Read(fd, b[got:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			if got == 0 {
				return errEOF
			}
			return fmt.Errorf("EOF after %d of %d bytes", got, len(b))
		}
		got += n
		r.Bytes += int64(n)
		r.Reads++
	}
	return nil
}

var errEOF = errors.New("EOF")

func writeFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b = b[n:]
	}
	return nil
}

func rrClient(fd int, s EndSpec, r *EndResult) error {
	req := make([]byte, s.Size)
	resp := make([]byte, s.Size)
	lat, err := timedLoop(s.Duration, r, func() error {
		if err := writeFull(fd, req); err != nil {
			return err
		}
		return readFull(fd, resp, r)
	})
	if err != nil {
		return err
	}
	if s.ServerCloses {
		// The last request is marked; the server answers it and closes.
		req[0] = lastRequest
		if err := writeFull(fd, req); err != nil {
			return err
		}
		var last EndResult
		if err := readFull(fd, resp, &last); err != nil {
			return err
		}
		if err := readFull(fd, resp[:1], &last); err != errEOF {
			return fmt.Errorf("after the last request: want EOF, got %v", err)
		}
	} else {
		unix.Shutdown(fd, unix.SHUT_WR)
	}
	r.P50us, r.P99us = latencyUs(lat, 50), latencyUs(lat, 99)
	return nil
}

// timedLoop runs one transaction after another for d, counting them and
// their seconds in r, and returns their latencies. The samples are
// preallocated so that the loop does not allocate (no GC in the
// measurement): one per transaction up to the cap.
func timedLoop(d time.Duration, r *EndResult, txn func() error) ([]time.Duration, error) {
	lat := make([]time.Duration, 0, 4<<20)
	start := time.Now()
	end := start.Add(d)
	for t0 := start; t0.Before(end); {
		if err := txn(); err != nil {
			return nil, err
		}
		t1 := time.Now()
		if len(lat) < cap(lat) {
			lat = append(lat, t1.Sub(t0))
		}
		r.Txns++
		t0 = t1
	}
	r.Seconds = time.Since(start).Seconds()
	return lat, nil
}

// latencyUs is the p-th percentile of lat in microseconds (lat is sorted
// in place).
func latencyUs(lat []time.Duration, p float64) float64 {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	return float64(lat[int(p/100*float64(len(lat)-1))]) / 1e3
}

func rrServer(fd int, s EndSpec, r *EndResult) error {
	buf := make([]byte, s.Size)
	for {
		if err := readFull(fd, buf, r); err == errEOF {
			return nil
		} else if err != nil {
			return err
		}
		if err := writeFull(fd, buf); err != nil {
			return err
		}
		if s.ServerCloses && buf[0] == lastRequest {
			return nil // the deferred close is the first
		}
		r.Txns++
	}
}

// lastRequest marks the client's last request when the server closes
// first (rr) or the last connection (crr); every other request is zeros.
const lastRequest = 0xff

// crrClient runs netperf's TCP_CRR for s.Duration: connect, a request,
// its response, close, one connection after another; a transaction is a
// connection, its latency from socket() to the server's FIN. The server
// closes first, as an HTTP/1.0 server does, so that its accepted sockets
// hold the TIME_WAITs, not the client's ports. A last connection carries
// lastRequest: the server answers it and returns.
func crrClient(s EndSpec, sa unix.Sockaddr, domain, proto int, r *EndResult) error {
	req := make([]byte, s.Size)
	resp := make([]byte, s.Size)
	lat, err := timedLoop(s.Duration, r, func() error {
		if err := crrOnce(s, sa, domain, proto, req, resp, r); err != nil {
			return fmt.Errorf("connection %d: %w", r.Txns+1, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	req[0] = lastRequest
	var last EndResult
	if err := crrOnce(s, sa, domain, proto, req, resp, &last); err != nil {
		return fmt.Errorf("last connection: %w", err)
	}
	r.P50us, r.P99us = latencyUs(lat, 50), latencyUs(lat, 99)
	return nil
}

func crrOnce(s EndSpec, sa unix.Sockaddr, domain, proto int, req, resp []byte, r *EndResult) error {
	fd, err := dial(s.Addr, sa, domain, proto)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := writeFull(fd, req); err != nil {
		return err
	}
	if err := readFull(fd, resp, r); err != nil {
		return err
	}
	var rest EndResult
	if err := readFull(fd, resp[:1], &rest); err != errEOF {
		return fmt.Errorf("after the response: want the server's FIN, got %v", err)
	}
	return nil
}

// crrServer answers crrClient's connections one after another and closes
// each first.
func crrServer(lfd int, s EndSpec, r *EndResult) error {
	buf := make([]byte, s.Size)
	for {
		fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err == unix.EINTR || err == unix.ECONNABORTED {
			continue
		}
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		var got EndResult // the last connection's request is not counted
		err = readFull(fd, buf, &got)
		if err == nil {
			err = writeFull(fd, buf)
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("connection %d: %w", r.Txns+1, err)
		}
		if buf[0] == lastRequest {
			return nil
		}
		r.Txns++
		r.Bytes += got.Bytes
		r.Reads += got.Reads
	}
}

func streamSender(fd int, s EndSpec, r *EndResult) error {
	buf := make([]byte, s.Size)
	for i := range buf {
		buf[i] = byte(i)
	}
	start := time.Now()
	end := start.Add(s.Duration)
	for time.Now().Before(end) {
		// A batch between clock reads keeps time.Now off the profile for
		// small writes.
		for i := 0; i < 16; i++ {
			if err := writeFull(fd, buf); err != nil {
				return err
			}
			r.Txns++
		}
	}
	r.Seconds = time.Since(start).Seconds()
	unix.Shutdown(fd, unix.SHUT_WR)
	// Wait for the receiver's close, so that the sender's CPU time covers
	// the whole transfer and the connection ends cleanly.
	var b [1]byte
	for {
		n, err := unix.Read(fd, b[:])
		if err == unix.EINTR {
			continue
		}
		if n <= 0 {
			return nil
		}
	}
}

func streamReceiver(fd int, r *EndResult) error {
	buf := make([]byte, 256<<10)
	var first time.Time
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("read after %d bytes: %w", r.Bytes, err)
		}
		if n == 0 {
			break
		}
		if r.Bytes == 0 {
			first = time.Now()
		}
		r.Bytes += int64(n)
		r.Reads++
	}
	if r.Bytes > 0 {
		r.Seconds = time.Since(first).Seconds()
	}
	return nil
}
