// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package engine

import (
	"bufio"
	"bytes"
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

// MaybeRunSelfTestChild runs the self-test child and exits when argv asks
// for it; otherwise it returns at once.
func MaybeRunSelfTestChild() {
	if len(os.Args) < 2 || os.Args[1] != SelfTestArg {
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
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	rep.Payload = len(payload)

	lo0, _ := loBytes()
	got, _, err := transfer(payload, readAll)
	if err != nil {
		return fail(err)
	}
	lo1, _ := loBytes()
	rep.RecvRead, rep.RecvIntact, rep.RecvLoBytes = len(got), bytes.Equal(got, payload), lo1-lo0

	got, end, err := transfer(payload, spliceAll)
	if err != nil {
		return fail(err)
	}
	rep.SpliceRead, rep.SpliceIntact, rep.SpliceEnd = len(got), bytes.Equal(got, payload), end
	return rep
}

type reader func(c *net.TCPConn) ([]byte, string)

// transfer sends payload over a fresh loopback connection with varied
// write sizes and returns what the server-side reader got.
func transfer(payload []byte, read reader) ([]byte, string, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
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
	c, err := ln.Accept()
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	got, end := read(c.(*net.TCPConn))
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
