// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package runtime

import (
	"strings"
	"testing"

	"github.com/socksplice/socksplice/test/testenv"
)

// TestPodmanAuto: with mode auto the plugin decides by itself; where it
// does not pick the splice engine it says why in the system log, since
// podman shows nothing of a successful plugin's stderr, even at
// --log-level=debug (recorded here as evidence). The verdict's engine
// then carries 4 MiB each way intact.
func TestPodmanAuto(t *testing.T) {
	p := newPodman(t)
	rootfs := busyboxRootfs(t)
	n := newCNINet(t, "ssauto", "10.251.4.0/24", map[string]any{"mode": "auto"})
	p.addNetwork(t, n)
	kmsg := testenv.TailKernelLog(t)

	out, err := p.start(t, "srv", n.Name, rootfs, "--log-level=debug")
	if err != nil {
		t.Fatalf("podman run: %v\n%s", err, out)
	}
	st := readStatus(t, n.PinDir)
	if st.Meta.SelfTest == nil {
		t.Fatalf("after an ADD with mode auto, socksplice status has no verdict")
	}
	engine, reason := st.Meta.SelfTest.Engine, st.Meta.SelfTest.Reason
	t.Logf("auto on this node: %s (%s)", engine, reason)

	var cniLines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "socksplice") || strings.Contains(l, "cni result") {
			cniLines = append(cniLines, l)
		}
	}
	inPodman := strings.Contains(out, "socksplice:") || (reason != "" && strings.Contains(out, reason))
	t.Logf("podman --log-level=debug run printed %d lines; the plugin's stderr line is in them: %v; its CNI lines:\n  %s",
		strings.Count(out, "\n"), inPodman, strings.Join(cniLines, "\n  "))

	if engine != "splice" {
		if testenv.HasSyslog() {
			t.Logf("SKIP the system-log check: a syslog daemon listens on /dev/log, so the verdict went there, which this test does not read")
		} else {
			logged := kmsg.Messages("socksplice")
			t.Logf("kernel log (dmesg) lines of socksplice: %q", logged)
			// The verdict's first clause: the line may be said once per
			// node and verdict, and shortened.
			why, _, _ := strings.Cut(reason, ":")
			found := false
			for _, l := range logged {
				found = found || strings.Contains(l, why)
			}
			if !found {
				t.Errorf("mode auto runs %s here, but no socksplice line in the kernel log says why (%q)", engine, why)
			}
		}
	}

	if out, err := p.start(t, "cli", n.Name, rootfs); err != nil {
		t.Fatalf("podman run: %v\n%s", err, out)
	}
	srv, cli := p.inspect(t, "srv", n.Name), p.inspect(t, "cli", n.Name)
	fps := []footprint{p.footprint(t, n, srv), p.footprint(t, n, cli)}
	want := engine
	if want == "splice" {
		want = "" // carried by the module: counted elsewhere
	}
	line := p.exchange(t, n, srv, cli, 4<<20, 5, want)
	p.mustRun(t, "rm", "--force", "--time", "0", "srv", "cli")
	requireNoLeftovers(t, "after podman rm", n, fps...)
	if !t.Failed() {
		t.Logf("summary: auto chose %s and said why in the system log; %s; leftovers found: none", engine, line)
	}
}
