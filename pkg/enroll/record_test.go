// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package enroll

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/test/testenv"
)

func TestRecords(t *testing.T) {
	o := testenv.LoadNode(t)

	if recs, err := Records(o); err != nil || len(recs) != 0 {
		t.Fatalf("Records on a fresh node = %v, %v; want none", recs, err)
	}

	key := RecordKey("net1", "container-abc", "eth0")
	var r Record
	r.Netns = 4096
	r.Domain = 77
	r.Flags = RecordCgroupLink | RecordNodeLink
	addrs := []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("fd00::5")}
	for i, a := range addrs {
		r.Addrs[i] = a.As16()
	}
	r.NAddrs = uint32(len(addrs))
	r.SetIdent("net1", "container-abc", "eth0")
	if err := putRecord(o, key, &r); err != nil {
		t.Fatalf("PutRecord: %v", err)
	}

	key2 := RecordKey("net1", "container-def", "eth1")
	r2 := Record{Netns: 8192, Domain: 77}
	r2.SetIdent("net1", "container-def", "eth1")
	if err := putRecord(o, key2, &r2); err != nil {
		t.Fatalf("PutRecord 2: %v", err)
	}

	got, ok, err := getRecord(o, key)
	if err != nil || !ok {
		t.Fatalf("GetRecord = ok %v, err %v", ok, err)
	}
	if got != r {
		t.Errorf("GetRecord = %+v, want %+v", got, r)
	}
	if al := got.AddrList(); len(al) != 2 || al[0] != netip.AddrFrom16(addrs[0].As16()) || al[1] != addrs[1] {
		t.Errorf("AddrList = %v, want %v (as 16-byte addresses)", al, addrs)
	}
	nw, cid, ifn, ok := got.Identity(key)
	if !ok || nw != "net1" || cid != "container-abc" || ifn != "eth0" {
		t.Errorf("Identity = %q %q %q %v, want net1 container-abc eth0 true", nw, cid, ifn, ok)
	}
	if _, _, _, ok := got.Identity(key2); ok {
		t.Errorf("Identity with the wrong key succeeded")
	}

	recs, err := Records(o)
	if err != nil {
		t.Fatalf("Records: %v", err)
	}
	if len(recs) != 2 || recs[key] != r || recs[key2] != r2 {
		t.Errorf("Records = %d entries (%v/%v), want the two records put", len(recs), recs[key] == r, recs[key2] == r2)
	}

	if err := deleteRecord(o, key); err != nil {
		t.Fatalf("DeleteRecord: %v", err)
	}
	if _, ok, err := getRecord(o, key); err != nil || ok {
		t.Errorf("GetRecord after delete = ok %v, err %v; want false, nil", ok, err)
	}
	if err := deleteRecord(o, key); err != nil {
		t.Errorf("DeleteRecord of a missing key = %v, want nil", err)
	}
	if err := deleteRecord(o, RecordKey("never", "was", "here")); err != nil {
		t.Errorf("DeleteRecord of a never-stored key = %v, want nil", err)
	}
	recs, err = Records(o)
	if err != nil || len(recs) != 1 || recs[key2] != r2 {
		t.Errorf("Records after delete = %d entries, %v; want only the second", len(recs), err)
	}
}

func TestRecordIdentity(t *testing.T) {
	var r Record
	r.SetIdent("mynet", "0123456789abcdef", "net1")
	key := RecordKey("mynet", "0123456789abcdef", "net1")
	nw, cid, ifn, ok := r.Identity(key)
	if !ok || nw != "mynet" || cid != "0123456789abcdef" || ifn != "net1" {
		t.Errorf("Identity = %q %q %q %v", nw, cid, ifn, ok)
	}
	if _, _, _, ok := r.Identity(RecordKey("mynet", "0123456789abcdef", "net2")); ok {
		t.Errorf("Identity accepted a wrong key")
	}
	var empty Record
	if _, _, _, ok := empty.Identity(key); ok {
		t.Errorf("Identity of an empty record succeeded")
	}

	// An identity that does not fit is truncated and must not verify.
	var big Record
	cidLong := strings.Repeat("abcdef0123", 30)
	big.SetIdent("n", cidLong, "eth0")
	if _, _, _, ok := big.Identity(RecordKey("n", cidLong, "eth0")); ok {
		t.Errorf("Identity of a truncated record succeeded")
	}
}

// Link pins are named by the record key: identities that joined to the
// same name with "_" get different pins, and a container ID of 250
// characters (too long for the old name) pins and detaches.
func TestLinkPinNames(t *testing.T) {
	o := testenv.LoadNode(t)
	a, b := linkPin(o, "n", "a_b", "c"), linkPin(o, "n", "a", "b_c")
	if a == b {
		t.Errorf("container a_b/ifname c and container a/ifname b_c share the pin %s", a)
	}
	if legacyLinkPin(o, "n", "a_b", "c") != legacyLinkPin(o, "n", "a", "b_c") {
		t.Errorf("the legacy names no longer collide: the test case is moot")
	}
	long := strings.Repeat("0123456789", 25)
	pin := linkPin(o, "net", long, "eth0")
	if n := len(filepath.Base(pin)); n > 255 {
		t.Fatalf("pin name is %d bytes, over NAME_MAX", n)
	}
	if err := cgroup.Attach(testenv.NewCgroup(t, testenv.CgroupRoot(t)), o.SockOps, pin); err != nil {
		t.Fatalf("pinning the link of a 250-character container ID: %v", err)
	}
	if err := Remove(o, "net", long, "eth0"); err != nil {
		t.Errorf("Remove: %v", err)
	}
	if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("link pin survived Remove: %v", err)
	}
}
