// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package runtime

// The CNI side every runtime test shares: a private conflist (bridge +
// host-local + socksplice), its bridge's ports and their byte counters,
// host-local's leases.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/socksplice/socksplice/test/testenv"
)

// cniNet is one private network: its own bridge, subnet, lease directory
// and socksplice pinDir.
type cniNet struct {
	Name    string
	Bridge  string
	Subnet  string
	DataDir string // host-local's; leases are in DataDir/Name
	PinDir  string
	Plugin  map[string]any // the socksplice entry as written
}

// newCNINet picks names for a network on subnet (unique to the test,
// e.g. 10.251.1.0/24) whose socksplice entry is plugin plus type and
// pinDir. The bridge is deleted at cleanup (the plugins create it and
// never remove it).
func newCNINet(t *testing.T, prefix, subnet string, plugin map[string]any) *cniNet {
	t.Helper()
	sfx := nameSuffix()
	n := &cniNet{
		Name:    prefix + "-" + sfx,
		Bridge:  "ssrt" + sfx,
		Subnet:  subnet,
		DataDir: t.TempDir(),
		PinDir:  testenv.PinDir(t),
		Plugin:  map[string]any{"type": "socksplice"},
	}
	for k, v := range plugin {
		n.Plugin[k] = v
	}
	if _, ok := n.Plugin["pinDir"]; !ok {
		n.Plugin["pinDir"] = n.PinDir
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", n.Bridge).Run() })
	return n
}

// conflist is the network's conflist; cniVersion 1.0.0 is what podman
// 4.3's libcni knows, and GC needs 1.1.0.
func (n *cniNet) conflist(t *testing.T, cniVersion string) []byte {
	t.Helper()
	b, err := json.MarshalIndent(map[string]any{
		"cniVersion": cniVersion,
		"name":       n.Name,
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": n.Bridge, "isGateway": true, "ipMasq": false,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": n.Subnet}}},
					"dataDir": n.DataDir,
				},
			},
			n.Plugin,
		},
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeConflist writes the conflist into dir as NAME.conflist.
func (n *cniNet) writeConflist(t *testing.T, dir, cniVersion string) string {
	t.Helper()
	p := filepath.Join(dir, n.Name+".conflist")
	if err := os.WriteFile(p, n.conflist(t, cniVersion), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// leases are the addresses host-local holds for the network.
func (n *cniNet) leases(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(n.DataDir, n.Name))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, e := range ents {
		if name := e.Name(); name != "lock" && !strings.HasPrefix(name, "last_reserved_ip") {
			ips = append(ips, name)
		}
	}
	return ips
}

// ports are the bridge's ports: the host ends of the containers' veths.
func (n *cniNet) ports(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-j", "link", "show", "master", n.Bridge).Output()
	if err != nil {
		return nil // no bridge, no ports
	}
	var links []struct {
		IfName string `json:"ifname"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		t.Fatalf("ip -j link show master %s: %v", n.Bridge, err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.IfName)
	}
	return names
}

// portBytes sums rx and tx bytes over the bridge's ports: what crossed
// the veths.
func (n *cniNet) portBytes(t *testing.T) uint64 {
	t.Helper()
	var sum uint64
	for _, p := range n.ports(t) {
		sum += testenv.VethBytes(t, p)
	}
	return sum
}

// carriedBy runs an exchange of size bytes each way on n (xfer, which
// checks every byte) and what carried it: with want "sockmap" socksplice
// paired +2 and redirected exactly the payload while the veths carried
// under 1 % of it; with want "off" paired +0 and the veths carried it
// all; with want "" it only reports. It returns the line it logs.
func carriedBy(t *testing.T, n *cniNet, size int64, want string, xfer func() (s, c testenv.XferResult, err error)) string {
	t.Helper()
	before, vb := readStatus(t, n.PinDir), n.portBytes(t)
	s, c, err := xfer()
	if err != nil {
		t.Fatalf("exchange on %s: %v", n.Name, err)
	}
	d, veth := readStatus(t, n.PinDir).delta(before), n.portBytes(t)-vb
	line := fmt.Sprintf("%s -> %s: %d MiB each way, sha256 intact; veths carried %d bytes; paired +%d, redirected +%d bytes in +%d messages",
		c.Local, s.Local, size>>20, veth, d["paired"], d["redirectBytes"], d["redirectMsgs"])
	t.Log(line)
	switch want {
	case "sockmap":
		if d["paired"] != 2 || d["redirectBytes"] != uint64(2*size) || veth > uint64(size/100) {
			t.Errorf("not carried by the fast path: want paired +2, redirected +%d bytes, veths < %d bytes", 2*size, size/100)
		}
	case "off":
		if d["paired"] != 0 || veth < uint64(2*size) {
			t.Errorf("want plain TCP: paired +0 and veths >= %d bytes", 2*size)
		}
	}
	return line
}

func nameSuffix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}
