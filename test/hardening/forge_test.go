//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package hardening

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/test/testenv"
)

// spliceArgs is struct bpf_sock_splice_args (kernel/include/socksplice/abi.h).
type spliceArgs struct {
	AbiVersion uint32
	Flags      uint32
	SelfNetns  uint64
	PeerNetns  uint64
	LocalIP    [4]uint32
	RemoteIP   [4]uint32
	LocalPort  uint16
	RemotePort uint16
	BusyPollUs uint32
	RingKiB    uint32
	Pad        uint32
}

// loopbackArgs are the keys of a socket at 127.0.0.1:lport talking to
// 127.0.0.1:rport in netns, as bpf/splice.c builds them (v4-mapped
// addresses, network order; ports in host order).
func loopbackArgs(netns uint64, lport, rport uint16, flags uint32) spliceArgs {
	ip := [4]uint32{0, 0, 0xffff0000, 0x0100007f} // ::ffff:127.0.0.1 as little-endian u32 words
	return spliceArgs{AbiVersion: 2, Flags: flags, SelfNetns: netns, PeerNetns: netns,
		LocalIP: ip, RemoteIP: ip, LocalPort: lport, RemotePort: rport, RingKiB: 64}
}

// Issue 14, item 8: the kfunc must not trust keys it can compute itself.
// A sock_ops program (forge.c) hands bpf_sock_splice_pair forged keys
// for two unrelated loopback connections A (a1 -> a2) and B (b1 -> b2):
// a1 claims b2 as its peer and b2 claims a1. Today the module links a1
// with b2 and a1's bytes land on b2, a socket of another connection. It
// also ignores a nonzero flags field that it should refuse.
func TestHardeningForgedKeys(t *testing.T) {
	testenv.WatchKernelLog(t)
	testenv.RequireRoot(t)
	testenv.RequireSpliceModule(t)
	var objs ForgeObjects
	if err := LoadForgeObjects(&objs, nil); err != nil {
		t.Fatalf("loading forge.c: %v", err)
	}
	t.Cleanup(func() { objs.Close() })
	root, err := cgroup.Root()
	if err != nil {
		t.Fatal(err)
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: root, Attach: ebpf.AttachCGroupSockOps, Program: objs.ForgeSockops})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	base := testenv.ModuleStats(t)

	const portA, portB, portC = 47001, 47002, 47003
	const pa1, pb1, pc1 = 47101, 47102, 47103
	for _, p := range []uint32{portA, portB, portC} {
		if err := objs.Listeners.Put(p, uint32(1)); err != nil {
			t.Fatal(err)
		}
	}
	netns, err := netnsCookie()
	if err != nil {
		t.Fatalf("SO_NETNS_COOKIE: %v", err)
	}
	// a1 and b2 claim each other: mirrored keys, as two real peers'.
	put := func(port uint16, a spliceArgs) {
		if err := objs.Forged.Put(uint32(port), a); err != nil {
			t.Fatal(err)
		}
	}
	put(pa1, loopbackArgs(netns, pa1, portB, 0))
	put(portB, loopbackArgs(netns, portB, pa1, 0))
	// C: the true keys, but flags = 1, which no ABI version defines.
	put(pc1, loopbackArgs(netns, pc1, portC, 1))
	put(portC, loopbackArgs(netns, portC, pc1, 1))

	listen := func(port int) *net.TCPListener {
		ln, err := testenv.ListenTCP("tcp4", (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}).String(), false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	dialFrom := func(ln *net.TCPListener, lport int) (*net.TCPConn, *net.TCPConn) {
		c1, c2, err := connect(ln, func() (*net.TCPConn, error) {
			d := testenv.Dialer(false)
			d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: lport}
			d.Timeout = 10 * time.Second
			c, err := d.Dial("tcp4", ln.Addr().String())
			if err != nil {
				return nil, err
			}
			return c.(*net.TCPConn), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// Close the active end first: the accepted end (a child of a
		// prepared listener) must not linger in TIME_WAIT holding the
		// module for 60 s (see TestHardeningUnloadTimeWait).
		t.Cleanup(func() { c2.Close() })
		t.Cleanup(func() { c1.Close() })
		return c1, c2
	}
	lnA, lnB, lnC := listen(portA), listen(portB), listen(portC)
	a1, a2 := dialFrom(lnA, pa1)
	time.Sleep(50 * time.Millisecond) // a1 waits in the pending table
	b1, b2 := dialFrom(lnB, pb1)
	c1, c2 := dialFrom(lnC, pc1)
	time.Sleep(50 * time.Millisecond)

	rc := map[string]int32{}
	for name, p := range map[string]uint32{"a1": pa1, "b2": portB, "c1": pc1, "c2": portC, "listenA": portA} {
		// A listener's port is its child's too: the child's call, the
		// later one, is what the map holds for b2 and c2.
		var v int32
		if err := objs.Results.Lookup(p, &v); err != nil {
			t.Errorf("%s: the program did not call the kfunc (%v)", name, err)
			continue
		}
		rc[name] = v - 1000
	}
	m := testenv.ModuleStats(t)
	t.Logf("kfunc returned: a1 %d, b2 %d (forged peers), c1 %d, c2 %d (flags 1); module: paired +%d, refused +%d",
		rc["a1"], rc["b2"], rc["c1"], rc["c2"], delta(m, base, "paired"), delta(m, base, "refused"))

	secret := []byte("bytes of connection A")
	if _, err := a1.Write(secret); err != nil {
		t.Fatalf("a1 write: %v", err)
	}
	got := make([]byte, 64)
	a2.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := a2.Read(got)
	t.Logf("a2 (a1's real peer) read %q, %v", got[:n], err)
	if string(got[:n]) != string(secret) {
		t.Errorf("a1's bytes did not reach a2, its TCP peer (read %q, %v)", got[:n], err)
	}
	b2.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	n, err = b2.Read(got)
	t.Logf("b2 (connection B's server end) read %q, %v", got[:n], err)
	if n > 0 {
		t.Errorf("CROSS-DELIVERY: b2, the server end of unrelated connection B, received %q written on a1", got[:n])
	}
	var ne net.Error
	if n == 0 && !(errors.As(err, &ne) && ne.Timeout()) {
		t.Logf("b2's read: %v", err)
	}
	for _, name := range []string{"c1", "c2"} {
		if v, ok := rc[name]; ok && v >= 0 {
			t.Errorf("%s: bpf_sock_splice_pair accepted flags = 1 (returned %d), want a refusal", name, v)
		}
	}
	if rc["a1"] == 0 && rc["b2"] == 0 {
		t.Errorf("the module linked a1 and b2 (two unrelated connections) on forged keys: both calls returned 0")
	}
	l.Close()
	for _, c := range []*net.TCPConn{a1, b1, c1} {
		c.Close()
	}
	time.Sleep(100 * time.Millisecond)
	for _, c := range []*net.TCPConn{a2, b2, c2} {
		c.Close()
	}
	waitNoLive(t)
}

// netnsCookie is this thread's netns cookie (SO_NETNS_COOKIE).
func netnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
}
