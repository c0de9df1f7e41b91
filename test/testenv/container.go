// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
)

// Container is a network namespace (lo up) plus its own cgroup v2
// directory, as a runtime makes them before it calls CNI.
type Container struct {
	ID        string
	NetnsName string
	Netns     string // path
	Cgroup    string // absolute cgroup directory
	CgroupRel string // relative to the cgroup v2 root, as runtimes pass it
	// Annotations are the pod's, passed as CRI runtimes do (runtimeConfig
	// io.kubernetes.cri.pod-annotations) when set.
	Annotations map[string]string
	mu          sync.Mutex
	results     map[string]*current.Result // by network name
	netnsGone   bool
}

var (
	cgBaseOnce        sync.Once
	cgBase, cgBaseRel string
	cgRoot            string
	cgRootErr         error
)

// NewContainer creates a netns and a cgroup directory; both go at
// cleanup, after every process started in them was killed (see Exec).
func NewContainer(t T, name string) *Container {
	t.Helper()
	cgBaseOnce.Do(func() {
		cgRoot, cgRootErr = cgroupRoot()
		cgBaseRel = fmt.Sprintf("/socksplice-test-%d", os.Getpid())
		cgBase = filepath.Join(cgRoot, cgBaseRel)
	})
	if cgRootErr != nil {
		t.Fatal(cgRootErr)
	}
	sfx := suffix()
	c := &Container{
		ID:        name + "-" + sfx,
		NetnsName: "ss" + name + "-" + sfx,
		results:   map[string]*current.Result{},
	}
	c.Netns = "/var/run/netns/" + c.NetnsName
	c.CgroupRel = filepath.Join(cgBaseRel, c.ID)
	c.Cgroup = filepath.Join(cgRoot, c.CgroupRel)
	if out, err := exec.Command("ip", "netns", "add", c.NetnsName).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() {
		if err := c.RemoveNetns(); err != nil {
			t.Errorf("%v", err)
		}
	})
	if out, err := exec.Command("ip", "-n", c.NetnsName, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v %s", err, out)
	}
	if err := os.MkdirAll(c.Cgroup, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := removeCgroup(c.Cgroup); err != nil {
			t.Errorf("removing cgroup %s: %v", c.Cgroup, err)
		}
		os.Remove(cgBase) // succeeds once the last container is gone
	})
	return c
}

// RemoveNetns deletes c's netns, as when a container dies before its
// runtime ran DEL; its cleanup then has nothing left to delete. The
// kernel frees the netns once nothing holds it any more.
func (c *Container) RemoveNetns() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.netnsGone {
		return nil
	}
	if out, err := exec.Command("ip", "netns", "del", c.NetnsName).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %v %s", c.NetnsName, err, out)
	}
	c.netnsGone = true
	return nil
}

// CgroupRoot returns the cgroup v2 root directory.
func CgroupRoot(t T) string {
	t.Helper()
	root, err := cgroupRoot()
	if err != nil {
		t.Fatalf("cgroup v2 root: %v", err)
	}
	return root
}

// Cgroup creates the cgroup directory dir and removes it at cleanup.
// Cleanups run last first, so its children go before it, and so do the
// processes started in it later (see Exec).
func Cgroup(t T, dir string) string {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("creating cgroup %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := removeCgroup(dir); err != nil {
			t.Errorf("removing cgroup %s: %v", dir, err)
		}
	})
	return dir
}

// NewCgroup creates a cgroup with a fresh name under parent, removed at
// cleanup.
func NewCgroup(t T, parent string) string {
	t.Helper()
	return Cgroup(t, filepath.Join(parent, "socksplice-test-cg-"+suffix()))
}

// removeCgroup removes the cgroup directory dir; one already gone is
// fine.
func removeCgroup(dir string) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = os.Remove(dir); err == nil || os.IsNotExist(err) {
			return nil
		}
		time.Sleep(20 * time.Millisecond) // exiting processes leave the cgroup asynchronously
	}
	return err
}

func (c *Container) result(n *Network) *current.Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.results[n.Name]
}

// IP returns c's first IPv4 address in network n.
func (c *Container) IP(n *Network) netip.Addr {
	return c.addr(n, netip.Addr.Is4)
}

// IP6 returns c's first IPv6 address in network n.
func (c *Container) IP6(n *Network) netip.Addr {
	return c.addr(n, netip.Addr.Is6)
}

func (c *Container) addr(n *Network, want func(netip.Addr) bool) netip.Addr {
	if r := c.result(n); r != nil {
		for _, ip := range r.IPs {
			if a, ok := netip.AddrFromSlice(ip.Address.IP); ok && want(a.Unmap()) {
				return a.Unmap()
			}
		}
	}
	return netip.Addr{}
}

// HostVeth returns the host-side veth of c in network n.
func (c *Container) HostVeth(n *Network) string {
	if r := c.result(n); r != nil {
		for _, i := range r.Interfaces {
			if i.Sandbox == "" && i.Name != n.Bridge {
				return i.Name
			}
		}
	}
	return ""
}

// VethBytes returns rx+tx bytes of a host interface.
func VethBytes(t T, ifname string) uint64 {
	t.Helper()
	var sum uint64
	for _, f := range []string{"rx_bytes", "tx_bytes"} {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", ifname, "statistics", f))
		if err != nil {
			t.Fatalf("veth counters: %v", err)
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	return sum
}

// LoBytes returns the bytes lo received in c's netns.
func (c *Container) LoBytes(t T) uint64 {
	t.Helper()
	rx, _ := c.LinkBytes(t, "lo")
	return rx
}

// LinkBytes returns the bytes the interface ifname in c's netns received
// and sent.
func (c *Container) LinkBytes(t T, ifname string) (rx, tx uint64) {
	t.Helper()
	out, err := exec.Command("ip", "-n", c.NetnsName, "-s", "-j", "link", "show", ifname).Output()
	if err != nil {
		t.Fatalf("%s counters in %s: %v", ifname, c.ID, err)
	}
	type dir struct {
		Bytes uint64 `json:"bytes"`
	}
	var links []struct {
		Stats struct {
			Rx dir `json:"rx"`
			Tx dir `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("%s counters in %s: %v %s", ifname, c.ID, err, out)
	}
	return links[0].Stats.Rx.Bytes, links[0].Stats.Tx.Bytes
}

// Listen opens a plain TCP listener in c's netns (this thread enters it
// for the call, so the socket is c's), closed at cleanup.
func (c *Container) Listen(t T, addr netip.AddrPort) *net.TCPListener {
	t.Helper()
	var ln *net.TCPListener
	err := ns.WithNetNSPath(c.Netns, func(ns.NetNS) (err error) {
		ln, err = ListenTCP(tcpFamily(addr.Addr()), addr.String(), false)
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", c.ID, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Dial connects from c's netns with plain TCP.
func (c *Container) Dial(addr net.Addr, timeout time.Duration) (*net.TCPConn, error) {
	var conn net.Conn
	err := ns.WithNetNSPath(c.Netns, func(ns.NetNS) (err error) {
		d := Dialer(false)
		d.Timeout = timeout
		conn, err = d.Dial("tcp", addr.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	return conn.(*net.TCPConn), nil
}

// ListenTCP listens with plain TCP, or with MPTCP if mptcp. The suites ask
// explicitly because Go listeners use MPTCP by default (Go 1.24+): on a
// kernel with MPTCP their sockets would be MPTCP subflows, which the
// engines leave on plain TCP, and the suites would silently stop testing
// the fast path.
func ListenTCP(network, addr string, mptcp bool) (*net.TCPListener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(mptcp)
	ln, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// Dialer returns a dialer for plain TCP, or MPTCP if mptcp (see ListenTCP).
func Dialer(mptcp bool) *net.Dialer {
	d := &net.Dialer{}
	d.SetMultipathTCP(mptcp)
	return d
}

func tcpFamily(a netip.Addr) string {
	if a.Is4() {
		return "tcp4"
	}
	return "tcp6"
}

// Serve accepts on ln until it is closed and hands each connection to
// handle in a goroutine of its own, closing it afterwards.
func Serve(ln *net.TCPListener, handle func(*net.TCPConn)) {
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}
