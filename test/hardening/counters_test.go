//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package hardening

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/test/testenv"
)

const h3ModDir = "/sys/module/" + sbpf.SpliceModule

// h3NewEnv is newEnv with listeners opened before the ADD (prePorts).
func h3NewEnv(t *testing.T, subnet string, plugin map[string]any, prePorts ...uint16) (*env, map[uint16]*net.TCPListener) {
	t.Helper()
	e := newEnv(t, subnet, plugin, prePorts...)
	return e, e.pre
}

// dialAccept connects from the client container to ln and returns both
// ends, closed at cleanup.
func (e *env) dialAccept(t *testing.T, ln *net.TCPListener, port uint16) (cli, srv *net.TCPConn) {
	t.Helper()
	cli, err := e.cli.Dial(&net.TCPAddr{IP: e.addr.AsSlice(), Port: int(port)}, 10*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	ln.SetDeadline(time.Now().Add(10 * time.Second))
	srv, err = ln.AcceptTCP()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return cli, srv
}

// pairedConn opens a connection from the client to a listener opened on
// port after the attach, and fails unless the module paired it.
func (e *env) pairedConn(t *testing.T, port uint16) (cli, srv *net.TCPConn) {
	t.Helper()
	ln := e.srv.Listen(t, netip.AddrPortFrom(e.addr, port))
	base := testenv.ModuleStats(t)
	cli, srv = e.dialAccept(t, ln, port)
	if m := testenv.ModuleStats(t); m["paired"]-base["paired"] != 1 {
		t.Fatalf("connection on port %d not spliced (module paired +%d)", port, m["paired"]-base["paired"])
	}
	return cli, srv
}

// h3Fd is c's descriptor (Go keeps it nonblocking).
func h3Fd(t *testing.T, c *net.TCPConn) int { return testenv.ConnFD(t, c) }

// h3Exchange sends n random bytes each way at once and checks that each
// end got exactly what the other sent.
func h3Exchange(a, b *net.TCPConn, n int) error {
	pa, pb := make([]byte, n), make([]byte, n)
	rand.Read(pa)
	rand.Read(pb)
	dl := time.Now().Add(60 * time.Second)
	a.SetDeadline(dl)
	b.SetDeadline(dl)
	defer a.SetDeadline(time.Time{})
	defer b.SetDeadline(time.Time{})
	errs := make(chan error, 4)
	go func() { _, err := a.Write(pa); errs <- err }()
	go func() { _, err := b.Write(pb); errs <- err }()
	ga, gb := make([]byte, n), make([]byte, n)
	go func() { _, err := io.ReadFull(b, ga); errs <- err }()
	go func() { _, err := io.ReadFull(a, gb); errs <- err }()
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			return err
		}
	}
	if !bytes.Equal(ga, pa) || !bytes.Equal(gb, pb) {
		return fmt.Errorf("%d bytes each way: data differs (a->b intact %v, b->a intact %v)", n, bytes.Equal(ga, pa), bytes.Equal(gb, pb))
	}
	return nil
}

// h3WaitLive waits until the module's live sockets, pairs and ring bytes
// are back at base's, and returns the last stats.
func h3WaitLive(t *testing.T, base map[string]int64) map[string]int64 {
	t.Helper()
	var m map[string]int64
	for i := 0; i < 100; i++ {
		m = testenv.ModuleStats(t)
		if m["live_socks"] == base["live_socks"] && m["live_pairs"] == base["live_pairs"] &&
			m["live_ring_bytes"] == base["live_ring_bytes"] {
			return m
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("module not back to its baseline after close: live sockets %d, pairs %d, ring bytes %d (baseline %d, %d, %d)",
		m["live_socks"], m["live_pairs"], m["live_ring_bytes"], base["live_socks"], base["live_pairs"], base["live_ring_bytes"])
	return m
}

// h3ReadCounterFiles reads every file of the module's counters directory.
func h3ReadCounterFiles(t *testing.T) map[string]string {
	t.Helper()
	dir := filepath.Join(h3ModDir, "counters")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("the module has no per-counter files: %v", err)
	}
	out := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatalf("reading %s: %v", e.Name(), err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

// TestHardeningCountersFiles (issue 14, item 12): every file in
// counters/ holds one decimal number, the files are exactly the names
// parameters/stats lists, and both say the same after traffic.
func TestHardeningCountersFiles(t *testing.T) {
	e, _ := h3NewEnv(t, "10.246.0.0/24", map[string]any{"mode": "splice", "ringKiB": 64})
	cli, srv := e.pairedConn(t, 7460)
	if err := h3Exchange(cli, srv, 1<<20); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	srv.Close()
	h3WaitLive(t, map[string]int64{})

	statsNames := func() []string {
		m := testenv.ModuleStats(t)
		delete(m, "refcnt")
		var s []string
		for k := range m {
			s = append(s, k)
		}
		sort.Strings(s)
		return s
	}
	s1 := testenv.ModuleStats(t)
	files := h3ReadCounterFiles(t)
	s2 := testenv.ModuleStats(t)
	num := regexp.MustCompile(`^[0-9]+\n$`)
	var fileNames []string
	for name, v := range files {
		fileNames = append(fileNames, name)
		if !num.MatchString(v) {
			t.Errorf("counters/%s = %q: want one decimal number and a newline", name, v)
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		lo, hi := min(s1[name], s2[name]), max(s1[name], s2[name])
		if n < lo || n > hi {
			t.Errorf("counters/%s = %d, parameters/stats says %d then %d", name, n, s1[name], s2[name])
		}
	}
	sort.Strings(fileNames)
	want := statsNames()
	t.Logf("counters/: %d files %v; parameters/stats: %d names; after 1 MiB each way: paired %d, ring_bytes %d",
		len(fileNames), fileNames, len(want), s2["paired"], s2["ring_bytes"])
	if strings.Join(fileNames, " ") != strings.Join(want, " ") {
		t.Errorf("counters/ has %v, parameters/stats has %v", fileNames, want)
	}
	if s2["ring_bytes"] < 2<<20 || s2["paired"] < 1 {
		t.Errorf("the counters did not see the traffic: ring_bytes %d, paired %d", s2["ring_bytes"], s2["paired"])
	}
}
