// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/socksplice/socksplice/pkg/agent"
	"github.com/socksplice/socksplice/pkg/counters"
	"github.com/socksplice/socksplice/pkg/status"
	"github.com/socksplice/socksplice/test/testenv"
)

// readStatus runs "socksplice status pinDir", the operator's view.
func readStatus(t *testing.T, pinDir string) status.Status {
	t.Helper()
	return statusVia(t, testenv.PluginBinary(t), pinDir)
}

func attachmentOf(t *testing.T, st status.Status, network string, c *testenv.Container) counters.NS {
	t.Helper()
	for _, a := range st.Attachments {
		if a.Network == network && a.ContainerID == c.ID {
			if a.Counters == nil {
				t.Fatalf("attachment %s/%s has no counters", network, c.ID)
			}
			return *a.Counters
		}
	}
	t.Fatalf("no attachment %s/%s in status", network, c.ID)
	return counters.NS{}
}

func networkOf(t *testing.T, st status.Status, name string) status.Network {
	t.Helper()
	for _, n := range st.Networks {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no network %s in status", name)
	return status.Network{}
}

// TestPerContainerCounters: two containers of a sockmap network exchange
// data, one also talks to itself over loopback (refused: loopback is not
// enabled), a third stays idle, and the self-test of an auto network on
// the same node pairs its own connections. Each container shows what its
// own sockets did, the network sums them, the self-test shows in no
// container or network, and the node-wide paired count is their total.
// The agent's metrics say the same; after a DEL the network's counters
// keep what the deleted container counted.
func TestPerContainerCounters(t *testing.T) {
	testenv.RequireRoot(t)
	pin := testenv.PinDir(t)
	// First ADD on the node, mode auto: the self-test runs now.
	auto := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.219.0.0/24", PinDir: pin, Plugin: map[string]any{"mode": "auto"}})
	d := testenv.NewContainer(t, "d")
	auto.MustAdd(t, d)

	n := testenv.NewNetwork(t, testenv.NetOpts{Subnet: "10.220.0.0/24", PinDir: pin, Plugin: map[string]any{"mode": "sockmap"}})
	a, b, c := testenv.NewContainer(t, "a"), testenv.NewContainer(t, "b"), testenv.NewContainer(t, "c")
	for _, x := range []*testenv.Container{a, b, c} {
		n.MustAdd(t, x)
	}
	before := readStatus(t, pin)

	const size = 4 << 20
	m := n.Meter(t)
	exchange(t, b, a, netip.AddrPortFrom(b.IP(n), 5301), size, 300, 0)
	wantSockmap(t, "a to b", m.Counters(), 2, 2*size)
	exchange(t, a, a, netip.MustParseAddrPort("127.0.0.1:5302"), 4096, 310, 0)

	st := readStatus(t, pin)
	ca, cb, cc := attachmentOf(t, st, n.Name, a), attachmentOf(t, st, n.Name, b), attachmentOf(t, st, n.Name, c)
	t.Logf("a %+v; b %+v; c %+v; self-test %+v; node paired %d", ca, cb, cc, st.SelfTest, st.Counters.Paired)
	if want := (counters.NS{Paired: 1, PolicyRefused: 2}); ca != want {
		t.Errorf("container a counted %+v, want %+v (one end of the pair, both ends of its loopback flow refused)", ca, want)
	}
	if want := (counters.NS{Paired: 1}); cb != want {
		t.Errorf("container b counted %+v, want %+v", cb, want)
	}
	if cc != (counters.NS{}) {
		t.Errorf("idle container c counted %+v, want nothing", cc)
	}
	var sum counters.NS
	for _, x := range []counters.NS{ca, cb, cc} {
		sum.Add(x)
	}
	net := networkOf(t, st, n.Name)
	if net.Counters != sum || net.Attachments["sockmap"] != 3 {
		t.Errorf("network %s: %+v over %v attachments, want the containers' sum %+v over sockmap=3", n.Name, net.Counters, net.Attachments, sum)
	}
	// The auto network's container runs whatever auto chose; it moved
	// nothing, so whatever its engine it counted nothing.
	if an := networkOf(t, st, auto.Name); an.Counters != (counters.NS{}) {
		t.Errorf("network %s (auto, idle) counted %+v, want nothing: the self-test's connections leaked into it", auto.Name, an.Counters)
	}
	// The self-test pairs loopback connections in its own netns.
	if st.SelfTest.Paired == 0 || st.SelfTest != before.SelfTest {
		t.Errorf("self-test counted %+v (before the traffic %+v), want paired > 0 and unchanged by the containers' traffic", st.SelfTest, before.SelfTest)
	}
	// Node-wide, each engine counts its own: sockmap in paired, the
	// splice module's takes in splicePaired (where auto chose splice,
	// the self-test paired there).
	if got, want := st.Counters.Paired+st.Counters.SplicePaired, net.Counters.Paired+st.SelfTest.Paired; got != want {
		t.Errorf("node-wide paired %d + splicePaired %d, want %d: network %d + self-test %d",
			st.Counters.Paired, st.Counters.SplicePaired, want, net.Counters.Paired, st.SelfTest.Paired)
	}
	if got, want := st.Counters.PolicyRefused, net.Counters.PolicyRefused+st.SelfTest.PolicyRefused; got != want {
		t.Errorf("node-wide policyRefused %d, want %d", got, want)
	}
	// Redirected bytes are counted per message, node-wide only: the
	// containers' exactly, the self-test's apart.
	// The self-test's sockmap bytes exist where the sockmap self-test ran
	// (auto did not pick splice first).
	ranSockmap := st.Meta.SelfTest != nil
	if st.Counters.RedirectBytes != 2*size || (st.Counters.SelftestRedirectBytes != 0) != ranSockmap ||
		st.Counters.SelftestRedirectBytes != before.Counters.SelftestRedirectBytes {
		t.Errorf("node-wide redirected %d B, self-test %d B (before the traffic %d B); want exactly %d B and the self-test's apart, unchanged",
			st.Counters.RedirectBytes, st.Counters.SelftestRedirectBytes, before.Counters.SelftestRedirectBytes, 2*size)
	}

	checkMetrics(t, pin, n.Name, st)

	// The tables say the same.
	out, err := exec.Command(testenv.PluginBinary(t), "status", "--human", pin).Output()
	if err != nil {
		t.Fatalf("socksplice status --human: %v", err)
	}
	wantRow := strings.Join([]string{n.Name, a.ID, "eth0", "sockmap", "1", "policy_refused=2"}, " ")
	if !slices.ContainsFunc(strings.Split(string(out), "\n"), func(l string) bool { return strings.Join(strings.Fields(l), " ") == wantRow }) {
		t.Errorf("status --human has no row %q:\n%s", wantRow, out)
	}

	// The network keeps what a deleted container counted.
	if err := n.Del(t, b); err != nil {
		t.Fatalf("DEL b: %v", err)
	}
	after := readStatus(t, pin)
	net2 := networkOf(t, after, n.Name)
	if net2.Counters != net.Counters || net2.Retired != cb || net2.Attachments["sockmap"] != 2 {
		t.Errorf("after DEL of b, network %s: %+v (retired %+v) over %v, want %+v (retired %+v) over sockmap=2",
			n.Name, net2.Counters, net2.Retired, net2.Attachments, net.Counters, cb)
	}
}

// scrape fetches the agent's metrics and parses them.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape: %s\n%s", resp.Status, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing metrics: %v", err)
	}
	return mf
}

// value returns the value of the series of family name with exactly the
// given labels (name=value pairs), and whether there is one.
func value(mf map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := mf[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) != len(labels)/2 {
			continue
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && got[labels[i]] == labels[i+1]
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		}
	}
	return 0, false
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// serveAgent runs the agent in-process on a loopback port until cleanup.
func serveAgent(t *testing.T, opts agent.Options) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.New(opts).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// checkMetrics scrapes an in-process agent on pin and compares its series
// with the status st read just before (no traffic in between).
func checkMetrics(t *testing.T, pin, network string, st status.Status) {
	t.Helper()
	base := serveAgent(t, agent.Options{PinDir: pin, Version: "test"})
	if code := getStatus(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d, want 200", code)
	}
	if code := getStatus(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d, want 200", code)
	}
	mf := scrape(t, base)
	net := networkOf(t, st, network)
	for _, w := range []struct {
		name   string
		labels []string
		want   uint64
	}{
		{"socksplice_paired_total", []string{"network", network}, net.Counters.Paired},
		{"socksplice_fallback_total", []string{"network", network, "reason", "policy_refused"}, net.Counters.PolicyRefused},
		{"socksplice_fallback_total", []string{"network", network, "reason", "no_peer"}, net.Counters.NoPeer},
		{"socksplice_attachments", []string{"network", network, "engine", "sockmap"}, 3},
		{"socksplice_selftest_paired_total", nil, st.SelfTest.Paired},
		{"socksplice_redirected_bytes_total", []string{"engine", "sockmap"}, st.Counters.RedirectBytes},
		{"socksplice_selftest_redirected_bytes_total", []string{"engine", "sockmap"}, st.Counters.SelftestRedirectBytes},
		{"socksplice_node_events_total", []string{"counter", "paired"}, st.Counters.Paired},
		{"socksplice_pins_loaded", nil, 1},
	} {
		v, ok := value(mf, w.name, w.labels...)
		if !ok || v != float64(w.want) {
			t.Errorf("%s%v = %v (present %v), want %d", w.name, w.labels, v, ok, w.want)
		}
	}
	if _, ok := mf["socksplice_build_info"]; !ok {
		t.Errorf("no socksplice_build_info")
	}
	if os.Getenv("SOCKSPLICE_PRINT_METRICS") != "" {
		var b strings.Builder
		for _, name := range []string{"socksplice_paired_total", "socksplice_fallback_total", "socksplice_attachments"} {
			expfmt.MetricFamilyToText(&b, mf[name])
		}
		fmt.Print(b.String())
	}
}

// TestAgentReadiness: ready on a node where nothing was added yet (no
// pins: nothing to read, pins_loaded 0), not ready while the installer's
// first pass runs or when the pins cannot be read.
func TestAgentReadiness(t *testing.T) {
	testenv.RequireRoot(t)
	empty := serveAgent(t, agent.Options{PinDir: testenv.PinDir(t)})
	if code := getStatus(t, empty+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with no pins: %d, want 200", code)
	}
	if v, ok := value(scrape(t, empty), "socksplice_pins_loaded"); !ok || v != 0 {
		t.Errorf("socksplice_pins_loaded with no pins = %v (present %v), want 0", v, ok)
	}

	// Something that is not a pinned map where the pins should be.
	bad := t.TempDir()
	if err := os.MkdirAll(filepath.Join(bad, "maps"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bad, "maps", "pairs"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := serveAgent(t, agent.Options{PinDir: bad})
	if code := getStatus(t, broken+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with unreadable pins: %d, want 503", code)
	}
	if code := getStatus(t, broken+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with unreadable pins: %d, want 200 (the process is alive)", code)
	}

	// The installer hook: not ready until its first pass says so.
	pass := make(chan struct{})
	passed := make(chan struct{})
	agent.Install = func(ctx context.Context, ready func()) error {
		<-pass
		ready()
		close(passed)
		<-ctx.Done()
		return nil
	}
	t.Cleanup(func() { agent.Install = nil })
	inst := serveAgent(t, agent.Options{PinDir: testenv.PinDir(t)})
	if code := getStatus(t, inst+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before the installer's first pass: %d, want 503", code)
	}
	close(pass)
	<-passed
	if code := getStatus(t, inst+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after the installer's first pass: %d, want 200", code)
	}
}

// TestAgentSIGTERM runs "socksplice agent" as a child and stops it with
// SIGTERM: it exits 0 after a graceful shutdown.
func TestAgentSIGTERM(t *testing.T) {
	testenv.RequireRoot(t)
	// The installer it runs works in a temp CNI conf dir and leaves the
	// binary alone.
	cmd := exec.Command(testenv.PluginBinary(t), "agent", "--listen", "127.0.0.1:0", "--pin-dir", testenv.PinDir(t),
		"--cni-bin-dir=", "--cni-conf-dir", t.TempDir())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() // ours, by PID; a no-op once it exited
		cmd.Wait()
	})
	// "socksplice: agent: serving ... on 127.0.0.1:PORT for DIR"
	var line string
	buf := make([]byte, 1)
	for !strings.HasSuffix(line, "\n") {
		if _, err := stderr.Read(buf); err != nil {
			t.Fatalf("agent said %q, then %v", line, err)
		}
		line += string(buf)
	}
	f := strings.Fields(line)
	addr := ""
	for i, w := range f {
		if w == "on" && i+1 < len(f) {
			addr = f[i+1]
		}
	}
	if code := getStatus(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d (agent said %q)", code, line)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(stderr)
	if err := cmd.Wait(); err != nil {
		t.Errorf("agent after SIGTERM: %v (%s)", err, rest)
	}
	if !strings.Contains(string(rest), "agent: stopped") {
		t.Errorf("agent after SIGTERM said %q, want it to stop", rest)
	}
}
