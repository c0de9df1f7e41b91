// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Command demo runs the example conflist end to end on this machine: two
// containers (network namespaces with their own cgroups) on a bridge, the
// real bridge and host-local plugins plus socksplice through libcni, one
// connection on an allowlisted port and one on another port. It prints what
// "auto" decides on this kernel and why, what was accelerated, and removes
// everything it made.
package main

import (
	_ "embed"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/test/cnitest"
)

//go:embed example.conflist
var exampleConfList []byte

const payload = 64 << 20

func main() {
	cnitest.HelperMain()
	r := &cnitest.Runner{Name: "demo"}
	r.Cleanup(cnitest.RemoveBinDir)
	defer r.RunCleanups()
	if os.Geteuid() != 0 {
		r.Fatal("the demo needs root: it creates network namespaces, cgroups and loads BPF")
	}
	f := engine.Probe()
	fmt.Printf("socksplice demo on kernel %s (cgroup v2 at %s)\n\n", f.Kernel, f.CgroupRoot)

	n := cnitest.NetworkFromConfList(r, exampleConfList)
	r.Cleanup(func() { os.RemoveAll(n.PinDir) })
	fmt.Printf("example conflist %q (embedded; test/demo/example.conflist):\n%s\n", n.Name, exampleConfList)

	app, db := cnitest.NewContainer(r, "app"), cnitest.NewContainer(r, "db")
	n.MustAdd(r, app)
	n.MustAdd(r, db)
	fmt.Printf("ADD: container %s got %s, container %s got %s (sock_ops attached to their cgroups)\n\n",
		app.ID, app.IP(n), db.ID, db.IP(n))

	run := func(port uint16) {
		c0 := cnitest.Counters(r, n.PinDir)
		va, vb := app.HostVeth(n), db.HostVeth(n)
		v0 := cnitest.VethBytes(r, va) + cnitest.VethBytes(r, vb)
		start := time.Now()
		s, c := exchange(r, db, app, netip.AddrPortFrom(db.IP(n), port))
		el := time.Since(start)
		c1 := cnitest.Counters(r, n.PinDir)
		veth := cnitest.VethBytes(r, va) + cnitest.VethBytes(r, vb) - v0
		ok := s.RecvSHA == c.SentSHA && c.RecvSHA == s.SentSHA && s.RecvBytes == payload && c.RecvBytes == payload
		verdict := "plain TCP (veths carried the payload)"
		if c1.RedirectBytes-c0.RedirectBytes == 2*payload && veth < payload/100 {
			verdict = "ACCELERATED by the sockmap engine"
		}
		fmt.Printf("%s -> %s: %d MiB each way in %v, sha256 intact=%v\n", c.Local, c.Remote, payload>>20, el.Round(time.Millisecond), ok)
		fmt.Printf("  veths carried %d bytes; sockets paired +%d; redirected +%d bytes in +%d messages\n",
			veth, c1.Paired-c0.Paired, c1.RedirectBytes-c0.RedirectBytes, c1.RedirectMsgs-c0.RedirectMsgs)
		fmt.Printf("  => %s\n\n", verdict)
		if !ok {
			r.Fatalf("data mismatch on port %d", port)
		}
	}
	fmt.Println("port 8080 is in the example's ports allowlist:")
	run(8080)
	fmt.Println("port 9090 is not in the allowlist, so it stays plain TCP:")
	run(9090)

	o, err := node.Load(n.PinDir)
	if err != nil {
		r.Fatal(err)
	}
	d, err := engine.Decide(engine.Auto, f, o, filepath.Join(cnitest.BinDir(r), "socksplice"))
	o.Close()
	if err != nil {
		r.Fatal(err)
	}
	fmt.Printf("what \"mode\": \"auto\" picks on this kernel: %s\n  why: %s\n", d.Engine, d.Reason)
	for _, l := range d.Detail {
		fmt.Printf("  %s\n", l)
	}
	fmt.Println("\ncleaning up: DEL both containers, delete netns, cgroups, bridge and pins")
}

func exchange(r *cnitest.Runner, srv, cli *cnitest.Container, addr netip.AddrPort) (s, c cnitest.XferResult) {
	s, c, err := cnitest.Exchange(r, srv, cli,
		cnitest.Xfer{Role: "server", Addr: addr.String(), Bytes: payload, Seed: 1},
		cnitest.Xfer{Role: "client", Addr: addr.String(), Bytes: payload, Seed: 2})
	if err != nil {
		r.Fatalf("transfer: %v", err)
	}
	return s, c
}
