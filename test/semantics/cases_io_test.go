// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package semantics

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/pkg/selftest"
	"github.com/socksplice/socksplice/test/testenv"
)

// Cases for the other ways data enters and leaves a socket.

// backpressure: a non-reading peer makes a nonblocking writer get EAGAIN
// within the flow's bound (selftest.FlowMemoryBound), and EPOLLOUT stays off
// once the flow is full; EPOLLOUT returns after the reader drains. The
// writer stops at twice the bound: far enough to show an unbounded queue,
// and far below the global tcp_mem pressure line, which blocks any path and
// would hide the difference (the 4 GiB test guest reaches it at 245 MiB).
func backpressure(e *Env) (string, error) {
	c, s := e.Pair()
	if err := unix.SetNonblock(c, true); err != nil {
		return "", err
	}
	ep := e.epollOn(c, unix.EPOLLOUT)
	bound := selftest.FlowMemoryBound()
	buf := make([]byte, 64<<10)
	total, eagainAt, full := 0, -1, false
	// Write until EAGAIN, then until EPOLLOUT stays off for 300ms: in-flight
	// ACKs may open some room after the first EAGAIN.
	for total < 2*bound && !full {
		n, err := wr(c, buf)
		if n > 0 {
			total += n
		}
		if errors.Is(err, unix.EAGAIN) {
			if eagainAt < 0 {
				eagainAt = total
			}
			full = epollWait(ep, 300*time.Millisecond)&unix.EPOLLOUT == 0
		} else if err != nil {
			return "", fmt.Errorf("write: %s", errName(err))
		}
	}
	e.t.Logf("%s/%s: first EAGAIN after %d B, %d B queued in all (bound %d)", e.Path.Name, e.Topo, eagainAt, total, bound)
	if _, err := readFull(s, total); err != nil {
		return "", fmt.Errorf("draining %d bytes: %w", total, err)
	}
	drained := epollWait(ep, 2*time.Second)&unix.EPOLLOUT != 0
	return fmt.Sprintf("EAGAIN within tcp_rmem[2]+tcp_wmem[2]+1MiB: %v; then no EPOLLOUT while full: %v; EPOLLOUT after drain: %v",
		eagainAt >= 0 && eagainAt <= bound, full, drained), nil
}

// spliceRead: splice(2) from the socket into a pipe, as Go's io.Copy
// between TCP connections does.
func spliceRead(e *Env) (string, error) {
	c, s := e.Conns()
	data := testenv.Payload(60, 1<<20)
	go func() {
		c.Write(data)
		c.CloseWrite()
	}()
	s.SetDeadline(time.Now().Add(5 * time.Second))
	var got bytes.Buffer
	n, end := selftest.SpliceRead(&got, s)
	if end != "EOF" || !bytes.Equal(got.Bytes(), data) {
		return "", fmt.Errorf("read %d of %d bytes intact=%v, then %s", n, len(data), bytes.Equal(got.Bytes(), data), end)
	}
	return "1 MiB intact, then EOF", nil
}

// spliceWrite: vmsplice(2) into a pipe, splice(2) from it into the socket.
func spliceWrite(e *Env) (string, error) {
	c, s := e.Pair()
	data := testenv.Payload(61, 1<<20)
	errc := make(chan error, 1)
	go func() {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			errc <- err
			return
		}
		defer unix.Close(p[0])
		defer unix.Close(p[1])
		for off := 0; off < len(data); {
			chunk := data[off:min(off+64<<10, len(data))]
			iov := []unix.Iovec{{Base: &chunk[0]}}
			iov[0].SetLen(len(chunk))
			n, err := vmsplice(p[1], iov, 0)
			if err != nil {
				errc <- fmt.Errorf("vmsplice: %w", err)
				return
			}
			for left := n; left > 0; {
				m, err := splice(p[0], nil, c, nil, left, 0)
				if err != nil {
					errc <- fmt.Errorf("splice: %w", err)
					return
				}
				left -= int(m)
			}
			off += n
		}
		errc <- unix.Shutdown(c, unix.SHUT_WR)
	}()
	got, err := readUntilEOF(s)
	if werr := <-errc; werr != nil {
		return "", werr
	}
	if err != nil || !bytes.Equal(got, data) {
		return "", fmt.Errorf("read %d of %d bytes (%s)", len(got), len(data), errName(err))
	}
	return "1 MiB intact, then EOF", nil
}

// sendfile: sendfile(2) from a file into the socket.
func sendfile(e *Env) (string, error) {
	c, s := e.Pair()
	data := testenv.Payload(62, 1<<20)
	f, err := os.CreateTemp(e.t.TempDir(), "sendfile")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return "", err
	}
	errc := make(chan error, 1)
	go func() {
		var off int64
		for off < int64(len(data)) {
			if _, err := sendfileSys(c, int(f.Fd()), &off, len(data)-int(off)); err != nil {
				errc <- err
				return
			}
		}
		errc <- unix.Shutdown(c, unix.SHUT_WR)
	}()
	got, err := readUntilEOF(s)
	if werr := <-errc; werr != nil {
		return "", fmt.Errorf("sendfile: %s", errName(werr))
	}
	if err != nil || !bytes.Equal(got, data) {
		return "", fmt.Errorf("read %d of %d bytes (%s)", len(got), len(data), errName(err))
	}
	return "1 MiB intact, then EOF", nil
}

// ioCopyProxy: a proxy in the middle copies one connection into another
// with Go's io.Copy (splice inside). Both hops are on the path under test.
func ioCopyProxy(e *Env) (string, error) {
	c1, s1 := e.Conns()
	c2, s2 := e.Conns()
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range []*net.TCPConn{c1, s1, c2, s2} {
		c.SetDeadline(deadline)
	}
	data := testenv.Payload(63, 4<<20)
	var wg sync.WaitGroup
	var copied int64
	var cerr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		c1.Write(data)
		c1.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		copied, cerr = io.Copy(c2, s1)
		c2.CloseWrite()
	}()
	var got bytes.Buffer
	_, rerr := got.ReadFrom(s2)
	wg.Wait()
	if cerr != nil || rerr != nil || !bytes.Equal(got.Bytes(), data) {
		return "", fmt.Errorf("proxy copied %d of %d bytes (%v), far end got %d (%v)", copied, len(data), cerr, got.Len(), rerr)
	}
	return "4 MiB intact through the proxy", nil
}

// zerocopy: MSG_ZEROCOPY sends arrive intact and completions are reported.
func zerocopy(e *Env) (string, error) {
	c, s := e.Pair()
	if err := unix.SetsockoptInt(c, unix.SOL_SOCKET, unix.SO_ZEROCOPY, 1); err != nil {
		return "", fmt.Errorf("SO_ZEROCOPY: %s", errName(err))
	}
	const sends, size = 4, 64 << 10
	data := testenv.Payload(64, sends*size)
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < sends; i++ {
			if _, err := sendmsgN(c, data[i*size:(i+1)*size], nil, nil, unix.MSG_ZEROCOPY); err != nil {
				errc <- fmt.Errorf("send: %s", errName(err))
				return
			}
		}
		errc <- nil
	}()
	got, err := readFull(s, len(data))
	if werr := <-errc; werr != nil {
		return "", werr
	}
	if err != nil || !bytes.Equal(got, data) {
		return "", fmt.Errorf("read %d of %d bytes (%s)", len(got), len(data), errName(err))
	}
	// Completions arrive on the error queue as ranges of send numbers.
	var last uint32
	covered := waitFor(2*time.Second, func() bool {
		oob := make([]byte, 256)
		_, oobn, _, _, err := recvmsg(c, nil, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if err != nil {
			return last == sends-1
		}
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, m := range msgs {
			if len(m.Data) >= 16 { // sock_extended_err: ee_info .. ee_data
				last = uint32(m.Data[12]) | uint32(m.Data[13])<<8 | uint32(m.Data[14])<<16 | uint32(m.Data[15])<<24
			}
		}
		return last == sends-1
	})
	return fmt.Sprintf("intact; completions cover all %d sends: %v", sends, covered), nil
}

// oob: an urgent byte is delivered out of band, the rest in band.
func oob(e *Env) (string, error) {
	c, s := e.Pair()
	writeAll(c, []byte("ab"))
	if _, err := sendmsgN(c, []byte("!"), nil, nil, unix.MSG_OOB); err != nil {
		return fmt.Sprintf("send(MSG_OOB) -> %s", errName(err)), nil
	}
	writeAll(c, []byte("cd"))
	unix.Shutdown(c, unix.SHUT_WR)
	time.Sleep(100 * time.Millisecond)
	buf := make([]byte, 8)
	n, _, err := recvFrom(s, buf, unix.MSG_OOB|unix.MSG_DONTWAIT)
	urgent := errName(err)
	if err == nil {
		urgent = fmt.Sprintf("%q", buf[:n])
	}
	rest, err := readUntilEOF(s)
	return fmt.Sprintf("recv(MSG_OOB) -> %s; in band %q (%s)", urgent, rest, errName(err)), nil
}

// corkNodelay: TCP_CORK and TCP_NODELAY do not change the byte stream.
func corkNodelay(e *Env) (string, error) {
	c, s := e.Pair()
	data := testenv.Payload(65, 200<<10)
	errc := make(chan error, 1)
	go func() {
		write := func(from, to, step int) error {
			for i := from; i < to; i += step {
				if err := writeAll(c, data[i:min(i+step, to)]); err != nil {
					return fmt.Errorf("write at %d: %s", i, errName(err))
				}
			}
			return nil
		}
		unix.SetsockoptInt(c, unix.IPPROTO_TCP, unix.TCP_CORK, 1)
		err := write(0, 100<<10, 1000)
		unix.SetsockoptInt(c, unix.IPPROTO_TCP, unix.TCP_CORK, 0)
		unix.SetsockoptInt(c, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		if err == nil {
			err = write(100<<10, len(data), 7)
		}
		unix.Shutdown(c, unix.SHUT_WR)
		errc <- err
	}()
	got, err := readUntilEOF(s)
	if werr := <-errc; werr != nil {
		return "", fmt.Errorf("writer: %v (reader got %d bytes)", werr, len(got))
	}
	if err != nil || !bytes.Equal(got, data) {
		return "", fmt.Errorf("read %d of %d bytes (%s); SIOCINQ %d; sender SIOCOUTQ %d", len(got), len(data), errName(err),
			ioctlInt(s, unix.SIOCINQ), ioctlInt(c, unix.SIOCOUTQ))
	}
	return "corked and nodelay writes intact", nil
}
