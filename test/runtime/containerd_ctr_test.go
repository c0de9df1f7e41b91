// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package runtime

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/test/testenv"
)

const payload = 64 << 20 // bytes each way

// ctrNet is one containerd instance with a private test network.
type ctrNet struct {
	*cniNet
	cd  *Containerd
	sfx string // random, in the names of the test's containers
}

// newCtrNet starts containerd with [bridge + host-local + socksplice
// (plugin)] on subnet, everything private to the test.
func newCtrNet(t *testing.T, subnet string, plugin map[string]any) *ctrNet {
	t.Helper()
	RequireContainerd(t)
	requireBPFFS(t)
	// The CRI hands the pod's annotations only to plugins that ask.
	p := map[string]any{"capabilities": map[string]bool{"io.kubernetes.cri.pod-annotations": true}}
	for k, v := range plugin {
		p[k] = v
	}
	n := &ctrNet{cniNet: newCNINet(t, "ssctrd", subnet, p), sfx: nameSuffix()}
	// 1.0.0: the newest version containerd 1.6's libcni speaks.
	n.cd = StartContainerd(t, n.conflist(t, "1.0.0"))
	return n
}

// xferEnv is the environment of a boxtool xfer helper (deadline 120 s if
// x has none).
func xferEnv(t *testing.T, x testenv.Xfer) []string {
	t.Helper()
	if x.Timeout == 0 {
		x.Timeout = 120 * time.Second
	}
	env, err := testenv.HelperEnv("xfer", x)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// keepAlive runs the helper, then sleeps: the container (and its netns
// and veth, whose counters the test reads) outlives the transfer.
var keepAlive = []string{"/bin/sh", "-c", "/boxtool; exec sleep 3600"}

// TestCtrRunCNI: two containers started with `ctr run --cni --rootfs`
// exchange 64 MiB each way through the sockmap engine; then, as ctr never
// calls DEL, CNI GC with no valid attachment reclaims them, and nothing is
// left: attachments, leases, links, sockets, processes.
func TestCtrRunCNI(t *testing.T) {
	n := newCtrNet(t, "10.252.1.0/24", map[string]any{"mode": "sockmap"})
	sfx := n.sfx
	const port = 5432
	srvX := testenv.Xfer{Role: "server", Addr: fmt.Sprintf(":%d", port), Bytes: payload, Seed: 1501}
	srv := n.cd.RunCtr(t, "srv-"+sfx, xferEnv(t, srvX), keepAlive...)
	srv.WaitReady(t)
	srvIP := leaseOf(t, n.cniNet, srv.CNIID())

	v0 := n.portBytes(t) // the server's veth; the client's is born with the client
	c0 := testenv.ReadCounters(t, n.PinDir)
	cliX := testenv.Xfer{Role: "client", Addr: fmt.Sprintf("%s:%d", srvIP, port), Bytes: payload, Seed: 1502}
	cli := n.cd.RunCtr(t, "cli-"+sfx, xferEnv(t, cliX), keepAlive...)
	var sr, cr testenv.XferResult
	var serr, cerr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); serr = srv.Report(&sr) }()
	go func() { defer wg.Done(); cerr = cli.Report(&cr) }()
	wg.Wait()
	if serr != nil || cerr != nil {
		t.Fatalf("xfer: server: %v; client: %v\n%s", serr, cerr, n.cd.Log())
	}
	checkIntact(t, "client->server", sr, cliX)
	checkIntact(t, "server->client", cr, srvX)
	ports := n.ports(t)
	vb := n.portBytes(t) - v0
	d := delta(testenv.ReadCounters(t, n.PinDir), c0)
	line := fmt.Sprintf("ctr: %s -> %s: %d B each way, sha256 intact; veths %v carried %d B; paired +%d, redirected +%d B in +%d msgs",
		cr.Local, cr.Remote, int64(payload), ports, vb, d.Paired, d.RedirectBytes, d.RedirectMsgs)
	t.Log(line)
	if limit := uint64(2*payload) / 1000; vb > limit {
		t.Errorf("veths carried %d B, want < %d: the payload went through the stack", vb, limit)
	}
	if d.Paired != 2 || d.RedirectBytes != 2*payload {
		t.Errorf("paired +%d, redirected +%d B; want +2 and %d", d.Paired, d.RedirectBytes, 2*payload)
	}
	if st := readStatus(t, n.PinDir); len(st.Attachments) != 2 {
		t.Errorf("socksplice status: %d attachments, want 2", len(st.Attachments))
	}

	// ctr removes the containers without a DEL; GC reclaims them.
	pids := n.taskPIDs(t)
	for _, k := range []*CtrTask{srv, cli} {
		n.cd.MustCtr(t, "tasks", "rm", "-f", k.ID) // SIGKILL, wait, delete
		n.cd.MustCtr(t, "containers", "rm", k.ID)
	}
	n.gc(t)
	n.checkNothingLeft(t, pids, port)
	if !t.Failed() {
		t.Logf("summary: %s; ctr rm ran no DEL, CNI GC reclaimed both; leftovers found: none", line)
	}
}

// checkIntact compares what the receiver got with the sender's seed.
func checkIntact(t *testing.T, what string, receiver testenv.XferResult, sender testenv.Xfer) {
	t.Helper()
	want := testenv.PayloadSHA(sender.Seed, sender.Bytes)
	if receiver.RecvBytes != sender.Bytes || receiver.RecvSHA != want {
		t.Errorf("%s: received %d B sha256 %s, want %d B %s", what, receiver.RecvBytes, receiver.RecvSHA, sender.Bytes, want)
	}
}

// delta is a - b for the counters the tests read.
func delta(a, b testenv.Counters) testenv.Counters {
	return testenv.Counters{Paired: a.Paired - b.Paired, RedirectBytes: a.RedirectBytes - b.RedirectBytes, RedirectMsgs: a.RedirectMsgs - b.RedirectMsgs}
}

// taskPIDs returns the PIDs of the instance's running tasks.
func (n *ctrNet) taskPIDs(t *testing.T) []int {
	t.Helper()
	var pids []int
	for _, l := range strings.Split(n.cd.MustCtr(t, "tasks", "ls"), "\n")[1:] {
		var id string
		var pid int
		if _, err := fmt.Sscan(l, &id, &pid); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// gc runs CNI GC of the network with no valid attachment, through libcni
// with ctr's cache: every cached attachment gets its DEL, then each plugin
// its GC (the conflist as 1.1.0, the first version with GC).
func (n *ctrNet) gc(t *testing.T) {
	t.Helper()
	list, err := libcni.ConfListFromBytes(n.conflist(t, "1.1.0"))
	if err != nil {
		t.Fatal(err)
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{n.cd.BinDir}, n.cd.CNICache, nil)
	cached, _ := cni.GetCachedAttachments("")
	if err := cni.GCNetworkList(context.Background(), list, &libcni.GCArgs{}); err != nil {
		t.Fatalf("CNI GC: %v", err)
	}
	t.Logf("CNI GC with no valid attachment: %d cached attachments DELeted", len(cached))
}

// checkNothingLeft looks for everything the containers had: map entries
// and attachments in the pins, leases, host veths, sockets on port, the
// tasks' processes.
func (n *ctrNet) checkNothingLeft(t *testing.T, pids []int, port int) {
	t.Helper()
	left := n.leftovers(t, port)
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			left = append(left, fmt.Sprintf("process %d", pid))
		}
	}
	if out := strings.TrimSpace(n.cd.MustCtr(t, "tasks", "ls", "-q")); out != "" {
		left = append(left, "tasks "+out)
	}
	n.reportLeft(t, "GC", left, fmt.Sprintf("processes %v, tasks", pids))
}

// leftovers lists what is left of the network's containers: what the
// shared check finds without footprints (attachments, host-local leases,
// bridge ports: a veth goes with its netns), entries in every map of the
// node (enrollments, addresses, paired sockets), TCP sockets on ports in
// the test's netns.
func (n *ctrNet) leftovers(t *testing.T, ports ...int) []string {
	t.Helper()
	left := leftovers(t, n.cniNet)
	for name, cnt := range testenv.MapEntries(t, n.PinDir) {
		if cnt != 0 {
			left = append(left, fmt.Sprintf("%d entries in map %s", cnt, name))
		}
	}
	if s := TCPSockets(t, ports...); len(s) != 0 {
		left = append(left, fmt.Sprintf("sockets %q", s))
	}
	return left
}

// reportLeft fails the test if anything is left after step, else says
// what was looked for.
func (n *ctrNet) reportLeft(t *testing.T, step string, left []string, more string) {
	t.Helper()
	if len(left) != 0 {
		t.Errorf("after %s left behind: %s", step, strings.Join(left, "; "))
		return
	}
	t.Logf("after %s left behind: none (map entries: pairs, enroll, localAddrs, domainAddrs, attach; leases; host veths; TCP sockets; %s)", step, more)
}

// requireBPFFS mounts bpffs on /sys/fs/bpf if nothing is there, as the
// plugin would: its ADD under ctr runs in a mount namespace of its own,
// where a mount of its own would not reach the test.
func requireBPFFS(t *testing.T) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return
	}
	if err := unix.Mount("bpffs", "/sys/fs/bpf", "bpf", 0, "mode=700"); err != nil {
		t.Fatalf("mounting bpffs on /sys/fs/bpf: %v", err)
	}
}
