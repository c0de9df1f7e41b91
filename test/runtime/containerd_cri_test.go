// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package runtime

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socksplice/socksplice/test/testenv"
)

// criPod is a pod sandbox made with `crictl runp`.
type criPod struct {
	ID     string
	Name   string
	config string // its pod config file, for crictl create
	logDir string
	IP     string
	Netns  string // its pinned netns
}

// RunPod starts a pod sandbox named name with annotations.
func (c *Containerd) RunPod(t *testing.T, name string, annotations map[string]string) *criPod {
	t.Helper()
	dir := t.TempDir()
	p := &criPod{Name: name, config: filepath.Join(dir, "pod.json"), logDir: filepath.Join(dir, "logs")}
	writeJSON(t, p.config, map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid", "attempt": 0},
		"log_directory": p.logDir,
		"annotations":   annotations,
		"linux":         map[string]any{},
	})
	p.ID = c.MustCrictl(t, "runp", p.config)
	t.Cleanup(func() { c.Crictl("rmp", "-f", p.ID) })
	var insp struct {
		Status struct {
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
		Info struct {
			RuntimeSpec struct {
				Linux struct {
					Namespaces []struct{ Type, Path string } `json:"namespaces"`
				} `json:"linux"`
			} `json:"runtimeSpec"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(c.MustCrictl(t, "inspectp", "-o", "json", p.ID)), &insp); err != nil {
		t.Fatalf("crictl inspectp: %v", err)
	}
	p.IP = insp.Status.Network.IP
	for _, ns := range insp.Info.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" {
			p.Netns = ns.Path
		}
	}
	if p.IP == "" || p.Netns == "" {
		t.Fatalf("pod %s: no IP (%q) or netns (%q)", name, p.IP, p.Netns)
	}
	return p
}

// criContainer is a container of a pod, its stdout in the CRI log.
type criContainer struct {
	ID  string
	log string
}

// RunContainer creates and starts a BoxImage container in pod p running
// argv with env.
func (c *Containerd) RunContainer(t *testing.T, p *criPod, name string, env []string, argv ...string) *criContainer {
	t.Helper()
	var envs []map[string]string
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		envs = append(envs, map[string]string{"key": k, "value": v})
	}
	cfg := filepath.Join(t.TempDir(), name+".json")
	writeJSON(t, cfg, map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": BoxImage},
		"command":  argv,
		"envs":     envs,
		"log_path": name + ".log",
		"linux":    map[string]any{},
	})
	k := &criContainer{ID: c.MustCrictl(t, "create", p.ID, cfg, p.config), log: filepath.Join(p.logDir, name+".log")}
	c.MustCrictl(t, "start", k.ID)
	return k
}

// stdoutLine waits (up to 150 s) for a stdout line of the container's CRI
// log ("TIME STREAM TAG CONTENT") whose content satisfies want.
func (k *criContainer) stdoutLine(t *testing.T, want func(string) bool) string {
	t.Helper()
	for deadline := time.Now().Add(150 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(k.log)
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.SplitN(l, " ", 4)
			if len(f) == 4 && f[1] == "stdout" && want(f[3]) {
				return f[3]
			}
		}
	}
	b, _ := os.ReadFile(k.log)
	t.Fatalf("container %s: no such line in its log:\n%s", k.ID, b)
	return ""
}

// report waits for the container's helper report.
func (k *criContainer) report(t *testing.T) testenv.XferResult {
	t.Helper()
	var r testenv.XferResult
	line := k.stdoutLine(t, func(s string) bool { return strings.HasPrefix(s, "{") })
	if err := testenv.DecodeHelperReport(strings.NewReader(line), &r); err != nil {
		t.Fatalf("container %s: %v", k.ID, err)
	}
	return r
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCRIPods: containerd's CRI through crictl, as a kubelet drives it.
// Pod "srv" runs two server containers; pod "cli" (no annotation) sends
// 64 MiB each way to the first through the sockmap engine; pod "optout"
// (annotation socksplice.io/mode: "off") does the same with the second
// and stays plain TCP. stopp (DEL) then rmp (DEL again) leave nothing.
func TestCRIPods(t *testing.T) {
	RequireCrictl(t)
	n := newCtrNet(t, "10.252.2.0/24", map[string]any{"mode": "sockmap"})
	n.cd.ImportImages(t, "k8s.io")
	sfx := n.sfx

	srv := n.cd.RunPod(t, "srv-"+sfx, nil)
	cli := n.cd.RunPod(t, "cli-"+sfx, nil)
	optout := n.cd.RunPod(t, "optout-"+sfx, map[string]string{"socksplice.io/mode": "off"})
	if st := readStatus(t, n.PinDir); len(st.Attachments) != 2 {
		t.Errorf("socksplice status: %d attachments after 3 pods (one opted out), want 2", len(st.Attachments))
	}
	var servers []*criContainer
	var srvX []testenv.Xfer
	for i, port := range []int{5432, 5433} {
		x := testenv.Xfer{Role: "server", Addr: fmt.Sprintf(":%d", port), Bytes: payload, Seed: uint64(1510 + i)}
		k := n.cd.RunContainer(t, srv, fmt.Sprintf("server%d", i), xferEnv(t, x), keepAlive...)
		k.stdoutLine(t, testenv.IsReadyLine)
		servers, srvX = append(servers, k), append(srvX, x)
	}

	var proved []string
	for i, p := range []*criPod{cli, optout} {
		ports := n.ports(t)
		v0, c0 := n.portBytes(t), testenv.ReadCounters(t, n.PinDir)
		x := testenv.Xfer{Role: "client", Addr: fmt.Sprintf("%s:%d", srv.IP, 5432+i), Bytes: payload, Seed: uint64(1520 + i)}
		k := n.cd.RunContainer(t, p, "client", xferEnv(t, x), keepAlive...)
		cr, sr := k.report(t), servers[i].report(t)
		checkIntact(t, p.Name+"->"+srv.Name, sr, x)
		checkIntact(t, srv.Name+"->"+p.Name, cr, srvX[i])
		vb, d := n.portBytes(t)-v0, delta(testenv.ReadCounters(t, n.PinDir), c0)
		line := fmt.Sprintf("pod %s -> pod %s: %d B each way, sha256 intact; veths carried %d B; paired +%d, redirected +%d B",
			p.Name, srv.Name, int64(payload), vb, d.Paired, d.RedirectBytes)
		t.Logf("CRI: %s (%s -> %s, veths %v)", line, cr.Local, cr.Remote, ports)
		proved = append(proved, line)
		if p == cli {
			if limit := uint64(2*payload) / 1000; vb > limit || d.Paired != 2 || d.RedirectBytes != 2*payload {
				t.Errorf("pod %s: veths %d B (want < %d), paired +%d (want 2), redirected +%d B (want %d): not accelerated",
					p.Name, vb, limit, d.Paired, d.RedirectBytes, 2*payload)
			}
			continue
		}
		// Plain TCP: both veths carry the payload both ways.
		if vb < 4*payload || d.Paired != 0 || d.RedirectBytes != 0 {
			t.Errorf("pod %s (socksplice.io/mode off): veths %d B (want >= %d), paired +%d, redirected +%d B (want 0): the opt-out was not honoured",
				p.Name, vb, 4*payload, d.Paired, d.RedirectBytes)
		}
	}

	// stopp runs DEL; rmp runs it again.
	pods := []*criPod{srv, cli, optout}
	for _, step := range []string{"stopp", "rmp"} {
		for _, p := range pods {
			n.cd.MustCrictl(t, step, p.ID)
		}
		n.checkPodsGone(t, step, pods, 5432, 5433)
	}
	if !t.Failed() {
		t.Logf("summary: crictl, 3 pods; %s; stopp and rmp: leftovers found: none", strings.Join(proved, "; "))
	}
}

// checkPodsGone looks for everything the pods had after step (stopp or
// rmp): attachments, leases, host veths, the pinned netns files, sockets,
// the pods' and containers' tasks.
func (n *ctrNet) checkPodsGone(t *testing.T, step string, pods []*criPod, ports ...int) {
	t.Helper()
	left := n.leftovers(t, ports...)
	for _, p := range pods {
		if _, err := os.Stat(p.Netns); err == nil {
			left = append(left, "netns "+p.Netns)
		}
	}
	if out := strings.TrimSpace(n.cd.MustCtr(t, "-n", "k8s.io", "tasks", "ls", "-q")); out != "" {
		left = append(left, "tasks "+strings.Join(strings.Fields(out), " "))
	}
	if step == "rmp" {
		if out := n.cd.MustCrictl(t, "pods", "-q"); out != "" {
			left = append(left, "pods "+out)
		}
	}
	n.reportLeft(t, step, left, "netns files, tasks, pods")
}
