// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package enroll

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/socksplice/socksplice/pkg/crashpoint"
	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/pkg/node"
)

// MaxAddrs is how many addresses of one attachment are registered.
const MaxAddrs = 16

const identSize = 256

// Record remembers what ADD did for one attachment (network, container,
// interface), so DEL can undo exactly that even when the netns is gone,
// and CHECK and STATUS can tell which engine ADD chose.
type Record struct {
	Netns  uint64
	Domain uint64
	Flags  uint32
	NAddrs uint32
	Addrs  [MaxAddrs][16]byte
	Ident  [identSize]byte // network NUL containerID NUL ifname, for GC
}

// The node lays out the attachments map for records of this size.
var _ [node.AttachValueSize]byte = [unsafe.Sizeof(Record{})]byte{}

// Record flags.
const (
	RecordCgroupLink = 1 // a per-container cgroup link is pinned
	RecordNodeLink   = 2 // the node-level link selects this container
	RecordSplice     = 4 // enrolled for the splice engine (its program is attached)
	RecordOff        = 8 // mode auto chose off: nothing enrolled or attached
)

// Engine returns the engine ADD chose for the attachment.
func (r *Record) Engine() string {
	switch {
	case r.Flags&RecordOff != 0:
		return engine.Off
	case r.Flags&RecordSplice != 0:
		return engine.Splice
	}
	return engine.Sockmap
}

// MaxIdent is how many bytes the network name, container ID and interface
// name of an attachment may take together: its record keeps them (NUL
// separated) for GC, and for a DEL whose config no longer parses.
const MaxIdent = identSize - 2

// SetIdent stores the attachment's identity in the record.
func (r *Record) SetIdent(network, containerID, ifname string) {
	copy(r.Ident[:], network+"\x00"+containerID+"\x00"+ifname)
}

// Identity returns what SetIdent stored; ok=false if it did not fit (then
// it would not hash back to key).
func (r *Record) Identity(key [32]byte) (network, containerID, ifname string, ok bool) {
	s := string(bytes.TrimRight(r.Ident[:], "\x00"))
	parts := strings.Split(s, "\x00")
	if len(parts) != 3 || RecordKey(parts[0], parts[1], parts[2]) != key {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// RecordKey derives the record key from the attachment's identity.
func RecordKey(network, containerID, ifname string) [32]byte {
	return sha256.Sum256([]byte(network + "\x00" + containerID + "\x00" + ifname))
}

// AddrList returns the record's addresses.
func (r *Record) AddrList() []netip.Addr {
	out := make([]netip.Addr, 0, r.NAddrs)
	for i := 0; i < int(r.NAddrs) && i < MaxAddrs; i++ {
		out = append(out, netip.AddrFrom16(r.Addrs[i]))
	}
	return out
}

// linkPin is where the per-container cgroup link of an attachment is
// pinned: named by its record key, so that no two identities share a pin
// and the name fits NAME_MAX whatever the container ID.
func linkPin(o *node.Objects, network, containerID, ifname string) string {
	key := RecordKey(network, containerID, ifname)
	return filepath.Join(o.Dir, node.ContainersDir, hex.EncodeToString(key[:]))
}

// getRecord returns the record under key, or ok=false.
func getRecord(o *node.Objects, key [32]byte) (Record, bool, error) {
	var r Record
	err := o.Attach.Lookup(key, &r)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return r, false, nil
	}
	return r, err == nil, err
}

// putRecord stores a record.
func putRecord(o *node.Objects, key [32]byte, r *Record) error {
	return o.Attach.Update(key, r, ebpf.UpdateAny)
}

// deleteRecord removes a record; a missing one is not an error.
func deleteRecord(o *node.Objects, key [32]byte) error {
	return done(crashpoint.EnrollUnrecord, o.Attach.Delete(key))
}

// Records returns all records.
func Records(o *node.Objects) (map[[32]byte]Record, error) {
	out := map[[32]byte]Record{}
	var k [32]byte
	var r Record
	it := o.Attach.Iterate()
	for it.Next(&k, &r) {
		out[k] = r
	}
	return out, it.Err()
}
