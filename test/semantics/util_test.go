// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package semantics

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/sys/unix"
)

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// errName turns an error into what the application would see: "ok", an
// errno name such as "ECONNRESET", or the error text.
func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e)
	}
	if errors.Is(err, io.EOF) {
		return "EOF"
	}
	return err.Error()
}

// writeAll writes b to a blocking fd.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := wr(fd, b)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// sendSettled writes b to c and gives it time to reach s: until s polls
// readable (at most 2 s), and 20 ms more.
func sendSettled(c, s int, b []byte) error {
	if err := writeAll(c, b); err != nil {
		return err
	}
	pollFor(s, unix.POLLIN, 2*time.Second)
	time.Sleep(20 * time.Millisecond)
	return nil
}

// readUntilEOF reads a blocking fd until read returns 0 or an error.
func readUntilEOF(fd int) ([]byte, error) {
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := rd(fd, buf)
		if n > 0 {
			out = append(out, buf[:n]...)
		}
		if err != nil {
			return out, err
		}
		if n == 0 {
			return out, nil
		}
	}
}

// readFull reads exactly n bytes from a blocking fd.
func readFull(fd int, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, 64<<10)
	for len(out) < n {
		m, err := rd(fd, buf[:min(len(buf), n-len(out))])
		if err != nil {
			return out, err
		}
		if m == 0 {
			return out, fmt.Errorf("EOF after %d of %d bytes", len(out), n)
		}
		out = append(out, buf[:m]...)
	}
	return out, nil
}

// pollFor polls fd for events within d and returns the revents.
func pollFor(fd int, events int16, d time.Duration) int16 {
	p := []unix.PollFd{{Fd: int32(fd), Events: events}}
	n, err := pollSys(p, int(d/time.Millisecond))
	if err != nil || n == 0 {
		return 0
	}
	return p[0].Revents
}

// waitFor retries cond every millisecond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return cond()
}

func ioctlInt(fd int, req uint) int {
	v, err := unix.IoctlGetInt(fd, req)
	if err != nil {
		return -1
	}
	return v
}
