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
	"time"

	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/test/testenv"
)

//go:embed example.conflist
var exampleConfList []byte

const payload = 64 << 20

func main() { testenv.Main("demo", demo) }

func demo(t testenv.T) {
	f := engine.Probe()
	fmt.Printf("socksplice demo on kernel %s (cgroup v2 at %s)\n\n", f.Kernel, f.CgroupRoot)

	n := testenv.NetworkFromConfList(t, exampleConfList)
	t.Cleanup(func() { os.RemoveAll(n.PinDir) })
	fmt.Printf("example conflist %q (embedded; test/demo/example.conflist):\n%s\n", n.Name, exampleConfList)

	app, db := testenv.NewContainer(t, "app"), testenv.NewContainer(t, "db")
	n.MustAdd(t, app)
	n.MustAdd(t, db)
	fmt.Printf("ADD: container %s got %s, container %s got %s (sock_ops attached to their cgroups)\n\n",
		app.ID, app.IP(n), db.ID, db.IP(n))

	run := func(port uint16) {
		m := n.Meter(t, app, db)
		addr := netip.AddrPortFrom(db.IP(n), port).String()
		start := time.Now()
		_, c, err := testenv.Exchange(t, db, app,
			testenv.Xfer{Role: "server", Addr: addr, Bytes: payload, Seed: 1},
			testenv.Xfer{Role: "client", Addr: addr, Bytes: payload, Seed: 2})
		if err != nil {
			t.Fatalf("transfer on port %d: %v", port, err)
		}
		el := time.Since(start)
		v, d := m.VethBytes(), m.Counters()
		veth := v[0] + v[1]
		verdict := "plain TCP (veths carried the payload)"
		if d.RedirectBytes == 2*payload && veth < payload/100 {
			verdict = "ACCELERATED by the sockmap engine"
		}
		fmt.Printf("%s -> %s: %d MiB each way in %v, sha256 intact both ways\n", c.Local, c.Remote, payload>>20, el.Round(time.Millisecond))
		fmt.Printf("  veths carried %d bytes; sockets paired +%d; redirected +%d bytes in +%d messages\n",
			veth, d.Paired, d.RedirectBytes, d.RedirectMsgs)
		fmt.Printf("  => %s\n\n", verdict)
	}
	fmt.Println("port 8080 is in the example's ports allowlist:")
	run(8080)
	fmt.Println("port 9090 is not in the allowlist, so it stays plain TCP:")
	run(9090)

	o, err := node.Load(n.PinDir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := engine.Decide(engine.Auto, f, o, testenv.PluginBinary(t))
	o.Close()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("what \"mode\": \"auto\" picks on this kernel: %s\n  why: %s\n", d.Engine, d.Reason)
	for _, l := range d.Detail {
		fmt.Printf("  %s\n", l)
	}
	fmt.Println("\ncleaning up: DEL both containers, delete netns, cgroups, bridge and pins")
}
