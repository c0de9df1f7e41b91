// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package runtime

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPodmanConfigTypo: a typo in the socksplice entry fails ADD with an
// error that names the field, and leaks nothing; a container added under
// a good config whose entry then got a typo is still removed: its DEL
// succeeds, so the chain's DEL runs on and host-local releases the lease.
func TestPodmanConfigTypo(t *testing.T) {
	p := newPodman(t)
	rootfs := busyboxRootfs(t)

	bad := newCNINet(t, "sstypo", "10.251.2.0/24", map[string]any{"mdoe": "sockmap"})
	p.addNetwork(t, bad)
	out, err := p.start(t, "typo", bad.Name, rootfs)
	if err == nil {
		t.Fatalf("podman run on a conflist with \"mdoe\" succeeded:\n%s", out)
	}
	if !strings.Contains(out, "mdoe") {
		t.Errorf("the ADD error does not name the field \"mdoe\":\n%s", out)
	}
	t.Logf("ADD with the typo: %s", errorLine(out))
	p.run("rm", "--force", "--time", "0", "typo") // podman may keep it as created
	requireNoLeftovers(t, "after the failed ADD", bad)

	good := newCNINet(t, "ssdel", "10.251.3.0/24", map[string]any{"mode": "sockmap"})
	p.addNetwork(t, good)
	if out, err := p.start(t, "victim", good.Name, rootfs); err != nil {
		t.Fatalf("podman run: %v\n%s", err, out)
	}
	fp := p.footprint(t, good, p.inspect(t, "victim", good.Name))
	if l, a := good.leases(t), readStatus(t, good.PinDir).attached(good.Name); len(l) != 1 || len(a) != 1 {
		t.Fatalf("after ADD: leases %v, attachments %v; want one each", l, a)
	}
	good.Plugin = map[string]any{"type": "socksplice", "mdoe": "sockmap", "pinDir": good.PinDir}
	p.addNetwork(t, good) // the same network, now with the typo
	// podman DELs with the config libcni cached at ADD and reads the
	// conflist only without that cache (gone with /var/lib/cni, or
	// never written: the failed ADD above). Drop it, so the typo is what
	// DEL gets.
	cached, _ := filepath.Glob(filepath.Join(libcniCache, "results", good.Name+"-"+fp.ContainerID+"-*"))
	if len(cached) != 1 {
		t.Fatalf("libcni cache of the victim: %v; want one file", cached)
	}
	if err := os.Remove(cached[0]); err != nil {
		t.Fatal(err)
	}
	out, err = p.run("rm", "--force", "--time", "0", "victim")
	if err != nil || failedTeardown.MatchString(out) {
		t.Errorf("podman rm after the typo: %v; a plugin's DEL failed:\n%s", err, out)
	}
	requireNoLeftovers(t, "after DEL under the typo", good, fp)
	if !t.Failed() {
		t.Logf("summary: a typo fails ADD naming the field and leaks nothing; DEL under a typo succeeds and releases the lease; leftovers found: none")
	}
}

// failedTeardown matches what podman prints (rm still exits 0) when a
// plugin's DEL failed.
var failedTeardown = regexp.MustCompile(`(?i)error.*(tear|netplugin|cni|plugin)|socksplice`)

// errorLine is the last line of podman's output that says Error.
func errorLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "Error") || strings.Contains(lines[i], "error") {
			return lines[i]
		}
	}
	return lines[len(lines)-1]
}
