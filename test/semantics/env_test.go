// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package semantics

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/test/testenv"
)

// Path is a data path under test: how the CNI chain configures socksplice
// for it, and whether its connections must come out paired. Pointing the
// suite at another engine is one more Path.
type Path struct {
	Name   string
	Plugin map[string]any // socksplice plugin fields
	Paired bool           // Pair must see both ends paired
	Module bool           // needs the socksplice kernel module (the VM loads it)
}

// Topology kinds.
const (
	Loopback = "loopback" // both ends in one container, 127.0.0.1
	Veth     = "veth"     // two containers over veth + bridge
)

// Env is one fresh topology for one case: real netns made by the CNI chain
// (bridge + host-local + socksplice), attached at node level so that this
// test process's own sockets are seen, selected by the enrollment map.
type Env struct {
	t       *testing.T
	Topo    string
	Path    Path
	pinDir  string
	net     *testenv.Network
	cli     *testenv.Container // client side
	srv     *testenv.Container // server side (same as cli for Loopback)
	srvAddr netip.Addr
	port    uint16
}

var subnetSeq = 0

func newEnv(t *testing.T, pinDir string, p Path, topo string) *Env {
	t.Helper()
	subnetSeq++
	plugin := map[string]any{"loopback": true}
	for k, v := range p.Plugin {
		plugin[k] = v
	}
	e := &Env{t: t, Topo: topo, Path: p, pinDir: pinDir, port: 20000}
	e.net = testenv.NewNetwork(t, testenv.NetOpts{
		Subnet: fmt.Sprintf("10.230.%d.0/24", subnetSeq%250),
		PinDir: pinDir, Plugin: plugin, NoCgroups: true,
	})
	e.cli = testenv.NewContainer(t, "cli")
	if _, err := e.net.AddNoCgroup(t, e.cli); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	e.srv, e.srvAddr = e.cli, netip.MustParseAddr("127.0.0.1")
	if topo == Veth {
		e.srv = testenv.NewContainer(t, "srv")
		if _, err := e.net.AddNoCgroup(t, e.srv); err != nil {
			t.Fatalf("ADD: %v", err)
		}
		e.srvAddr = e.srv.IP(e.net)
	}
	return e
}

// Listen opens a listener in the server's netns on a new port.
func (e *Env) Listen() *net.TCPListener {
	e.t.Helper()
	e.port++
	return e.srv.Listen(e.t, netip.AddrPortFrom(e.srvAddr, e.port))
}

// Dial connects from the client's netns.
func (e *Env) Dial(addr net.Addr) (*net.TCPConn, error) {
	return e.cli.Dial(addr, 5*time.Second)
}

// Conns returns a connected, established pair of Go connections (client,
// server), closed at cleanup. On a pairing path it checks that both ends
// were paired, so a case never compares plain TCP with itself.
func (e *Env) Conns() (cli, srv *net.TCPConn) {
	e.t.Helper()
	before := e.paired()
	ln := e.Listen()
	cli, err := e.Dial(ln.Addr())
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	s, err := ln.AcceptTCP()
	if err != nil {
		e.t.Fatalf("accept: %v", err)
	}
	e.t.Cleanup(func() { cli.Close(); s.Close() })
	got := e.paired() - before
	if e.Path.Paired && got < 2 {
		e.t.Fatalf("path %s: connection not paired (paired +%d)", e.Path.Name, got)
	}
	if !e.Path.Paired && got != 0 {
		e.t.Fatalf("path %s: connection paired (+%d) on a plain path", e.Path.Name, got)
	}
	return cli, s
}

// paired reads the node's paired-sockets counter (0 before anything was
// loaded: plain TCP may run first).
func (e *Env) paired() uint64 {
	e.t.Helper()
	c := testenv.ReadCounters(e.t, e.pinDir)
	return c.Paired + c.SplicePaired
}

// Pair returns raw blocking file descriptors of a fresh connection
// (client, server), for cases that need exact syscalls. Each has a 5 s
// receive and send timeout so that no case can hang.
func (e *Env) Pair() (cli, srv int) {
	e.t.Helper()
	c, s := e.Conns()
	return e.rawFD(c), e.rawFD(s)
}

func (e *Env) rawFD(c *net.TCPConn) int {
	e.t.Helper()
	f, err := c.File() // a blocking duplicate
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { f.Close() })
	fd := int(f.Fd())
	tv := unix.Timeval{Sec: 5}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	c.Close() // the duplicate keeps the socket
	return fd
}

// SetLink brings the server's interface (lo or eth0) down or up.
func (e *Env) SetLink(up bool) error {
	dev := "eth0"
	if e.Topo == Loopback {
		dev = "lo"
	}
	state := "down"
	if up {
		state = "up"
	}
	out, err := exec.Command("ip", "-n", e.srv.NetnsName, "link", "set", dev, state).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip link set %s %s: %v %s", dev, state, err, out)
	}
	return nil
}

// UnenrollClient runs DEL of the socksplice plugin alone for the client:
// its netns keeps its veth and address but is no longer enrolled.
func (e *Env) UnenrollClient() error {
	return e.net.Socksplice(e.t, "DEL", e.cli, nil)
}
