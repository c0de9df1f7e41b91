// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package enroll

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/test/testenv"
)

func enrolled(t *testing.T, o *node.Objects, cookie uint64) bool {
	t.Helper()
	var pol sbpf.AbiSsPolicy
	return o.Enroll.Lookup(cookie, &pol) == nil
}

// An attachment with engine off is recorded and nothing else: CHECK passes
// on the record alone, and it never keeps its netns enrolled for another
// attachment. A sockmap attachment of the same netns is enrolled, attached
// and checked against its record, whatever engine the caller names now.
func TestAddCheckRemove(t *testing.T) {
	o := testenv.LoadNode(t)
	c := testenv.NewContainer(t, "enroll")
	cookie, err := NetnsCookie(c.Netns)
	if err != nil {
		t.Fatal(err)
	}
	cg := c.Cgroup
	att := func(id, eng string) Attachment {
		return Attachment{Network: "n1", ContainerID: id, IfName: "eth0", Netns: c.Netns, Domain: 7,
			Addrs: []netip.Addr{netip.MustParseAddr("10.9.0.2")}, CgroupPath: cg, Engine: eng,
			Policy: Policy{Ports: []uint16{80}}}
	}
	off, sm := att("c-off", engine.Off), att("c-sockmap", engine.Sockmap)

	if err := Add(o, off); err != nil {
		t.Fatalf("Add(off): %v", err)
	}
	rec, ok, err := getRecord(o, RecordKey("n1", "c-off", "eth0"))
	if err != nil || !ok || rec.Engine() != engine.Off || rec.Netns != cookie || rec.NAddrs != 0 {
		t.Errorf("off record = %+v (engine %s), %v, %v", rec, rec.Engine(), ok, err)
	}
	if enrolled(t, o, cookie) {
		t.Errorf("engine off enrolled the netns")
	}
	if ids, err := cgroup.AttachedIDs(cg); err != nil || len(ids) != 0 {
		t.Errorf("engine off attached %v (%v)", ids, err)
	}
	if err := Check(o, off); err != nil {
		t.Errorf("Check(off): %v", err)
	}

	if err := Add(o, sm); err != nil {
		t.Fatalf("Add(sockmap): %v", err)
	}
	if !enrolled(t, o, cookie) {
		t.Errorf("sockmap attachment not enrolled")
	}
	if ids, err := cgroup.AttachedIDs(cg); err != nil || !slices.Equal(ids, []ebpf.ProgramID{testenv.ProgID(t, o.SockOps)}) {
		t.Errorf("attached %v (%v), want the sockops program", ids, err)
	}
	if _, err := os.Stat(linkPin(o, "n1", "c-sockmap", "eth0")); err != nil {
		t.Errorf("link pin: %v", err)
	}
	// CHECK goes by the record: the engine named now does not matter.
	sm.Engine = engine.Splice
	if err := Check(o, sm); err != nil {
		t.Errorf("Check(sockmap): %v", err)
	}
	changed := sm
	changed.Policy.Ports = []uint16{81}
	if err := Check(o, changed); err == nil || !strings.Contains(err.Error(), "policy") {
		t.Errorf("Check with another policy = %v, want a policy error", err)
	}
	missing := sm
	missing.ContainerID = "never-added"
	if err := Check(o, missing); err == nil || !strings.Contains(err.Error(), "not enrolled") {
		t.Errorf("Check of an unrecorded attachment = %v, want not enrolled", err)
	}

	// The off record of the same netns does not keep it enrolled.
	if err := Remove(o, "n1", "c-sockmap", "eth0"); err != nil {
		t.Fatalf("Remove(sockmap): %v", err)
	}
	if enrolled(t, o, cookie) {
		t.Errorf("netns still enrolled after its only enrolled attachment went")
	}
	// The kernel releases an unpinned link after an RCU grace period.
	var ids []ebpf.ProgramID
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if ids, _ = cgroup.AttachedIDs(cg); len(ids) == 0 {
			break
		}
	}
	if len(ids) != 0 {
		t.Errorf("programs still attached: %v", ids)
	}
	if err := Remove(o, "n1", "c-off", "eth0"); err != nil {
		t.Fatalf("Remove(off): %v", err)
	}
	if recs, err := Records(o); err != nil || len(recs) != 0 {
		t.Errorf("records left: %v (%v)", recs, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(o.Dir, node.ContainersDir)); len(ents) != 0 {
		t.Errorf("link pins left: %v", ents)
	}
	if err := Remove(o, "n1", "c-off", "eth0"); err != nil {
		t.Errorf("second Remove = %v, want nil", err)
	}
}
