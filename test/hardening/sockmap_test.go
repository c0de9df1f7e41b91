//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package hardening

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/test/testenv"
)

// Issue 14, item 10: sk_user_data is shared with other kernel users. A
// socket the module owns (paired, or a prepared listener) must not also
// become a sockmap psock, and a socket of a prepared listener that the
// module did not take (its child keeps the module's listen proto and ops
// but sk_user_data is free) may be, without the module reading the psock
// as its own state (ss_of() masks any pointer in sk_user_data; ss_poll
// and ss_splice_read on such a child do). Bytes stay intact either way,
// nothing crashes, and after teardown a socket can go into a sockmap.
func TestHardeningSockmapShared(t *testing.T) {
	testenv.WatchKernelLog(t)
	e := newEnv(t, "10.238.0.0/24", map[string]any{"mode": "splice"})
	ln := e.listen(t, 7900)
	sh, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.SockHash, KeySize: 4, ValueSize: 4, MaxEntries: 16})
	if err != nil {
		t.Fatalf("sockhash: %v", err)
	}
	t.Cleanup(func() { sh.Close() })
	insert := func(key uint32, fd int) error { return sh.Update(key, uint32(fd), ebpf.UpdateAny) }
	roundTrip := func(what string, a, b net.Conn) {
		msg := []byte("sk_user_data is shared: " + what)
		for _, d := range [][2]net.Conn{{a, b}, {b, a}} {
			d[1].SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := d[0].Write(msg); err != nil {
				t.Errorf("%s: write: %v", what, err)
				return
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(d[1], got); err != nil || !bytes.Equal(got, msg) {
				t.Errorf("%s: read %q, %v; want %q", what, got, err, msg)
			}
		}
	}

	// 1. A paired connection, both ends; and the prepared listener.
	base := testenv.ModuleStats(t)
	cli, srv, err := e.conn(t, ln)
	if err != nil {
		t.Fatal(err)
	}
	if m := testenv.ModuleStats(t); delta(m, base, "paired") < 1 {
		t.Fatalf("the connection was not paired")
	}
	roundTrip("paired, before", cli, srv)
	cf, sf := testenv.RawFD(t, cli), testenv.RawFD(t, srv)
	lf, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	for i, s := range []struct {
		name string
		fd   int
	}{{"paired client", cf.Int()}, {"paired server", sf.Int()}, {"prepared listener", int(lf.Fd())}} {
		err := insert(uint32(i), s.fd)
		t.Logf("sockhash insert of the %s: %v", s.name, err)
		if err == nil {
			t.Errorf("the %s, which the module owns (sk_user_data), went into a sockhash as well", s.name)
			sh.Delete(uint32(i))
		}
	}
	cc, sc := fdConn(t, cf), fdConn(t, sf)
	roundTrip("paired, after the inserts", cc, sc)

	// 2. Teardown (connect(AF_UNSPEC)), then the same socket connects
	// again to a loopback listener in its own netns, a flow the policy
	// leaves on TCP (no loopback), and must be insertable.
	cf2 := testenv.RawFD(t, cc.(*net.TCPConn))
	if err := testenv.Disconnect(cf2.Int()); err != nil {
		t.Fatalf("connect(AF_UNSPEC): %v", err)
	}
	var lo *net.TCPListener
	if err := ns.WithNetNSPath(e.cli.Netns, func(ns.NetNS) (err error) {
		lo, err = testenv.ListenTCP("tcp4", "127.0.0.1:7901", false)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lo.Close() })
	testenv.SetTimeouts(cf2.Int(), int64(5*time.Second), int64(5*time.Second))
	if err := unix.Connect(cf2.Int(), &unix.SockaddrInet4{Port: 7901, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("connecting again after the disconnect: %v", err)
	}
	lo.SetDeadline(time.Now().Add(5 * time.Second))
	peer, err := lo.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	err = insert(10, cf2.Int())
	t.Logf("sockhash insert of the torn-down client, connected again (plain TCP): %v", err)
	if err != nil {
		t.Errorf("after teardown the socket cannot go into a sockhash: %v", err)
	}
	roundTrip("torn down, reconnected, in a sockhash", fdConn(t, cf2), peer)
	sh.Delete(uint32(10))

	// 3. A child of the prepared listener that the module did not take:
	// a flow inside the server's netns (loopback policy off) to its own
	// address. Its proto and ops are the module's, sk_user_data is free.
	before := testenv.ModuleStats(t)
	var self *net.TCPConn
	addr := net.TCPAddrFromAddrPort(netip.AddrPortFrom(e.addr, 7900))
	c3, s3, err := connect(ln, func() (*net.TCPConn, error) {
		var err error
		self, err = e.srv.Dial(addr, 10*time.Second)
		return self, err
	})
	if err != nil {
		t.Fatal(err)
	}
	m := testenv.ModuleStats(t)
	t.Logf("in-netns flow: paired +%d, live sockets %d", delta(m, before, "paired"), m["live_socks"])
	s3f := testenv.RawFD(t, s3)
	err = insert(11, s3f.Int())
	t.Logf("sockhash insert of the prepared listener's untaken child: %v", err)
	s3c := fdConn(t, s3f)
	roundTrip("untaken child in a sockhash", c3, s3c)
	// poll (ss_poll) and splice(2) (ss_splice_read) read sk_user_data.
	p := []unix.PollFd{{Fd: int32(s3f.Int()), Events: unix.POLLIN | unix.POLLOUT}}
	unix.Poll(p, 100)
	c3.Close()
	s3c.Close()
	sh.Delete(uint32(11))
	s3f.Close()
	for _, f := range []*testenv.FD{cf, cf2, sf} {
		f.Close()
	}
	cc.Close()
	sc.Close()
	self.Close()
	ln.Close()
	waitNoLive(t)
}

// fdConn wraps a raw descriptor in a net.Conn again (a dup; the FD stays
// ours and closes at cleanup).
func fdConn(t *testing.T, f *testenv.FD) net.Conn {
	t.Helper()
	nfd, err := unix.Dup(f.Int())
	if err != nil {
		t.Fatal(err)
	}
	unix.SetNonblock(nfd, true)
	file := osNewFile(nfd)
	defer file.Close()
	c, err := net.FileConn(file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
