// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package selftest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const selfTestPayload = 1 << 20

// MaybeRunChild runs the self-test child and exits when argv asks for it;
// otherwise it returns at once.
func MaybeRunChild() {
	if len(os.Args) < 2 || os.Args[1] != childArg {
		return
	}
	rep := runChild()
	json.NewEncoder(os.Stdout).Encode(rep)
	os.Exit(0)
}

func runChild() (rep childReport) {
	fail := func(err error) childReport { rep.Err = err.Error(); return rep }
	if err := loUp(); err != nil {
		return fail(fmt.Errorf("bringing lo up: %w", err))
	}
	cookie, err := ownNetnsCookie()
	if err != nil {
		return fail(err)
	}
	fmt.Printf("ready %d\n", cookie)
	if line, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil || line != "go\n" {
		return fail(fmt.Errorf("parent did not say go: %q %v", line, err))
	}
	payload := make([]byte, selfTestPayload)
	rand.NewChaCha8([32]byte{1}).Read(payload)

	for _, check := range []func([]byte) (Check, error){checkRecv, checkSplice, checkOOB, checkBackpressure, checkHalfClose} {
		c, err := check(payload)
		if err != nil {
			return fail(err)
		}
		rep.Checks = append(rep.Checks, c)
	}
	return rep
}

func checkRecv(payload []byte) (Check, error) {
	lo0, _ := loBytes()
	got, _, err := transfer(payload, readAll)
	if err != nil {
		return Check{}, err
	}
	lo1, _ := loBytes()
	intact := bytes.Equal(got, payload)
	// A paired connection leaves lo with the handshake and teardown only.
	paired := lo1-lo0 < uint64(len(payload))/4
	return Check{Name: CheckRecv, OK: intact && paired,
		Detail: fmt.Sprintf("read %d of %d bytes intact=%v; lo carried %d bytes (paired=%v)", len(got), len(payload), intact, lo1-lo0, paired)}, nil
}

func checkSplice(payload []byte) (Check, error) {
	got, end, err := transfer(payload, spliceAll)
	if err != nil {
		return Check{}, err
	}
	ok := bytes.Equal(got, payload)
	return Check{Name: CheckSpliceRead, OK: ok,
		Detail: fmt.Sprintf("read %d of %d bytes, then %s (Go's io.Copy between TCP connections reads this way)", len(got), len(payload), end)}, nil
}

// pairConn returns a connected loopback pair (client, server), plain TCP
// on both ends: Go listeners use MPTCP by default (Go 1.24+), and the
// engines leave MPTCP subflows on plain TCP, so the checks would not test
// the engine.
func pairConn() (*net.TCPConn, *net.TCPConn, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	var d net.Dialer
	d.SetMultipathTCP(false)
	c, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c.(*net.TCPConn), s.(*net.TCPConn), nil
}

func checkOOB([]byte) (Check, error) {
	c, s, err := pairConn()
	if err != nil {
		return Check{}, err
	}
	defer c.Close()
	defer s.Close()
	cr, _ := c.SyscallConn()
	sr, _ := s.SyscallConn()
	var serr error
	cr.Write(func(fd uintptr) bool {
		if _, serr = unix.Write(int(fd), []byte("ab")); serr == nil {
			if serr = unix.Sendto(int(fd), []byte("!"), unix.MSG_OOB, nil); serr == nil {
				_, serr = unix.Write(int(fd), []byte("cd"))
			}
		}
		return true
	})
	if serr != nil {
		return Check{Name: CheckOOB, Detail: "send: " + serr.Error()}, nil
	}
	c.CloseWrite()
	time.Sleep(50 * time.Millisecond)
	urgent := make([]byte, 8)
	var n int
	var rerr error
	sr.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), urgent, unix.MSG_OOB|unix.MSG_DONTWAIT)
		return true
	})
	s.SetReadDeadline(time.Now().Add(2 * time.Second))
	rest, _ := io.ReadAll(s)
	got := "error " + fmt.Sprint(rerr)
	if rerr == nil {
		got = fmt.Sprintf("%q", urgent[:n])
	}
	ok := rerr == nil && string(urgent[:n]) == "!" && string(rest) == "abcd"
	return Check{Name: CheckOOB, OK: ok, Detail: fmt.Sprintf("recv(MSG_OOB) got %s, in band %q (want \"!\" and \"abcd\")", got, rest)}, nil
}

// checkBackpressure: a nonblocking writer to a peer that does not read must
// see EAGAIN within FlowMemoryBound, as on TCP. The writer stops at twice
// the bound, well below the global tcp_mem limit, which stops any path.
func checkBackpressure([]byte) (Check, error) {
	bound := FlowMemoryBound()
	c, s, err := pairConn()
	if err != nil {
		return Check{}, err
	}
	defer c.Close()
	defer s.Close()
	cr, _ := c.SyscallConn()
	buf := make([]byte, 64<<10)
	total := 0
	var werr error
	cr.Write(func(fd uintptr) bool {
		for total < 2*bound {
			n, err := unix.Write(int(fd), buf)
			if err != nil {
				werr = err
				return true
			}
			total += n
		}
		return true
	})
	switch {
	case werr == unix.EAGAIN && total <= bound:
		return Check{Name: CheckBackpressure, OK: true, Detail: fmt.Sprintf("EAGAIN after %d bytes (bound %d)", total, bound)}, nil
	case werr == unix.EAGAIN:
		return Check{Name: CheckBackpressure, Detail: fmt.Sprintf("EAGAIN only after %d bytes (bound %d)", total, bound)}, nil
	case werr != nil:
		return Check{Name: CheckBackpressure, Detail: fmt.Sprintf("write failed after %d bytes: %v", total, werr)}, nil
	}
	return Check{Name: CheckBackpressure, Detail: fmt.Sprintf("writer queued %d bytes without EAGAIN (bound %d)", total, bound)}, nil
}

// checkHalfClose: after shutdown(SHUT_WR) a send fails with EPIPE, as on
// TCP, and the peer reads exactly what came before, then EOF. (Measured:
// sockmap's redirect ignores the shutdown and delivers the byte.)
func checkHalfClose(payload []byte) (Check, error) {
	c, s, err := pairConn()
	if err != nil {
		return Check{}, err
	}
	defer c.Close()
	defer s.Close()
	data := payload[:64<<10]
	if _, err := c.Write(data); err != nil {
		return Check{Name: CheckHalfClose, Detail: "write: " + err.Error()}, nil
	}
	if err := c.CloseWrite(); err != nil {
		return Check{Name: CheckHalfClose, Detail: "shutdown: " + err.Error()}, nil
	}
	cr, _ := c.SyscallConn()
	var werr error
	cr.Write(func(fd uintptr) bool {
		_, werr = unix.Write(int(fd), []byte("x"))
		return true
	})
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, rerr := io.ReadAll(s)
	ok := werr == unix.EPIPE && rerr == nil && bytes.Equal(got, data)
	return Check{Name: CheckHalfClose, OK: ok, Detail: fmt.Sprintf("send after SHUT_WR: %v (want EPIPE); peer read %d of %d bytes, then %v",
		werr, len(got), len(data), rerr)}, nil
}

// FlowMemoryBound is what TCP lets one flow hold in the kernel while its
// reader does not keep up: the two buffer limits, tcp_rmem[2] +
// tcp_wmem[2], plus 1 MiB of slack.
func FlowMemoryBound() int {
	return sysctlMax("/proc/sys/net/ipv4/tcp_rmem") + sysctlMax("/proc/sys/net/ipv4/tcp_wmem") + 1<<20
}

// sysctlMax returns the third (maximum) value of a tcp_rmem-style sysctl,
// or 0 if it cannot be read.
func sysctlMax(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0
	}
	v, _ := strconv.Atoi(f[2])
	return v
}

type reader func(c *net.TCPConn) ([]byte, string)

// transfer sends payload over a fresh loopback connection with varied
// write sizes and returns what the server-side reader got.
func transfer(payload []byte, read reader) ([]byte, string, error) {
	c, s, err := pairConn()
	if err != nil {
		return nil, "", err
	}
	defer s.Close()
	errc := make(chan error, 1)
	go func() {
		defer c.Close() // EOF for the reader once everything is written
		rng := rand.New(rand.NewPCG(3, 4))
		for off := 0; off < len(payload); {
			n := min(1+rng.IntN(64<<10), len(payload)-off)
			if _, err := c.Write(payload[off : off+n]); err != nil {
				errc <- err
				return
			}
			off += n
		}
		errc <- nil
	}()
	s.SetDeadline(time.Now().Add(3 * time.Second))
	got, end := read(s)
	if err := <-errc; err != nil {
		return nil, "", fmt.Errorf("writer: %w", err)
	}
	return got, end, nil
}

func readAll(c *net.TCPConn) ([]byte, string) {
	got, err := io.ReadAll(c)
	if err != nil {
		return got, err.Error()
	}
	return got, "EOF"
}

func spliceAll(c *net.TCPConn) ([]byte, string) {
	var buf bytes.Buffer
	_, end := SpliceRead(&buf, c)
	return buf.Bytes(), end
}

// SpliceRead reads c until EOF the way Go's io.Copy between two TCP
// connections does, with splice(2) into a pipe, and copies the data to w.
// It returns the byte count and how the read ended ("EOF", an errno, or a
// timeout from c's deadline).
func SpliceRead(w io.Writer, c *net.TCPConn) (int64, string) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return 0, err.Error()
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err.Error()
	}
	var total int64
	buf := make([]byte, 64<<10)
	for {
		var n int64
		var serr error
		err := rc.Read(func(fd uintptr) bool {
			n, serr = unix.Splice(int(fd), nil, p[1], nil, len(buf), unix.SPLICE_F_NONBLOCK)
			return !errors.Is(serr, unix.EAGAIN)
		})
		switch {
		case err != nil:
			return total, "timeout (" + err.Error() + ")"
		case serr != nil:
			return total, serr.Error()
		case n == 0:
			return total, "EOF"
		}
		for n > 0 {
			m, err := unix.Read(p[0], buf[:n])
			if err != nil {
				return total, "pipe: " + err.Error()
			}
			w.Write(buf[:m])
			total += int64(m)
			n -= int64(m)
		}
	}
}

func loUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

func ownNetnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
}

// loBytes returns the bytes lo received in this process's netns.
func loBytes() (uint64, error) {
	b, err := os.ReadFile("/proc/self/net/dev")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) != "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) > 0 {
			return strconv.ParseUint(f[0], 10, 64)
		}
	}
	return 0, errors.New("lo not found in /proc/self/net/dev")
}
