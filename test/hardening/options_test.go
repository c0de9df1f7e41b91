//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package hardening

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/test/testenv"
)

// kTLS, from linux/tls.h.
const (
	h3TLSTX            = 1
	h3TLSRX            = 2
	h3TLS12            = 0x0303
	h3TLSCipherAESGCM  = 51
	h3TLSCryptoInfoLen = 40 // struct tls12_crypto_info_aes_gcm_128
)

// h3TLSInfo is a tls12_crypto_info_aes_gcm_128 with key material from
// seed.
func h3TLSInfo(seed byte) string {
	b := make([]byte, h3TLSCryptoInfoLen)
	binary.LittleEndian.PutUint16(b[0:], h3TLS12)
	binary.LittleEndian.PutUint16(b[2:], h3TLSCipherAESGCM)
	for i := 4; i < 36; i++ { // iv[8], key[16], salt[4], and the first rec_seq bytes
		b[i] = seed + byte(i)
	}
	for i := 32; i < 40; i++ {
		b[i] = 0 // rec_seq starts at 0
	}
	return string(b)
}

// h3KTLS switches both ends of a connection to kTLS (a's TX is b's RX
// and the other way round).
func h3KTLS(t *testing.T, a, b *net.TCPConn) error {
	t.Helper()
	for _, c := range []*net.TCPConn{a, b} {
		if err := unix.SetsockoptString(h3Fd(t, c), unix.SOL_TCP, unix.TCP_ULP, "tls"); err != nil {
			return fmt.Errorf("TCP_ULP tls: %w", err)
		}
	}
	for _, s := range []struct {
		c       *net.TCPConn
		opt     int
		keySeed byte
	}{{a, h3TLSTX, 1}, {b, h3TLSRX, 1}, {b, h3TLSTX, 101}, {a, h3TLSRX, 101}} {
		if err := unix.SetsockoptString(h3Fd(t, s.c), unix.SOL_TLS, s.opt, h3TLSInfo(s.keySeed)); err != nil {
			return fmt.Errorf("SOL_TLS %d: %w", s.opt, err)
		}
	}
	return nil
}

// h3PlainLoopback is a connection on 127.0.0.1 in this process's own
// netns, which no splice network enrolls.
func h3PlainLoopback(t *testing.T) (cli, srv *net.TCPConn) {
	t.Helper()
	ln, err := testenv.ListenTCP("tcp4", "127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := testenv.Dialer(false).Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cli = c.(*net.TCPConn)
	t.Cleanup(func() { cli.Close() })
	ln.SetDeadline(time.Now().Add(10 * time.Second))
	if srv, err = ln.AcceptTCP(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return cli, srv
}

// TestHardeningKTLSOnPairedRefused (issue 14, item 7): TCP_ULP "tls" on
// a paired socket is refused with EBUSY and the connection goes on
// carrying its bytes intact, while an unrelated connection (loopback in
// a netns no network enrolls) gets kTLS both ways, at the same time, with
// its data intact.
func TestHardeningKTLSOnPairedRefused(t *testing.T) {
	e, _ := h3NewEnv(t, "10.244.0.0/24", map[string]any{"mode": "splice", "ringKiB": 256})
	cli, srv := e.pairedConn(t, 7440)
	base := testenv.ModuleStats(t)
	pc, ps := h3PlainLoopback(t)
	if m := testenv.ModuleStats(t); m["paired"] != base["paired"] || m["live_socks"] != base["live_socks"] {
		t.Fatalf("the loopback connection went to the module (paired +%d, live sockets +%d)",
			m["paired"]-base["paired"], m["live_socks"]-base["live_socks"])
	}

	errC := unix.SetsockoptString(h3Fd(t, cli), unix.SOL_TCP, unix.TCP_ULP, "tls")
	errS := unix.SetsockoptString(h3Fd(t, srv), unix.SOL_TCP, unix.TCP_ULP, "tls")
	t.Logf("paired connection: TCP_ULP tls: client %v, server %v", errC, errS)
	if errC != unix.EBUSY || errS != unix.EBUSY {
		t.Errorf("TCP_ULP tls on a paired socket: client %v, server %v; want EBUSY", errC, errS)
	}
	if errC == nil && errS == nil {
		// What the old module let through: kTLS on both ends.
		for _, s := range []struct {
			c   *net.TCPConn
			opt int
			k   byte
		}{{cli, h3TLSTX, 7}, {srv, h3TLSRX, 7}, {srv, h3TLSTX, 9}, {cli, h3TLSRX, 9}} {
			if err := unix.SetsockoptString(h3Fd(t, s.c), unix.SOL_TLS, s.opt, h3TLSInfo(s.k)); err != nil {
				t.Logf("paired connection: SOL_TLS %d: %v", s.opt, err)
			}
		}
	}
	if err := h3KTLS(t, pc, ps); err != nil {
		t.Fatalf("kTLS on the unrelated loopback connection: %v", err)
	}
	// Both at once: the spliced connection and the kTLS one.
	done := make(chan [2]error, 1)
	go func() {
		var r [2]error
		for i := 0; i < 4 && r[0] == nil; i++ {
			r[0] = h3Exchange(pc, ps, 256<<10)
		}
		done <- r
	}()
	var spliceErr error
	for i := 0; i < 4 && spliceErr == nil; i++ {
		spliceErr = h3Exchange(cli, srv, 256<<10)
	}
	r := <-done
	m := testenv.ModuleStats(t)
	t.Logf("paired connection after the refused ULP: 4 x 256 KiB each way: %v; kTLS loopback connection 4 x 256 KiB each way at the same time: %v; ring_bytes +%d",
		h3OK(spliceErr), h3OK(r[0]), m["ring_bytes"]-base["ring_bytes"])
	if spliceErr != nil {
		t.Errorf("paired connection: %v", spliceErr)
	}
	if r[0] != nil {
		t.Errorf("kTLS loopback connection: %v", r[0])
	}
	if m["ring_bytes"]-base["ring_bytes"] < 2<<20 {
		t.Errorf("the paired connection's bytes did not go through the rings (+%d)", m["ring_bytes"]-base["ring_bytes"])
	}
}

func h3OK(err error) string {
	if err == nil {
		return "intact"
	}
	return err.Error()
}

// TestHardeningKTLSOnPendingLeaves (issue 14, item 7): a socket of ours
// that waits for its peer (pending) and sets TCP_ULP "tls" leaves the
// module first; kTLS then works on it both ways.
func TestHardeningKTLSOnPendingLeaves(t *testing.T) {
	const port = 7441
	e, pre := h3NewEnv(t, "10.244.1.0/24", map[string]any{"mode": "splice", "ringKiB": 64}, port)
	base := testenv.ModuleStats(t)
	cli, srv := e.dialAccept(t, pre[port], port)
	time.Sleep(100 * time.Millisecond)
	m := testenv.ModuleStats(t)
	t.Logf("half-paired handshake: live_socks +%d (the client's end pending), paired +%d", m["live_socks"]-base["live_socks"], m["paired"]-base["paired"])
	if m["live_socks"]-base["live_socks"] != 1 {
		t.Fatalf("the client's end is not pending in the module (live sockets +%d)", m["live_socks"]-base["live_socks"])
	}
	if err := h3KTLS(t, cli, srv); err != nil {
		t.Fatalf("kTLS on the pending socket: %v", err)
	}
	m = testenv.ModuleStats(t)
	t.Logf("after TCP_ULP tls on the pending end: live_socks +%d", m["live_socks"]-base["live_socks"])
	if m["live_socks"] != base["live_socks"] {
		t.Errorf("the pending socket did not leave the module (live sockets +%d)", m["live_socks"]-base["live_socks"])
	}
	err := h3Exchange(cli, srv, 1<<20)
	t.Logf("kTLS on the former pending socket, 1 MiB each way: %s", h3OK(err))
	if err != nil {
		t.Error(err)
	}
	cli.Close()
	srv.Close()
	h3WaitLive(t, map[string]int64{})
}

// TestHardeningRepairAndZerocopyRefused (issue 14, item 7): TCP_REPAIR on
// a paired socket is refused (EBUSY), getsockopt TCP_ZEROCOPY_RECEIVE on
// one is refused (EOPNOTSUPP), and the connection's bytes arrive intact
// afterwards.
func TestHardeningRepairAndZerocopyRefused(t *testing.T) {
	e, _ := h3NewEnv(t, "10.244.2.0/24", map[string]any{"mode": "splice", "ringKiB": 64})
	cli, srv := e.pairedConn(t, 7442)
	cfd, sfd := h3Fd(t, cli), h3Fd(t, srv)

	errRepair := unix.SetsockoptInt(cfd, unix.SOL_TCP, unix.TCP_REPAIR, 1)
	t.Logf("TCP_REPAIR 1 on a paired socket: %v", errRepair)
	if errRepair != unix.EBUSY {
		t.Errorf("TCP_REPAIR on a paired socket: %v; want EBUSY", errRepair)
	}
	if errRepair == nil {
		// The old module: what a send in repair mode does to the ring.
		msg := []byte("sent in repair mode")
		n, werr := unix.Write(cfd, msg)
		t.Logf("write in repair mode: %d %v", n, werr)
		if err := unix.SetsockoptInt(cfd, unix.SOL_TCP, unix.TCP_REPAIR, -1); err != nil {
			unix.SetsockoptInt(cfd, unix.SOL_TCP, unix.TCP_REPAIR, 0)
		}
		if n > 0 {
			got := make([]byte, n)
			srv.SetReadDeadline(time.Now().Add(2 * time.Second))
			k, rerr := srv.Read(got)
			srv.SetReadDeadline(time.Time{})
			t.Logf("the peer read %d bytes %q (%v)", k, got[:max(k, 0)], rerr)
		}
	}

	// 4 KiB waiting in the server's ring, then a zerocopy receive with a
	// mapping of the socket and a copy buffer (what a zerocopy reader
	// does).
	msg := make([]byte, 4096)
	rand.Read(msg)
	if _, err := cli.Write(msg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	inq, _ := unix.IoctlGetInt(sfd, unix.SIOCINQ)
	mapped, merr := unix.Mmap(sfd, 0, 64<<10, unix.PROT_READ, unix.MAP_SHARED)
	if merr == nil {
		defer unix.Munmap(mapped)
	}
	copybuf := make([]byte, 64<<10)
	var zc [64]byte // struct tcp_zerocopy_receive
	if merr == nil {
		binary.LittleEndian.PutUint64(zc[0:], uint64(uintptr(unsafe.Pointer(&mapped[0]))))
		binary.LittleEndian.PutUint32(zc[8:], uint32(len(mapped)))
	}
	binary.LittleEndian.PutUint64(zc[24:], uint64(uintptr(unsafe.Pointer(&copybuf[0]))))
	binary.LittleEndian.PutUint32(zc[32:], uint32(len(copybuf)))
	zlen := uint32(len(zc))
	_, _, e0 := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(sfd), unix.SOL_TCP, unix.TCP_ZEROCOPY_RECEIVE,
		uintptr(unsafe.Pointer(&zc[0])), uintptr(unsafe.Pointer(&zlen)), 0)
	runtime.KeepAlive(copybuf)
	var errZC error
	if e0 != 0 {
		errZC = e0
	}
	t.Logf("TCP_ZEROCOPY_RECEIVE with %d bytes in the ring (SIOCINQ; mmap %v): %v; mapped %d, inq %d, err %d, copied %d",
		inq, merr, errZC, binary.LittleEndian.Uint32(zc[8:]), binary.LittleEndian.Uint32(zc[16:]),
		int32(binary.LittleEndian.Uint32(zc[20:])), int32(binary.LittleEndian.Uint32(zc[32:])))
	if errZC != unix.EOPNOTSUPP {
		t.Errorf("TCP_ZEROCOPY_RECEIVE on a paired socket: %v; want EOPNOTSUPP", errZC)
	}
	got := make([]byte, len(msg))
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, rerr := srv.Read(got)
	srv.SetReadDeadline(time.Time{})
	t.Logf("read after it: %d bytes, intact %v (%v)", n, n == len(msg) && bytes.Equal(got, msg), rerr)
	if n != len(msg) || !bytes.Equal(got, msg) {
		t.Errorf("the 4 KiB did not arrive intact after the refused options: %d bytes (%v)", n, rerr)
	}
	if err := h3Exchange(cli, srv, 256<<10); err != nil {
		t.Errorf("after the options: %v", err)
	}
}

// ---- io_uring, by its raw system calls ----

type h3Uring struct {
	fd             int
	sq, cq, sqes   []byte
	sqHead, sqTail *uint32
	sqMask         uint32
	sqArray        unsafe.Pointer
	cqHead, cqTail *uint32
	cqMask         uint32
	cqes           unsafe.Pointer
}

// io_uring_params with its sq/cq offsets (120 bytes).
type h3UringParams struct {
	SqEntries, CqEntries, Flags, SqThreadCPU, SqThreadIdle, Features, WqFd uint32
	Resv                                                                   [3]uint32
	SqOff                                                                  struct {
		Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
		UserAddr                                                        uint64
	}
	CqOff struct {
		Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1 uint32
		UserAddr                                                        uint64
	}
}

func h3NewUring(entries uint32) (*h3Uring, error) {
	var p h3UringParams
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", e)
	}
	u := &h3Uring{fd: int(fd)}
	var err error
	if u.sq, err = unix.Mmap(u.fd, 0, int(p.SqOff.Array+p.SqEntries*4), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		u.Close()
		return nil, err
	}
	if u.cq, err = unix.Mmap(u.fd, 0x8000000, int(p.CqOff.Cqes+p.CqEntries*16), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		u.Close()
		return nil, err
	}
	if u.sqes, err = unix.Mmap(u.fd, 0x10000000, int(p.SqEntries*64), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		u.Close()
		return nil, err
	}
	sq, cq := unsafe.Pointer(&u.sq[0]), unsafe.Pointer(&u.cq[0])
	u.sqHead = (*uint32)(unsafe.Add(sq, p.SqOff.Head))
	u.sqTail = (*uint32)(unsafe.Add(sq, p.SqOff.Tail))
	u.sqMask = *(*uint32)(unsafe.Add(sq, p.SqOff.RingMask))
	u.sqArray = unsafe.Add(sq, p.SqOff.Array)
	u.cqHead = (*uint32)(unsafe.Add(cq, p.CqOff.Head))
	u.cqTail = (*uint32)(unsafe.Add(cq, p.CqOff.Tail))
	u.cqMask = *(*uint32)(unsafe.Add(cq, p.CqOff.RingMask))
	u.cqes = unsafe.Add(cq, p.CqOff.Cqes)
	return u, nil
}

func (u *h3Uring) Close() {
	for _, m := range [][]byte{u.sq, u.cq, u.sqes} {
		if m != nil {
			unix.Munmap(m)
		}
	}
	unix.Close(u.fd)
}

// recv submits one IORING_OP_RECV of buf on fd and waits for its
// completion: bytes received or -errno.
func (u *h3Uring) recv(fd int, buf []byte) (int32, error) {
	tail := atomic.LoadUint32(u.sqTail)
	idx := tail & u.sqMask
	sqe := u.sqes[idx*64 : idx*64+64]
	clear(sqe)
	sqe[0] = 27 // IORING_OP_RECV
	binary.LittleEndian.PutUint32(sqe[4:], uint32(fd))
	binary.LittleEndian.PutUint64(sqe[16:], uint64(uintptr(unsafe.Pointer(&buf[0]))))
	binary.LittleEndian.PutUint32(sqe[24:], uint32(len(buf)))
	binary.LittleEndian.PutUint64(sqe[32:], uint64(tail)) // user_data
	*(*uint32)(unsafe.Add(u.sqArray, idx*4)) = idx
	atomic.StoreUint32(u.sqTail, tail+1)
	for {
		_, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(u.fd), 1, 1, 1 /* GETEVENTS */, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, fmt.Errorf("io_uring_enter: %w", e)
		}
		break
	}
	for {
		head := atomic.LoadUint32(u.cqHead)
		if head != atomic.LoadUint32(u.cqTail) {
			cqe := unsafe.Add(u.cqes, (head&u.cqMask)*16)
			res := *(*int32)(unsafe.Add(cqe, 8))
			atomic.StoreUint32(u.cqHead, head+1)
			runtime.KeepAlive(buf)
			return res, nil
		}
		unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(u.fd), 0, 1, 1, 0, 0)
	}
}

// TestHardeningIoUringRecv (issue 14, item 7): IORING_OP_RECV on a paired
// socket, submitted before the bytes are sent (io_uring then waits on the
// socket's poll), gets every byte in order.
func TestHardeningIoUringRecv(t *testing.T) {
	e, _ := h3NewEnv(t, "10.244.3.0/24", map[string]any{"mode": "splice", "ringKiB": 64})
	cli, srv := e.pairedConn(t, 7443)
	u, err := h3NewUring(8)
	if err != nil {
		t.Skipf("SKIP: no io_uring here: %v", err)
	}
	defer u.Close()
	base := testenv.ModuleStats(t)
	const total = 1 << 20
	payload := make([]byte, total)
	rand.Read(payload)
	go func() {
		time.Sleep(100 * time.Millisecond) // the first recv is already waiting
		for off := 0; off < total; off += 3000 {
			cli.Write(payload[off:min(off+3000, total)])
		}
	}()
	sfd := h3Fd(t, srv)
	got := make([]byte, 0, total)
	buf := make([]byte, 64<<10)
	recvs := 0
	deadline := time.AfterFunc(60*time.Second, func() { cli.Close() })
	defer deadline.Stop()
	for len(got) < total {
		n, err := u.recv(sfd, buf)
		recvs++
		if err != nil {
			t.Fatal(err)
		}
		if n == -int32(unix.EAGAIN) {
			continue
		}
		if n <= 0 {
			t.Fatalf("io_uring recv %d after %d bytes: %d (%v)", recvs, len(got), n, unix.Errno(-n))
		}
		got = append(got, buf[:n]...)
	}
	m := testenv.ModuleStats(t)
	intact := bytes.Equal(got, payload)
	t.Logf("io_uring: %d recvs got %d bytes, in order and intact: %v; ring_bytes +%d", recvs, len(got), intact, m["ring_bytes"]-base["ring_bytes"])
	if !intact {
		t.Errorf("io_uring recv: the bytes differ from what was sent")
	}
	if m["ring_bytes"]-base["ring_bytes"] < total {
		t.Errorf("the bytes did not go through the ring (+%d)", m["ring_bytes"]-base["ring_bytes"])
	}
}
