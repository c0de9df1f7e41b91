// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package semantics

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/pkg/selftest"
	"github.com/socksplice/socksplice/test/testenv"
)

// The TCP behaviours of issue 14, item 11: more of what programs read from
// a socket (queue sizes, TCP_INFO, control messages, buffer options,
// readiness thresholds) and the stream's edges (cursor wrap past 4 GiB,
// half-close with data in flight). Same paths, topologies and known-gap
// rules as TestSemantics; the matrix goes to results/semantics-hardening.*.
// "make vm-test RUN=Hardening" runs exactly these.

var hardeningCases = []Case{
	{Name: "siocoutq-acked", Run: siocoutqAcked},
	{Name: "tcp-cork", Run: tcpCork}, // lost or reordered bytes make it fail; timing only differs
	{Name: "msg-more", Run: msgMore},
	{Name: "nonblock-accepted", Run: nonblockAccepted},
	{Name: "so-sndbuf-rcvbuf", Run: smallBuffers},
	{Name: "notsent-lowat", Run: notsentLowat},
	{Name: "epollout-threshold", Run: epolloutThreshold},
	{Name: "send-blocks", Run: sendBlocks},
	{Name: "so-peek-off", Run: peekOff},
	{Name: "splice-nonblock-empty", Run: spliceNonblockEmpty},
	{Name: "tcp-info", Run: tcpInfo},
	{Name: "tcp-inq", Run: tcpInq},
	{Name: "so-timestamp", Run: soTimestamp},
	{Name: "half-close-inflight-client", Run: halfCloseInflight(true), Data: true},
	{Name: "half-close-inflight-server", Run: halfCloseInflight(false), Data: true},
	{Name: "over-4gib", Run: over4GiB, Data: true},
}

// TestHardeningSemantics runs the hardening cases as TestSemantics runs its
// own: every path, both topologies, known_gaps.json, the kernel log and the
// auto rule.
func TestHardeningSemantics(t *testing.T) {
	runMatrix(t, "semantics-hardening", "Semantics matrix (hardening cases)", hardeningCases)
}

// sizeClass puts a byte count in a class wide enough for TCP's own spread
// between runs, topologies and kernels (a nonblocking writer to a peer that
// does not read: 3.9 MB accepted at loopback, 0.75 MB at veth on 6.18):
// what a case compares is the class.
func sizeClass(n int) string {
	switch {
	case n < 256<<10:
		return "< 256 KiB"
	case n < 8<<20:
		return "256 KiB..8 MiB"
	default:
		return ">= 8 MiB"
	}
}

// fill writes 64 KiB chunks to a nonblocking fd whose peer does not read,
// until EAGAIN and EPOLLOUT stays off for 300 ms (in-flight ACKs may open
// some room after the first EAGAIN), or until limit bytes were accepted.
// It returns the bytes accepted and whether the writer settled full.
func fill(fd, ep, limit int) (int, bool, error) {
	buf := make([]byte, 64<<10)
	total := 0
	for total < limit {
		n, err := wr(fd, buf)
		if n > 0 {
			total += n
		}
		if errors.Is(err, unix.EAGAIN) {
			if epollWait(ep, 300*time.Millisecond)&unix.EPOLLOUT == 0 {
				return total, true, nil
			}
		} else if err != nil {
			return total, false, fmt.Errorf("write after %d B: %s", total, errName(err))
		}
	}
	return total, false, nil
}

// acceptedClass describes fill's result.
func acceptedClass(total int, full bool) string {
	if !full {
		return "no EAGAIN within 2x tcp_rmem[2]+tcp_wmem[2]+1MiB"
	}
	return sizeClass(total)
}

// siocoutqAcked: SIOCOUTQ counts bytes the peer has not acknowledged, so it
// is 0 once the peer's stack has them even if the application has not read
// them; SIOCOUTQNSD (bytes not yet sent) is 0 too.
func siocoutqAcked(e *Env) (string, error) {
	c, s := e.Pair()
	if err := sendSettled(c, s, testenv.Payload(80, 1000)); err != nil {
		return "", err
	}
	waitFor(time.Second, func() bool { return ioctlInt(c, unix.SIOCOUTQ) == 0 })
	unread, nsd := ioctlInt(c, unix.SIOCOUTQ), ioctlInt(c, unix.SIOCOUTQNSD)
	if _, err := readFull(s, 1000); err != nil {
		return "", err
	}
	waitFor(time.Second, func() bool { return ioctlInt(c, unix.SIOCOUTQ) == 0 })
	return fmt.Sprintf("1000 B unread at the peer: SIOCOUTQ=%d SIOCOUTQNSD=%d; read: SIOCOUTQ=%d SIOCOUTQNSD=%d",
		unread, nsd, ioctlInt(c, unix.SIOCOUTQ), ioctlInt(c, unix.SIOCOUTQNSD)), nil
}

// tcpCork: with TCP_CORK a partial segment stays at the sender (SIOCOUTQ and
// SIOCOUTQNSD count it, the peer sees nothing); uncorking sends it.
func tcpCork(e *Env) (string, error) {
	c, s := e.Pair()
	if err := unix.SetsockoptInt(c, unix.IPPROTO_TCP, unix.TCP_CORK, 1); err != nil {
		return "", fmt.Errorf("TCP_CORK: %s", errName(err))
	}
	data := testenv.Payload(81, 100)
	if err := writeAll(c, data); err != nil {
		return "", err
	}
	outq, nsd := ioctlInt(c, unix.SIOCOUTQ), ioctlInt(c, unix.SIOCOUTQNSD)
	early := pollFor(s, unix.POLLIN, 100*time.Millisecond)&unix.POLLIN != 0
	unix.SetsockoptInt(c, unix.IPPROTO_TCP, unix.TCP_CORK, 0)
	late := pollFor(s, unix.POLLIN, 2*time.Second)&unix.POLLIN != 0
	got, err := readFull(s, len(data))
	if err != nil || !bytes.Equal(got, data) {
		return "", fmt.Errorf("read %d of %d bytes (%s)", len(got), len(data), errName(err))
	}
	drained := waitFor(time.Second, func() bool {
		return ioctlInt(c, unix.SIOCOUTQ) == 0 && ioctlInt(c, unix.SIOCOUTQNSD) == 0
	})
	return fmt.Sprintf("corked 100 B: SIOCOUTQ=%d SIOCOUTQNSD=%d, peer readable within 100ms: %v; uncorked: readable %v, intact, queues reach 0: %v",
		outq, nsd, early, late, drained), nil
}

// msgMore: send(MSG_MORE) holds a partial segment until a send without it;
// the bytes then arrive in order.
func msgMore(e *Env) (string, error) {
	c, s := e.Pair()
	if _, err := sendmsgN(c, []byte("abc"), nil, nil, unix.MSG_MORE); err != nil {
		return "", fmt.Errorf("send(MSG_MORE): %s", errName(err))
	}
	nsd := ioctlInt(c, unix.SIOCOUTQNSD)
	early := pollFor(s, unix.POLLIN, 100*time.Millisecond)&unix.POLLIN != 0
	if _, err := sendmsgN(c, []byte("def"), nil, nil, 0); err != nil {
		return "", fmt.Errorf("send: %s", errName(err))
	}
	got, err := readFull(s, 6)
	if err != nil {
		return "", fmt.Errorf("read %q: %s", got, errName(err))
	}
	return fmt.Sprintf("after send(MSG_MORE, 3 B): SIOCOUTQNSD=%d, peer readable within 100ms: %v; after send(3 B): read %q",
		nsd, early, got), nil
}

// nonblockAccepted: how much a nonblocking writer gets accepted before
// EAGAIN when its peer does not read (TCP: the peer's receive queue plus
// the sender's autotuned send buffer), and EPOLLOUT once the peer drained.
func nonblockAccepted(e *Env) (string, error) {
	c, s := e.Pair()
	unix.SetNonblock(c, true)
	ep := e.epollOn(c, unix.EPOLLOUT)
	total, full, err := fill(c, ep, 2*selftest.FlowMemoryBound())
	if err != nil {
		return "", err
	}
	e.t.Logf("%s/%s: nonblocking writer accepted %d B (settled full: %v)", e.Path.Name, e.Topo, total, full)
	if _, err := readFull(s, total); err != nil {
		return "", fmt.Errorf("draining %d bytes: %w", total, err)
	}
	drained := epollWait(ep, 2*time.Second)&unix.EPOLLOUT != 0
	return fmt.Sprintf("accepted before EAGAIN: %s; EPOLLOUT after drain: %v", acceptedClass(total, full), drained), nil
}

// smallBuffers: SO_SNDBUF on the writer and SO_RCVBUF on the reader (32 KiB
// each, which the kernel doubles) bound what a nonblocking writer gets
// accepted.
func smallBuffers(e *Env) (string, error) {
	c, s := e.Pair()
	if err := unix.SetsockoptInt(c, unix.SOL_SOCKET, unix.SO_SNDBUF, 32<<10); err != nil {
		return "", fmt.Errorf("SO_SNDBUF: %s", errName(err))
	}
	if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, 32<<10); err != nil {
		return "", fmt.Errorf("SO_RCVBUF: %s", errName(err))
	}
	snd, _ := unix.GetsockoptInt(c, unix.SOL_SOCKET, unix.SO_SNDBUF)
	rcv, _ := unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF)
	unix.SetNonblock(c, true)
	ep := e.epollOn(c, unix.EPOLLOUT)
	total, full, err := fill(c, ep, 2*selftest.FlowMemoryBound())
	if err != nil {
		return "", err
	}
	e.t.Logf("%s/%s: SO_SNDBUF %d, SO_RCVBUF %d: nonblocking writer accepted %d B (settled full: %v)",
		e.Path.Name, e.Topo, snd, rcv, total, full)
	if _, err := readFull(s, total); err != nil {
		return "", fmt.Errorf("draining %d bytes: %w", total, err)
	}
	return fmt.Sprintf("SO_SNDBUF=%d SO_RCVBUF=%d; accepted before EAGAIN: %s", snd, rcv, acceptedClass(total, full)), nil
}

// notsentLowat: with TCP_NOTSENT_LOWAT the writer stops (EAGAIN, no
// EPOLLOUT) once its unsent bytes pass the mark, not when its buffer is
// full, so it gets less accepted than without; EPOLLOUT returns when the
// unsent bytes fall below the mark.
func notsentLowat(e *Env) (string, error) {
	const lowat = 16 << 10
	c, s := e.Pair()
	if err := unix.SetsockoptInt(c, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, lowat); err != nil {
		return "", fmt.Errorf("TCP_NOTSENT_LOWAT: %s", errName(err))
	}
	unix.SetNonblock(c, true)
	ep := e.epollOn(c, unix.EPOLLOUT)
	total, full, err := fill(c, ep, 2*selftest.FlowMemoryBound())
	if err != nil {
		return "", err
	}
	nsd := ioctlInt(c, unix.SIOCOUTQNSD)
	e.t.Logf("%s/%s: TCP_NOTSENT_LOWAT %d: accepted %d B (settled full: %v), SIOCOUTQNSD %d, SIOCOUTQ %d",
		e.Path.Name, e.Topo, lowat, total, full, nsd, ioctlInt(c, unix.SIOCOUTQ))
	// What the mark keeps unsent: at most the mark plus one segment (TCP
	// checks it between segments, up to 64 KiB each).
	unsent := fmt.Sprintf("SIOCOUTQNSD in (lowat, lowat+64KiB]: %v", nsd > lowat && nsd <= lowat+64<<10)
	if _, err := readFull(s, total); err != nil {
		return "", fmt.Errorf("draining %d bytes: %w", total, err)
	}
	drained := epollWait(ep, 2*time.Second)&unix.EPOLLOUT != 0
	return fmt.Sprintf("lowat 16 KiB: accepted before EAGAIN: %s; at EAGAIN %s; EPOLLOUT after drain: %v",
		acceptedClass(total, full), unsent, drained), nil
}

// epolloutThreshold: a full writer does not become writable when its
// reader frees one byte: TCP reports EPOLLOUT only when the free send space
// is at least a third of the buffer (sk_stream_is_writeable:
// sk_stream_wspace >= sk_stream_min_wspace, half of what is queued).
func epolloutThreshold(e *Env) (string, error) {
	c, s := e.Pair()
	unix.SetNonblock(c, true)
	ep := e.epollOn(c, unix.EPOLLOUT)
	total, full, err := fill(c, ep, 2*selftest.FlowMemoryBound())
	if err != nil {
		return "", err
	}
	if !full {
		return fmt.Sprintf("no EAGAIN within 2x tcp_rmem[2]+tcp_wmem[2]+1MiB (%s)", sizeClass(total)), drain(s, total)
	}
	if _, err := readFull(s, 1); err != nil {
		return "", err
	}
	one := evNames(epollWait(ep, 300*time.Millisecond))
	if err := drain(s, total-1); err != nil {
		return "", err
	}
	all := evNames(epollWait(ep, 2*time.Second))
	return fmt.Sprintf("full writer: after the reader read 1 B: %s; after it read all: %s", one, all), nil
}

func drain(fd, n int) error {
	if _, err := readFull(fd, n); err != nil {
		return fmt.Errorf("draining %d bytes: %w", n, err)
	}
	return nil
}

// sendBlocks: a blocking write to a peer that does not read blocks until
// SO_SNDTIMEO and returns the part it queued (never ENOMEM); a blocking
// write to a slow reader completes.
func sendBlocks(e *Env) (string, error) {
	c, _ := e.Pair()
	unix.SetsockoptTimeval(c, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Usec: 300000})
	big := make([]byte, 2*selftest.FlowMemoryBound())
	start := time.Now()
	n, err := unix.Write(c, big) // EINTR is an answer here too
	el := time.Since(start)
	e.t.Logf("%s/%s: blocking write(%d) -> %d %s after %v", e.Path.Name, e.Topo, len(big), n, errName(err), el)
	first := "short count after the timeout"
	switch {
	case err != nil:
		first = errName(err)
	case n == len(big):
		first = "all of it, without blocking"
	case el < 250*time.Millisecond:
		first = "short count before the timeout"
	}

	c2, s2 := e.Pair()
	data := testenv.Payload(82, 8<<20)
	type res struct {
		got []byte
		err error
	}
	rc := make(chan res, 1)
	go func() {
		out := make([]byte, 0, len(data))
		buf := make([]byte, 16<<10)
		for len(out) < len(data) {
			m, err := rd(s2, buf)
			if err != nil || m == 0 {
				rc <- res{out, err}
				return
			}
			out = append(out, buf[:m]...)
			time.Sleep(200 * time.Microsecond)
		}
		rc <- res{out, nil}
	}()
	unix.SetsockoptTimeval(c2, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Sec: 30})
	werr := writeAll(c2, data)
	r := <-rc
	if r.err != nil || !bytes.Equal(r.got, data) {
		return "", fmt.Errorf("slow reader got %d of %d bytes (%s); writer %s", len(r.got), len(data), errName(r.err), errName(werr))
	}
	return fmt.Sprintf("write(2x flow bound) to a non-reader, SO_SNDTIMEO 300ms: %s; write(8 MiB) to a slow reader: %s",
		first, errName(werr)), nil
}

// peekOff: with SO_PEEK_OFF each MSG_PEEK continues where the last ended,
// and reading moves the offset back by what was read.
func peekOff(e *Env) (string, error) {
	c, s := e.Pair()
	if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0); err != nil {
		return "setsockopt(SO_PEEK_OFF) -> " + errName(err), nil
	}
	if err := sendSettled(c, s, []byte("0123456789")); err != nil {
		return "", err
	}
	var out []string
	step := func(what string, flags, n int) {
		buf := make([]byte, n)
		m, _, err := recvFrom(s, buf, flags|unix.MSG_DONTWAIT)
		if err != nil {
			out = append(out, what+" "+errName(err))
			return
		}
		out = append(out, fmt.Sprintf("%s %q", what, buf[:m]))
	}
	step("peek", unix.MSG_PEEK, 4)
	step("peek", unix.MSG_PEEK, 4)
	step("read", 0, 4)
	off, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PEEK_OFF)
	out = append(out, fmt.Sprintf("SO_PEEK_OFF=%d (%s)", off, errName(err)))
	step("peek", unix.MSG_PEEK, 4)
	step("read", 0, 16)
	return strings.Join(out, "; "), nil
}

// spliceNonblockEmpty: splice(2) from a socket with nothing to read. TCP
// (tcp_splice_read) waits by the socket's own O_NONBLOCK, not by
// SPLICE_F_NONBLOCK, which is about the pipe: with the flag alone it blocks
// until SO_RCVTIMEO; with O_NONBLOCK it returns EAGAIN at once. With data it
// moves the data.
func spliceNonblockEmpty(e *Env) (string, error) {
	c, s := e.Pair()
	unix.SetsockoptTimeval(s, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 500000})
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return "", err
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	try := func(what string) string {
		start := time.Now()
		n, err := unix.Splice(s, nil, p[1], nil, 4096, unix.SPLICE_F_NONBLOCK)
		el := time.Since(start)
		e.t.Logf("%s/%s: splice(SPLICE_F_NONBLOCK) on an empty socket, %s -> %d %s after %v", e.Path.Name, e.Topo, what, n, errName(err), el)
		when := "at once"
		switch {
		case el >= 400*time.Millisecond && el < 2*time.Second:
			when = "after SO_RCVTIMEO"
		case el >= 100*time.Millisecond:
			when = "after " + el.Round(100*time.Millisecond).String()
		}
		return fmt.Sprintf("%s: %d %s %s", what, n, errName(err), when)
	}
	blocking := try("blocking socket")
	unix.SetNonblock(s, true)
	nonblocking := try("O_NONBLOCK socket")
	unix.SetNonblock(s, false)
	if err := sendSettled(c, s, []byte("0123456789")); err != nil {
		return "", err
	}
	n, err := unix.Splice(s, nil, p[1], nil, 4096, unix.SPLICE_F_NONBLOCK)
	buf := make([]byte, 64)
	m, _ := unix.Read(p[0], buf)
	return fmt.Sprintf("empty, %s; empty, %s; with 10 B: %d %s, pipe holds %q", blocking, nonblocking, n, errName(err), buf[:max(m, 0)]), nil
}

// tcpInfoClass: a TCP_INFO byte counter against what the case moved. The
// handshake's SYN may count as one.
func tcpInfoClass(v uint64, moved int) string {
	switch {
	case v <= 1:
		return "0"
	case v >= uint64(moved) && v <= uint64(moved)+1:
		return "bytes moved"
	default:
		return "other"
	}
}

// tcpInfo: what programs read from TCP_INFO after a transfer: the state,
// bytes acknowledged and received, and nothing unacknowledged or unsent.
func tcpInfo(e *Env) (string, error) {
	c, s := e.Pair()
	const size = 100000
	data := testenv.Payload(83, size)
	go writeAll(c, data)
	if _, err := readFull(s, size); err != nil {
		return "", err
	}
	waitFor(time.Second, func() bool { return ioctlInt(c, unix.SIOCOUTQ) == 0 })
	time.Sleep(50 * time.Millisecond)
	ci, err := unix.GetsockoptTCPInfo(c, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return "", fmt.Errorf("TCP_INFO: %s", errName(err))
	}
	si, err := unix.GetsockoptTCPInfo(s, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return "", fmt.Errorf("TCP_INFO: %s", errName(err))
	}
	e.t.Logf("%s/%s: sender state %d bytes_acked %d bytes_sent %d unacked %d notsent %d; receiver state %d bytes_received %d",
		e.Path.Name, e.Topo, ci.State, ci.Bytes_acked, ci.Bytes_sent, ci.Unacked, ci.Notsent_bytes, si.State, si.Bytes_received)
	return fmt.Sprintf("after %d B: sender state=%d bytes_acked=%s unacked=%d notsent=%d; receiver state=%d bytes_received=%s",
		size, ci.State, tcpInfoClass(ci.Bytes_acked, size), ci.Unacked, ci.Notsent_bytes,
		si.State, tcpInfoClass(si.Bytes_received, size)), nil
}

// cmsgs reads up to n bytes with recvmsg and returns the data and the
// control messages.
func cmsgs(fd, n int) ([]byte, []unix.SocketControlMessage, error) {
	buf, oob := make([]byte, n), make([]byte, 512)
	m, oobn, _, _, err := recvmsg(fd, buf, oob, 0)
	if err != nil {
		return nil, nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	return buf[:m], msgs, err
}

// tcpInq: with TCP_INQ each recvmsg carries a TCP_CM_INQ control message:
// the bytes still queued after this read.
func tcpInq(e *Env) (string, error) {
	c, s := e.Pair()
	if err := unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_INQ, 1); err != nil {
		return "setsockopt(TCP_INQ) -> " + errName(err), nil
	}
	if err := sendSettled(c, s, testenv.Payload(84, 1000)); err != nil {
		return "", err
	}
	var out []string
	for _, n := range []int{100, 900} {
		got, msgs, err := cmsgs(s, n)
		if err != nil {
			return "", fmt.Errorf("recvmsg: %s", errName(err))
		}
		inq := "no TCP_CM_INQ"
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_TCP && m.Header.Type == unix.TCP_CM_INQ && len(m.Data) >= 4 {
				inq = fmt.Sprintf("TCP_CM_INQ=%d", *(*int32)(unsafe.Pointer(&m.Data[0])))
			}
		}
		out = append(out, fmt.Sprintf("recvmsg(%d) -> %d, %s", n, len(got), inq))
	}
	return strings.Join(out, "; "), nil
}

// soTimestamp: with SO_TIMESTAMP each recvmsg carries an SCM_TIMESTAMP with
// the arrival time.
func soTimestamp(e *Env) (string, error) {
	c, s := e.Pair()
	if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_TIMESTAMP, 1); err != nil {
		return "setsockopt(SO_TIMESTAMP) -> " + errName(err), nil
	}
	// TCP stamps segments only once the kernel's receive timestamping is
	// on, which the first SO_TIMESTAMP socket switches on through a
	// deferred work item: until then plain TCP itself gives no stamp
	// (seen on stock 7.3.4). Warm-up bytes, until one comes back stamped
	// (at most about 1 s), let that settle, so the cell measures the path.
	for range 40 {
		if err := sendSettled(c, s, []byte("w")); err != nil {
			return "", err
		}
		_, msgs, err := cmsgs(s, 64)
		if err != nil {
			return "", fmt.Errorf("recvmsg: %s", errName(err))
		}
		if _, ok := scmTimestamp(msgs); ok {
			break
		}
	}
	before := time.Now()
	if err := sendSettled(c, s, []byte("stamp")); err != nil {
		return "", err
	}
	got, msgs, err := cmsgs(s, 64)
	if err != nil {
		return "", fmt.Errorf("recvmsg: %s", errName(err))
	}
	ts := "no SCM_TIMESTAMP"
	if at, ok := scmTimestamp(msgs); ok {
		ts = fmt.Sprintf("SCM_TIMESTAMP between the write and the read: %v",
			!at.Before(before.Truncate(time.Microsecond)) && !at.After(time.Now()))
	}
	return fmt.Sprintf("read %q; %s", got, ts), nil
}

// scmTimestamp returns the SCM_TIMESTAMP among msgs, if any.
func scmTimestamp(msgs []unix.SocketControlMessage) (time.Time, bool) {
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMP && len(m.Data) >= 16 {
			tv := (*unix.Timeval)(unsafe.Pointer(&m.Data[0]))
			return time.Unix(tv.Unix()), true
		}
	}
	return time.Time{}, false
}

// halfCloseInflight: one end writes 4 MiB and shuts down its sending side
// at once, while its peer is still sending and has not started reading;
// the peer reads it all, then EOF, goes on sending, and shuts down too.
// Each side gets the other's bytes intact, then EOF; a send after the
// shutdown fails with EPIPE.
func halfCloseInflight(clientFirst bool) func(e *Env) (string, error) {
	return func(e *Env) (string, error) {
		a, b := e.Pair() // a shuts down first
		if !clientFirst {
			a, b = b, a
		}
		const size = 4 << 20
		fromA, fromB := testenv.Payload(85, size), testenv.Payload(86, size)
		var wg sync.WaitGroup
		var aWrite, aAfter, bWrite error
		var gotA, gotB []byte
		var errA, errB error
		bSawEOF := make(chan struct{})
		wg.Add(4)
		go func() { // a sends and shuts down at once
			defer wg.Done()
			aWrite = writeAll(a, fromA)
			unix.Shutdown(a, unix.SHUT_WR)
			_, aAfter = unix.SendmsgN(a, []byte("x"), nil, nil, unix.MSG_NOSIGNAL)
		}()
		go func() { // b sends half, the rest after a's EOF, then shuts down
			defer wg.Done()
			if bWrite = writeAll(b, fromB[:size/2]); bWrite != nil {
				return
			}
			select {
			case <-bSawEOF:
			case <-time.After(10 * time.Second):
			}
			if bWrite = writeAll(b, fromB[size/2:]); bWrite == nil {
				unix.Shutdown(b, unix.SHUT_WR)
			}
		}()
		go func() { // b reads late, so a's bytes and FIN are in flight
			defer wg.Done()
			time.Sleep(100 * time.Millisecond)
			gotA, errA = readUntilEOF(b)
			close(bSawEOF)
		}()
		go func() {
			defer wg.Done()
			gotB, errB = readUntilEOF(a)
		}()
		wg.Wait()
		for _, err := range []error{aWrite, bWrite} {
			if err != nil {
				return "", fmt.Errorf("write: %s (first end got %d B, second %d B)", errName(err), len(gotB), len(gotA))
			}
		}
		if errA != nil || errB != nil || !bytes.Equal(gotA, fromA) || !bytes.Equal(gotB, fromB) {
			return "", fmt.Errorf("first->second %d of %d B intact=%v (%s); second->first %d of %d B intact=%v (%s)",
				len(gotA), size, bytes.Equal(gotA, fromA), errName(errA), len(gotB), size, bytes.Equal(gotB, fromB), errName(errB))
		}
		return fmt.Sprintf("both ways 4 MiB intact then EOF; the first end's send after its shutdown: %s", errName(aAfter)), nil
	}
}

// bigSize is the over-4gib case's length: $SOCKSPLICE_HARDENING_BIG (bytes,
// or with a K, M or G suffix), by default 4 GiB + 64 MiB, which takes the
// splice ring's u32 cursors across their wrap once.
func bigSize() (int64, error) {
	v := os.Getenv("SOCKSPLICE_HARDENING_BIG")
	if v == "" {
		return 4<<30 + 64<<20, nil
	}
	shift := 0
	switch v[len(v)-1] {
	case 'K', 'k':
		shift = 10
	case 'M', 'm':
		shift = 20
	case 'G', 'g':
		shift = 30
	}
	if shift > 0 {
		v = v[:len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("SOCKSPLICE_HARDENING_BIG=%q: want a size such as 4100M", os.Getenv("SOCKSPLICE_HARDENING_BIG"))
	}
	return n << shift, nil
}

// over4GiB: one connection carries more than 4 GiB one way, intact. The
// bytes follow a random pattern whose period (a prime near 1 MiB) divides
// no ring size, so a byte from the wrong lap of a ring, or from the wrong
// side of the 32-bit cursor wrap, differs from the one expected; checking
// is a memcmp against the pattern.
func over4GiB(e *Env) (string, error) {
	size, err := bigSize()
	if err != nil {
		return "", err
	}
	const period = 1048573
	pat := testenv.Payload(87, period)
	pat2 := append(append(make([]byte, 0, 2*period), pat...), pat...)
	c, s := e.Pair()
	for _, fd := range []int{c, s} {
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 30})
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Sec: 30})
	}
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		for off := int64(0); off < size; {
			p := int(off % period)
			n, err := wr(c, pat2[p:p+int(min(int64(period), size-off))])
			if err != nil {
				errc <- fmt.Errorf("write at %d: %s", off, errName(err))
				return
			}
			off += int64(n)
		}
		errc <- unix.Shutdown(c, unix.SHUT_WR)
	}()
	buf := make([]byte, 256<<10)
	var off int64
	var rerr error
	for {
		n, err := rd(s, buf)
		if err != nil {
			rerr = fmt.Errorf("read at %d: %s", off, errName(err))
			break
		}
		if n == 0 {
			break
		}
		p := int(off % period)
		if !bytes.Equal(buf[:n], pat2[p:p+n]) {
			i := 0
			for i < n && buf[i] == pat2[p+i] {
				i++
			}
			rerr = fmt.Errorf("byte %d differs (the cursors' lap %d of 4 GiB)", off+int64(i), (off+int64(i))>>32)
			break
		}
		off += int64(n)
	}
	el := time.Since(start)
	if rerr != nil {
		unix.Shutdown(s, unix.SHUT_RDWR)
	}
	werr := <-errc
	e.t.Logf("%s/%s: %d B in %v (%.0f MB/s)", e.Path.Name, e.Topo, off, el.Round(time.Millisecond), float64(off)/el.Seconds()/1e6)
	if rerr != nil {
		return "", rerr
	}
	if werr != nil {
		return "", werr
	}
	if off != size {
		return "", fmt.Errorf("EOF after %d of %d bytes", off, size)
	}
	wraps := bits.Len64(uint64(size)) > 32
	return fmt.Sprintf("%d B intact, then EOF (past 2^32: %v)", size, wraps), nil
}
