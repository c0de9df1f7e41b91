// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/pkg/enroll"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/pkg/selftest"
	"github.com/socksplice/socksplice/test/testenv"
)

// spliceRun sends n bytes from a client to a server that reads with
// splice(2) (as Go's io.Copy between TCP connections does) and returns what
// the server got, and the client's error if any.
func spliceRun(t *testing.T, srv, cli *testenv.Container, addr netip.AddrPort, n int64, seed uint64) (testenv.XferResult, error) {
	t.Helper()
	timeout := 15 * time.Second
	sp := srv.StartXfer(t, testenv.Xfer{Role: "server", Addr: addr.String(), Seed: seed, SpliceRead: true, Timeout: timeout})
	cp := cli.StartXfer(t, testenv.Xfer{Role: "client", Addr: addr.String(), Bytes: n, Seed: seed + 1, Timeout: timeout})
	s, serr := sp.XferResult()
	_, cerr := cp.XferResult()
	if serr != nil {
		t.Fatalf("splice server: %v", serr)
	}
	return s, cerr
}

// TestAutoNeverLosesData checks the engine rule against an independent
// witness on the real bridge topology: whatever the node's self-test
// decided, a splice(2) reader in a container under "auto" gets every byte;
// and the forced sockmap engine behaves the way the self-test said it would.
func TestAutoNeverLosesData(t *testing.T) {
	testenv.RequireRoot(t)
	pin := testenv.PinDir(t)
	const size = 8 << 20

	auto := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.220.0.0/24", PinDir: pin, Plugin: map[string]any{"mode": "auto"}})
	a, b := testenv.NewContainer(t, "a"), testenv.NewContainer(t, "b")
	auto.MustAdd(t, a)
	auto.MustAdd(t, b)
	// What auto picked, from the cache the ADDs filled, and the sockmap
	// verdict (run now if auto never needed it) for the forced case below.
	o, err := node.Open(pin)
	if err != nil {
		t.Fatal(err)
	}
	f, exe := engine.Probe(), testenv.PluginBinary(t)
	st, err := engine.Decide(engine.Auto, f, o, exe)
	if err != nil || !st.Cached {
		o.Close()
		t.Fatalf("no cached self-test verdict after an auto ADD: %+v (%v)", st, err)
	}
	v, err := engine.Verdict(engine.Sockmap, f, o, exe)
	recs, _ := enroll.Records(o)
	enrolled := mapLen(t, o.Enroll)
	o.Close()
	if err != nil {
		t.Fatal(err)
	}
	// guest-tests.sh prints this line at the end of a VM run.
	t.Logf("auto on this node: %s (kernel %s: %s; %s)", st.Engine, f.Kernel, st.Reason, strings.Join(st.Detail, "; "))
	switch st.Engine {
	case engine.Off, engine.Sockmap, engine.Splice:
		// Off is recorded too (for CHECK and STATUS), with nothing enrolled.
		if len(recs) != 2 {
			t.Errorf("auto decided %s but %d attachments were recorded, want 2", st.Engine, len(recs))
		}
		for k, r := range recs {
			if r.Engine() != st.Engine {
				_, id, _, _ := r.Identity(k)
				t.Errorf("auto decided %s but %s was recorded with engine %s", st.Engine, id, r.Engine())
			}
		}
		if st.Engine == engine.Off && enrolled != 0 {
			t.Errorf("auto decided off but %d netns were enrolled", enrolled)
		}
	default:
		t.Fatalf("unexpected auto engine %q", st.Engine)
	}
	if node.HaveSpliceKfuncs() && st.Engine != engine.Splice {
		t.Errorf("the splice module is loaded but auto picked %s", st.Engine)
	}

	s, cerr := spliceRun(t, b, a, netip.AddrPortFrom(b.IP(auto), 6001), size, 600)
	if cerr != nil || s.RecvBytes != size || s.RecvSHA != testenv.PayloadSHA(601, size) {
		t.Errorf("auto (%s): splice(2) reader got %d of %d bytes (%s), client error %v", st.Engine, s.RecvBytes, size, s.ReadEnd, cerr)
	}

	// The forced engine, as the self-test predicted.
	forced := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.221.0.0/24", PinDir: pin, Plugin: map[string]any{"mode": "sockmap"}})
	c, d := testenv.NewContainer(t, "c"), testenv.NewContainer(t, "d")
	forced.MustAdd(t, c)
	forced.MustAdd(t, d)
	s, cerr = spliceRun(t, d, c, netip.AddrPortFrom(d.IP(forced), 6002), size, 700)
	intact := cerr == nil && s.RecvBytes == size && s.RecvSHA == testenv.PayloadSHA(701, size)
	t.Logf("mode sockmap with a splice(2) reader: received %d of %d bytes, read ended by %s, client error %v", s.RecvBytes, size, s.ReadEnd, cerr)
	spliceOK := !strings.Contains(v.Reason, selftest.CheckSpliceRead)
	if intact != spliceOK {
		t.Errorf("self-test said splice(2) readers are safe=%v, but the bridge topology shows intact=%v", spliceOK, intact)
	}
}

// TestAutoTellsTheOperator: where auto cannot pick the splice engine, every
// ADD says why on stderr (the runtime's log), and the system log (here the
// kernel log: no syslog daemon) gets it once per node and decision, not
// once per container.
func TestAutoTellsTheOperator(t *testing.T) {
	testenv.RequireRoot(t)
	if testenv.HasSyslog() {
		t.Skip("SKIP: a syslog daemon listens on /dev/log, so the notice goes there, which this test does not read")
	}
	klog := testenv.TailKernelLog(t)
	n := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.222.0.0/24", PinDir: testenv.PinDir(t), Plugin: map[string]any{"mode": "auto"}})
	var stderr bytes.Buffer
	n.LogTo(t, &stderr)
	for _, name := range []string{"a", "b", "c"} {
		n.MustAdd(t, testenv.NewContainer(t, name))
	}
	o, err := node.Open(n.PinDir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := engine.Decide(engine.Auto, engine.Probe(), o, testenv.PluginBinary(t))
	o.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := 3
	if d.Engine == engine.Splice {
		want = 0 // nothing to tell
	}
	said := strings.Count(stderr.String(), "network "+n.Name+": mode auto (from config)")
	logged := klog.Messages("network " + n.Name + ":")
	if said != want || len(logged) != min(want, 1) {
		t.Errorf("auto chose %s: stderr told %d of 3 ADDs (want %d), the kernel log %d times (want %d):\n%s\n%s",
			d.Engine, said, want, len(logged), min(want, 1), stderr.String(), strings.Join(logged, "\n"))
	}
	if len(logged) > 0 {
		t.Logf("kernel log: %.300s", logged[0])
	}
}
