//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package hardening

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/test/testenv"
)

// h3Meminfo is SO_MEMINFO of fd: SK_MEMINFO_* indexes.
func h3Meminfo(fd int) ([unix.SK_MEMINFO_VARS]uint32, error) {
	var v [unix.SK_MEMINFO_VARS]uint32
	l := uint32(unsafe.Sizeof(v))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&v[0])), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return v, e
	}
	return v, nil
}

// TestHardeningRingFollowsBytes (issue 14, item 6): a 1 KiB ping-pong
// on a connection with 1 MiB rings keeps a few pages, not the rings'
// size; after a 4 MiB burst the reader drained, the stash keeps at most
// a few pages per direction.
func TestHardeningRingFollowsBytes(t *testing.T) {
	e, _ := h3NewEnv(t, "10.241.0.0/24", map[string]any{"mode": "splice", "ringKiB": 1024})
	base := testenv.ModuleStats(t)
	if base["live_ring_bytes"] != 0 {
		t.Fatalf("ring pages alive before the test: %d bytes", base["live_ring_bytes"])
	}
	cli, srv := e.pairedConn(t, 7410)
	cfd, sfd := h3Fd(t, cli), h3Fd(t, srv)

	const rounds = 2000
	echoed := make(chan error, 1)
	go func() {
		b := make([]byte, 1024)
		for i := 0; i < rounds; i++ {
			if _, err := io.ReadFull(srv, b); err != nil {
				echoed <- err
				return
			}
			if _, err := srv.Write(b); err != nil {
				echoed <- err
				return
			}
		}
		echoed <- nil
	}()
	cli.SetDeadline(time.Now().Add(120 * time.Second))
	req, resp := make([]byte, 1024), make([]byte, 1024)
	for i := 0; i < rounds; i++ {
		rand.Read(req)
		if _, err := cli.Write(req); err != nil {
			t.Fatalf("round %d: write: %v", i, err)
		}
		if _, err := io.ReadFull(cli, resp); err != nil {
			t.Fatalf("round %d: read: %v", i, err)
		}
		if !bytes.Equal(req, resp) {
			t.Fatalf("round %d: response differs", i)
		}
	}
	if err := <-echoed; err != nil {
		t.Fatalf("echo: %v", err)
	}
	m := testenv.ModuleStats(t)
	mc, _ := h3Meminfo(cfd)
	ms, _ := h3Meminfo(sfd)
	live := m["live_ring_bytes"]
	t.Logf("after %d round trips of 1 KiB (1 MiB rings, %d MiB through each ring): live_ring_bytes %d (%d pages); SO_MEMINFO wmem_queued client %d, server %d",
		rounds, rounds*1024>>20, live, live/4096, mc[unix.SK_MEMINFO_WMEM_QUEUED], ms[unix.SK_MEMINFO_WMEM_QUEUED])
	if live > 64<<10 {
		t.Errorf("ping-pong: the connection holds %d bytes of ring pages; want <= 64 KiB", live)
	}

	// A 4 MiB burst from the client, drained by the server.
	burst := make([]byte, 4<<20)
	rand.Read(burst)
	wdone := make(chan error, 1)
	go func() { _, err := cli.Write(burst); wdone <- err }()
	srv.SetDeadline(time.Now().Add(120 * time.Second))
	got := make([]byte, len(burst))
	peak := int64(0)
	for off := 0; off < len(got); {
		n, err := srv.Read(got[off:min(off+256<<10, len(got))])
		if err != nil {
			t.Fatalf("burst: read after %d bytes: %v", off, err)
		}
		off += n
		if l := testenv.ModuleStats(t)["live_ring_bytes"]; l > peak {
			peak = l
		}
	}
	if err := <-wdone; err != nil {
		t.Fatalf("burst: write: %v", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(burst) {
		t.Fatal("burst: data differs")
	}
	m = testenv.ModuleStats(t)
	mc, _ = h3Meminfo(cfd)
	live = m["live_ring_bytes"]
	t.Logf("after a 4 MiB burst drained by the reader: live_ring_bytes %d (%d pages; peak seen while draining %d); client wmem_queued %d",
		live, live/4096, peak, mc[unix.SK_MEMINFO_WMEM_QUEUED])
	if live > 2*(64<<10) {
		t.Errorf("after the burst the connection keeps %d bytes of ring pages; want <= 64 KiB per direction", live)
	}
	if q := int64(mc[unix.SK_MEMINFO_WMEM_QUEUED]); q > 64<<10 {
		t.Errorf("the writer's wmem_queued is %d after the reader drained; want <= 64 KiB", q)
	}
	cli.Close()
	srv.Close()
	m = h3WaitLive(t, map[string]int64{})
	t.Logf("after close: live_socks %d, live_pairs %d, live_ring_bytes %d", m["live_socks"], m["live_pairs"], m["live_ring_bytes"])
}

// ---- memory cgroup ----

type h3MemReaderSpec struct {
	Addr  string
	Conns int
	Stop  string // the parent creates this file to end the helper
}

type h3MemReaderResult struct {
	Accepted int
}

type h3MemWriterSpec struct {
	Addr  string
	Conns int
	Out   string // the helper's figures, written before it reports ready
	Stop  string
}

type h3MemWriterResult struct {
	Conns       int
	Queued      []int64          // bytes accepted per connection before it stopped
	Errs        map[string]int   // the error each connection's writes ended with
	WmemQueued  []int64          // SO_MEMINFO per connection after the writes
	OutQ        []int64          // SIOCOUTQ per connection
	BlockedErr  string           // a blocking write with SO_SNDTIMEO on the first connection
	BlockedTook float64          // seconds it took
	Other       map[string]int64 `json:",omitempty"`
}

// h3WaitFile waits for path to exist, for at most limit.
func h3WaitFile(path string, limit time.Duration) {
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
	}
}

func init() {
	testenv.Register("h3memreader", func(s h3MemReaderSpec, ready func()) (h3MemReaderResult, error) {
		var res h3MemReaderResult
		ln, err := testenv.ListenTCP("tcp4", s.Addr, false)
		if err != nil {
			return res, err
		}
		ready()
		var conns []net.Conn
		go func() {
			for len(conns) < s.Conns {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				conns = append(conns, c) // never read
			}
		}()
		h3WaitFile(s.Stop, 5*time.Minute)
		ln.Close()
		res.Accepted = len(conns)
		for _, c := range conns {
			c.Close()
		}
		return res, nil
	})
	testenv.Register("h3memwriter", func(s h3MemWriterSpec, ready func()) (h3MemWriterResult, error) {
		res := h3MemWriterResult{Errs: map[string]int{}}
		var conns []*net.TCPConn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for i := 0; i < s.Conns; i++ {
			d := testenv.Dialer(false)
			d.Timeout = 10 * time.Second
			c, err := d.Dial("tcp4", s.Addr)
			if err != nil {
				return res, fmt.Errorf("dial %d: %w", i, err)
			}
			conns = append(conns, c.(*net.TCPConn))
		}
		time.Sleep(200 * time.Millisecond) // the server's end pairs at its ESTABLISHED
		buf := make([]byte, 64<<10)
		for _, c := range conns {
			rc, _ := c.SyscallConn()
			var q int64
			var werr error
			rc.Control(func(fd uintptr) {
				for {
					n, err := unix.SendmsgN(int(fd), buf, nil, nil, unix.MSG_DONTWAIT)
					if err != nil {
						werr = err
						return
					}
					q += int64(n)
				}
			})
			res.Queued = append(res.Queued, q)
			res.Errs[fmt.Sprint(werr)]++
		}
		for _, c := range conns {
			rc, _ := c.SyscallConn()
			rc.Control(func(fd uintptr) {
				mi, _ := h3Meminfo(int(fd))
				res.WmemQueued = append(res.WmemQueued, int64(mi[unix.SK_MEMINFO_WMEM_QUEUED]))
				outq, _ := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
				res.OutQ = append(res.OutQ, int64(outq))
			})
		}
		// A blocking writer with a send timeout blocks, and times out
		// with EAGAIN (never ENOMEM).
		if len(conns) > 0 {
			rc, _ := conns[0].SyscallConn()
			rc.Control(func(fd uintptr) {
				unix.SetsockoptTimeval(int(fd), unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Usec: 300000})
				start := time.Now()
				_, err := unix.SendmsgN(int(fd), buf, nil, nil, 0)
				res.BlockedTook = time.Since(start).Seconds()
				res.BlockedErr = fmt.Sprint(err)
			})
		}
		res.Conns = len(conns)
		b, _ := json.Marshal(res)
		if err := os.WriteFile(s.Out, b, 0o644); err != nil {
			return res, err
		}
		ready()
		h3WaitFile(s.Stop, 5*time.Minute)
		return res, nil
	})
	// The roles run from here, after they are registered, rather than
	// from a TestMain (a package has one, and other files of the package
	// may bring theirs): only for roles named h3..., so that a role of
	// theirs is left to their TestMain, which runs after every init.
	if strings.HasPrefix(os.Getenv("SOCKSPLICE_TEST_HELPER"), "h3") {
		testenv.HelperMain()
	}
}

// h3CgroupFile reads one cgroup file.
func h3CgroupFile(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	return string(b)
}

// h3CgroupKey is one "key value" line of a cgroup file such as
// memory.stat or memory.events.
func h3CgroupKey(t *testing.T, dir, name, key string) int64 {
	t.Helper()
	for _, l := range strings.Split(h3CgroupFile(t, dir, name), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == key {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatalf("%s has no %s", name, key)
	return 0
}

func h3CgroupInt(t *testing.T, dir, name string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.TrimSpace(h3CgroupFile(t, dir, name)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return n
}

// h3EnableMemory enables the memory controller for dir's children, and
// disables it again at cleanup if it was not enabled before.
func h3EnableMemory(t *testing.T, dir string) {
	t.Helper()
	ctl := filepath.Join(dir, "cgroup.subtree_control")
	cur, err := os.ReadFile(ctl)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(" "+strings.TrimSpace(string(cur))+" ", " memory ") {
		return
	}
	if err := os.WriteFile(ctl, []byte("+memory"), 0); err != nil {
		t.Skipf("SKIP: cannot enable the memory controller in %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(ctl, []byte("-memory"), 0); err != nil {
			t.Logf("disabling the memory controller in %s again: %v", dir, err)
		}
	})
}

// h3SsWmem sums the w (wmem_queued) fields of ss -tmn in c's netns for
// connections to port.
func h3SsWmem(t *testing.T, c *testenv.Container, port uint16) (int64, string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", c.NetnsName, "ss", "-tmnH", "dst", fmt.Sprintf(":%d", port)).CombinedOutput()
	if err != nil {
		return -1, fmt.Sprintf("ss: %v %s", err, out)
	}
	re := regexp.MustCompile(`skmem:\([^)]*\bw([0-9]+)`)
	var sum int64
	first := ""
	for _, l := range strings.Split(string(out), "\n") {
		if mm := re.FindStringSubmatch(l); mm != nil {
			n, _ := strconv.ParseInt(mm[1], 10, 64)
			sum += n
			if first == "" {
				first = strings.Join(strings.Fields(l), " ")
			}
		}
	}
	return sum, first
}

// TestHardeningMemcgBoundsRing (issue 14, item 6): ring pages are charged
// to the writer's memory cgroup. A writer born in a cgroup with a 32 MiB
// memory.max opens 64 connections with 1 MiB rings to a reader that never
// reads and writes until EAGAIN on each: its memory.current grows with the
// bytes written (memory.stat sock) and stops at its limit, without ENOMEM
// or an OOM kill; the module counts mem_waits; the reader's cgroup is not
// charged; SO_MEMINFO and ss -m show the writer's queued bytes; after
// close everything is back.
func TestHardeningMemcgBoundsRing(t *testing.T) {
	const splicePort, plainPort = 7420, 7421
	e, _ := h3NewEnv(t, "10.242.0.0/24", map[string]any{"mode": "splice", "ringKiB": 1024, "ports": []int{splicePort}})
	root := testenv.CgroupRoot(t)
	h3EnableMemory(t, root)
	parent := testenv.NewCgroup(t, root)
	h3EnableMemory(t, parent)
	// The same writer over plain TCP (a port the network does not
	// splice), for comparison only.
	t.Run("tcp", func(t *testing.T) { h3MemcgRun(t, e, parent, plainPort, false) })
	t.Run("splice", func(t *testing.T) { h3MemcgRun(t, e, parent, splicePort, true) })
}

// h3MemcgRun runs the writer and the reader of TestHardeningMemcgBoundsRing
// in cgroups of their own under parent, on port; it checks the figures
// only for a spliced port, and logs them for plain TCP.
func h3MemcgRun(t *testing.T, e *env, parent string, port uint16, spliced bool) {
	const conns, limit = 64, 32 << 20
	wcg := testenv.Cgroup(t, filepath.Join(parent, fmt.Sprintf("writer%d", port)))
	rcg := testenv.Cgroup(t, filepath.Join(parent, fmt.Sprintf("reader%d", port)))
	if err := os.WriteFile(filepath.Join(wcg, "memory.max"), []byte(strconv.Itoa(limit)), 0); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rstop, wstop := filepath.Join(dir, "reader-stop"), filepath.Join(dir, "writer-stop")
	t.Cleanup(func() { os.WriteFile(rstop, nil, 0o644); os.WriteFile(wstop, nil, 0o644) })

	addr := netip.AddrPortFrom(e.addr, port).String()
	reader, err := e.srv.StartHelper(t, testenv.Helper{Role: "h3memreader", Ready: true, Cgroup: rcg,
		Spec: h3MemReaderSpec{Addr: addr, Conns: conns, Stop: rstop}})
	if err != nil {
		t.Fatal(err)
	}
	base := testenv.ModuleStats(t)
	w0cur, w0sock := h3CgroupInt(t, wcg, "memory.current"), h3CgroupKey(t, wcg, "memory.stat", "sock")
	r0sock := h3CgroupKey(t, rcg, "memory.stat", "sock")
	out := filepath.Join(dir, "writer.json")
	start := time.Now()
	writer, err := e.cli.StartHelper(t, testenv.Helper{Role: "h3memwriter", Ready: true, Cgroup: wcg,
		Spec: h3MemWriterSpec{Addr: addr, Conns: conns, Out: out, Stop: wstop}})
	if err != nil {
		ev := strings.ReplaceAll(h3CgroupFile(t, wcg, "memory.events"), "\n", " ")
		m := testenv.ModuleStats(t)
		msg := fmt.Sprintf("spliced %v: writer: %v; writer cgroup memory.events: %s; memory.stat sock: writer %d, reader %d; module: paired +%d, mem_waits +%d, live_ring_bytes %d",
			spliced, err, ev, h3CgroupKey(t, wcg, "memory.stat", "sock"), h3CgroupKey(t, rcg, "memory.stat", "sock"),
			m["paired"]-base["paired"], m["mem_waits"]-base["mem_waits"], m["live_ring_bytes"])
		if !spliced {
			t.Log(msg)
			return
		}
		t.Fatal(msg)
	}
	var wr h3MemWriterResult
	b, err := os.ReadFile(out)
	if err == nil {
		err = json.Unmarshal(b, &wr)
	}
	if err != nil {
		t.Fatalf("writer's figures: %v", err)
	}
	took := time.Since(start)
	m := testenv.ModuleStats(t)
	wcur, wsock := h3CgroupInt(t, wcg, "memory.current"), h3CgroupKey(t, wcg, "memory.stat", "sock")
	wmax := h3CgroupKey(t, wcg, "memory.events", "max")
	woom, wkill := h3CgroupKey(t, wcg, "memory.events", "oom"), h3CgroupKey(t, wcg, "memory.events", "oom_kill")
	rsock := h3CgroupKey(t, rcg, "memory.stat", "sock")
	var queued, wq, outq, minQ, maxQ int64
	minQ = 1 << 62
	for i, q := range wr.Queued {
		queued += q
		minQ, maxQ = min(minQ, q), max(maxQ, q)
		wq += wr.WmemQueued[i]
		outq += wr.OutQ[i]
	}
	ssW, ssLine := h3SsWmem(t, e.cli, port)
	t.Logf("spliced %v: writer (memory.max %d MiB): %d connections queued %d bytes in %v (per connection %d..%d); writes ended with %v",
		spliced, limit>>20, wr.Conns, queued, took.Round(time.Millisecond), minQ, maxQ, wr.Errs)
	t.Logf("writer cgroup: memory.current %d -> %d, memory.stat sock %d -> %d; memory.events max %d, oom %d, oom_kill %d",
		w0cur, wcur, w0sock, wsock, wmax, woom, wkill)
	t.Logf("reader cgroup: memory.stat sock %d -> %d", r0sock, rsock)
	t.Logf("module: mem_waits +%d, ring_full_waits +%d, paired +%d, live_ring_bytes %d",
		m["mem_waits"]-base["mem_waits"], m["ring_full_waits"]-base["ring_full_waits"], m["paired"]-base["paired"], m["live_ring_bytes"])
	t.Logf("writer's SO_MEMINFO wmem_queued sum %d, SIOCOUTQ sum %d; ss -tm w sum %d; e.g. %s", wq, outq, ssW, ssLine)
	t.Logf("a blocking write with SO_SNDTIMEO 300ms on a full connection: %s after %.2fs", wr.BlockedErr, wr.BlockedTook)

	if spliced {
		if m["paired"]-base["paired"] < conns {
			t.Errorf("only %d of %d connections were spliced", m["paired"]-base["paired"], conns)
		}
		for e, n := range wr.Errs {
			if e != unix.EAGAIN.Error() {
				t.Errorf("%d connections' writes ended with %q; want EAGAIN", n, e)
			}
		}
		if wr.BlockedErr != unix.EAGAIN.Error() {
			t.Errorf("a blocking write with a send timeout ended with %s; want EAGAIN after blocking", wr.BlockedErr)
		}
		if wkill != 0 {
			t.Errorf("the writer's cgroup saw %d OOM kills", wkill)
		}
		if queued >= int64(conns)<<20 {
			t.Errorf("the writer queued %d bytes, every ring full (%d MiB), past its %d MiB memory.max", queued, conns, limit>>20)
		}
		if wcur > limit {
			t.Errorf("the writer's memory.current %d is above its memory.max %d", wcur, limit)
		}
		// Ring pages are charged to the writer socket's cgroup as kernel
		// memory (the charge goes with the page, also after the writer
		// closed), not as its sockets' buffers.
		if d := wcur - w0cur; d < queued/2 {
			t.Errorf("the writer's memory.current grew by %d for %d bytes queued: the ring pages are not charged to its cgroup", d, queued)
		}
		if m["mem_waits"] == base["mem_waits"] {
			t.Errorf("the module's mem_waits did not rise")
		}
		if d := rsock - r0sock; d > 1<<20 {
			t.Errorf("the reader's cgroup was charged %d bytes of socket memory", d)
		}
		if wq < queued || wq > queued+int64(conns)*(64<<10) {
			t.Errorf("SO_MEMINFO wmem_queued sums to %d for %d bytes queued", wq, queued)
		}
		if ssW != wq {
			t.Logf("ss -m w sum %d differs from SO_MEMINFO's %d", ssW, wq)
		}
	}

	// The writer closes: its charge goes; then the reader closes: the
	// rings go.
	os.WriteFile(wstop, nil, 0o644)
	var wres h3MemWriterResult
	if err := writer.Result(&wres, 60*time.Second); err != nil {
		t.Errorf("writer: %v", err)
	}
	var wsockAfter int64
	for i := 0; i < 50; i++ {
		if wsockAfter = h3CgroupKey(t, wcg, "memory.stat", "sock"); wsockAfter <= w0sock+(256<<10) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("spliced %v: the writer closed, the reader holds its unread bytes: writer memory.stat sock %d, reader %d; module live_ring_bytes %d",
		spliced, wsockAfter, h3CgroupKey(t, rcg, "memory.stat", "sock"), testenv.ModuleStats(t)["live_ring_bytes"])
	os.WriteFile(rstop, nil, 0o644)
	var rres h3MemReaderResult
	if err := reader.Result(&rres, 60*time.Second); err != nil {
		t.Errorf("reader: %v", err)
	}
	m = h3WaitLive(t, base)
	var wcurEnd int64
	for i := 0; i < 50; i++ {
		if wcurEnd = h3CgroupInt(t, wcg, "memory.current"); wcurEnd <= w0cur+(1<<20) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("spliced %v: after close: writer memory.stat sock %d (start %d), writer memory.current %d (start %d), reader accepted %d; module live_socks %d, live_ring_bytes %d",
		spliced, wsockAfter, w0sock, wcurEnd, w0cur, rres.Accepted, m["live_socks"], m["live_ring_bytes"])
	if spliced && wcurEnd > w0cur+(1<<20) {
		t.Errorf("the writer's memory.current is %d after both ends closed (start %d): ring pages still charged", wcurEnd, w0cur)
	}
}
