//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package hardening

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/socksplice/socksplice/test/testenv"
)

// env is a splice network with a server and a client container, attached
// at node level (no cgroups), so that this process's own sockets in the
// containers are spliced.
type env struct {
	net      *testenv.Network
	srv, cli *testenv.Container
	addr     netip.Addr
	// Listeners on 0.0.0.0:port in the server's netns opened before the
	// ADD, one per prePort: they predate the splice program's attach, so
	// their connections are never prepared and the client end of each
	// waits pending for a peer that never calls (a half-paired handshake).
	pre map[uint16]*net.TCPListener
}

func newEnv(t *testing.T, subnet string, plugin map[string]any, prePorts ...uint16) *env {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireSpliceModule(t)
	n := testenv.NewNetwork(t, testenv.NetOpts{Subnet: subnet, PinDir: testenv.PinDir(t),
		Plugin: plugin, NoCgroups: true})
	e := &env{net: n, srv: testenv.NewContainer(t, "hsrv"), cli: testenv.NewContainer(t, "hcli"),
		pre: map[uint16]*net.TCPListener{}}
	for _, p := range prePorts {
		e.pre[p] = e.srv.Listen(t, netip.AddrPortFrom(netip.IPv4Unspecified(), p))
	}
	for _, c := range []*testenv.Container{e.srv, e.cli} {
		if _, err := n.AddNoCgroup(t, c); err != nil {
			t.Fatalf("ADD: %v", err)
		}
	}
	e.addr = e.srv.IP(n)
	return e
}

func (e *env) listen(t *testing.T, port uint16) *net.TCPListener {
	return e.srv.Listen(t, netip.AddrPortFrom(e.addr, port))
}

// conn dials ln from the client container and accepts the server end,
// both within 10 s.
func (e *env) conn(t *testing.T, ln *net.TCPListener) (cli, srv *net.TCPConn, err error) {
	return connect(ln, func() (*net.TCPConn, error) { return e.cli.Dial(ln.Addr(), 10*time.Second) })
}

func connect(ln *net.TCPListener, dial func() (*net.TCPConn, error)) (cli, srv *net.TCPConn, err error) {
	type res struct {
		c   *net.TCPConn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		ln.SetDeadline(time.Now().Add(10 * time.Second))
		c, err := ln.AcceptTCP()
		ch <- res{c, err}
	}()
	cli, err = dial()
	r := <-ch
	if err != nil || r.err != nil {
		if cli != nil {
			cli.Close()
		}
		if r.c != nil {
			r.c.Close()
		}
		return nil, nil, fmt.Errorf("connect: dial %v, accept %v", err, r.err)
	}
	return cli, r.c, nil
}

// waitNoLive waits up to 5 s until the module holds no live socket, pair
// or ring page, and fails the test otherwise.
func waitNoLive(t *testing.T) map[string]int64 {
	t.Helper()
	var m map[string]int64
	for i := 0; i < 50; i++ {
		m = testenv.ModuleStats(t)
		if m["live_socks"] == 0 && m["live_pairs"] == 0 && m["live_ring_bytes"] == 0 {
			return m
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("the module still holds live sockets %d, pairs %d, ring bytes %d 5 s after every socket closed",
		m["live_socks"], m["live_pairs"], m["live_ring_bytes"])
	return m
}

// envInt reads a scaling knob from the environment.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func delta(a, b map[string]int64, k string) int64 { return a[k] - b[k] }

func osNewFile(fd int) *os.File { return os.NewFile(uintptr(fd), "socket") }
