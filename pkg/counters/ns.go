// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package counters

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"

	"github.com/cilium/ebpf"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/crashpoint"
	"github.com/socksplice/socksplice/pkg/node"
)

// NS are one netns's counters (struct ss_ns_counters): what the programs
// decided for its sockets at ESTABLISHED and listen. Like Totals, a field
// added to the ABI header appears here and in the JSON without a Go change.
type NS sbpf.AbiSsNsCounters

// SelfTest is the name the self-test's counters are retired under. CNI
// network names are never empty, so it cannot meet a network's.
const SelfTest = ""

// Add adds m to n, field by field.
func (n *NS) Add(m NS) {
	acc := reflect.ValueOf(n).Elem()
	v := reflect.ValueOf(m)
	for i := range v.NumField() {
		if f := acc.Field(i); f.CanSet() && f.Kind() == reflect.Uint64 {
			f.SetUint(f.Uint() + v.Field(i).Uint())
		}
	}
}

// Fields returns the counters by their ABI name (splice_abi_mismatch: as
// in the header), for metrics labels.
func (n NS) Fields() map[string]uint64 { return fields(reflect.ValueOf(n)) }

// Fields returns the node-wide counters by their ABI name.
func (t Totals) Fields() map[string]uint64 { return fields(reflect.ValueOf(t)) }

func fields(v reflect.Value) map[string]uint64 {
	out := map[string]uint64{}
	for i := range v.NumField() {
		if f := v.Type().Field(i); f.IsExported() && f.Type.Kind() == reflect.Uint64 {
			out[snake(f.Name)] = v.Field(i).Uint()
		}
	}
	return out
}

// snake turns a bpf2go field name back into the header's (SpliceAbiMismatch:
// splice_abi_mismatch).
func snake(s string) string {
	var b []byte
	for i, c := range []byte(s) {
		if c >= 'A' && c <= 'Z' {
			if i > 0 {
				b = append(b, '_')
			}
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return string(b)
}

// MarshalJSON names each counter as Totals does (lowerCamelCase).
func (n NS) MarshalJSON() ([]byte, error) { return marshalCamel(reflect.ValueOf(n)) }

// StartNS gives a netns an entry in the node's per-netns counters, keeping
// the one it has (a second attachment of one netns). Where the node has no
// such map yet it does nothing.
func StartNS(o *node.Objects, cookie uint64) error {
	if o.NsCounters == nil {
		return nil
	}
	var zero NS
	err := o.NsCounters.Update(cookie, &zero, ebpf.UpdateNoExist)
	if errors.Is(err, ebpf.ErrKeyExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("counters of netns %d: %w", cookie, err)
	}
	crashpoint.Done(crashpoint.CountersStart)
	return nil
}

// ReadNS returns every netns's counters by netns cookie.
func ReadNS(o *node.Objects) (map[uint64]NS, error) {
	out := map[uint64]NS{}
	if o.NsCounters == nil {
		return out, nil
	}
	var (
		k uint64
		v NS
	)
	it := o.NsCounters.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading per-netns counters: %w", err)
	}
	return out, nil
}

func retiredKey(name string) [32]byte {
	return sha256.Sum256([]byte("socksplice-retired\x00" + name))
}

// Retire adds a netns's counters to those retired under name (its
// network, or SelfTest) and drops its entry, so that per-network totals
// never go down when a container leaves. The entry goes even when adding
// fails (the error says so). Call it once the netns is no longer
// enrolled: the programs count only for enrolled netns.
//
// The new sum is journaled first (node.Objects.Retiring): a plugin killed
// before the entry is gone leaves it there, and the next Retire writes
// that sum, instead of adding the netns's counts a second time. A node
// without the journal (not yet upgraded to it) retires without one.
func Retire(o *node.Objects, cookie uint64, name string) error {
	if o.NsCounters == nil || o.Retired == nil {
		return nil
	}
	if err := finishRetiring(o); err != nil {
		return err
	}
	if len(name) > node.RetiredNameSize {
		name = name[:node.RetiredNameSize]
	}
	var c NS
	if err := o.NsCounters.Lookup(cookie, &c); errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	} else if err != nil {
		return drop(o, cookie, fmt.Errorf("counters of netns %d: %w", cookie, err))
	}
	key := retiredKey(name)
	buf := make([]byte, node.RetiredValueSize)
	if err := o.Retired.Lookup(key, &buf); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return drop(o, cookie, fmt.Errorf("retired counters of %q: %w", name, err))
	}
	sum, _ := decodeRetired(buf)
	sum.Add(c)
	buf, err := encodeRetired(sum, name)
	if err != nil {
		return drop(o, cookie, err)
	}
	if o.Retiring != nil {
		if err := o.Retiring.Update(cookie, buf, ebpf.UpdateAny); err != nil {
			return drop(o, cookie, fmt.Errorf("journaling the retirement of netns %d: %w", cookie, err))
		}
		crashpoint.Done(crashpoint.CountersJournal)
	}
	return finish(o, cookie, key, buf)
}

// finish writes a netns's retirement (value: the new sum) and drops its
// entry, then the journal's.
func finish(o *node.Objects, cookie uint64, key [32]byte, value []byte) error {
	if err := o.Retired.Update(key, value, ebpf.UpdateAny); err != nil {
		return drop(o, cookie, fmt.Errorf("retired counters: %w", err))
	}
	crashpoint.Done(crashpoint.CountersRetire)
	if err := drop(o, cookie, nil); err != nil {
		return err
	}
	if o.Retiring == nil {
		return nil
	}
	if err := o.Retiring.Delete(cookie); err == nil {
		crashpoint.Done(crashpoint.CountersUnjournal)
	} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("journal of netns %d: %w", cookie, err)
	}
	return nil
}

// drop deletes a netns's counters entry, adding a failure to err.
func drop(o *node.Objects, cookie uint64, err error) error {
	switch derr := o.NsCounters.Delete(cookie); {
	case derr == nil:
		crashpoint.Done(crashpoint.CountersDrop)
	case !errors.Is(derr, ebpf.ErrKeyNotExist):
		err = errors.Join(err, fmt.Errorf("counters of netns %d: %w", cookie, derr))
	}
	return err
}

// finishRetiring completes the retirements a killed plugin journaled.
func finishRetiring(o *node.Objects) error {
	if o.Retiring == nil {
		return nil
	}
	pending := map[uint64][]byte{}
	var cookie uint64
	buf := make([]byte, node.RetiredValueSize)
	it := o.Retiring.Iterate()
	for it.Next(&cookie, &buf) {
		pending[cookie] = bytes.Clone(buf)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading the retirement journal: %w", err)
	}
	for cookie, v := range pending {
		_, name := decodeRetired(v)
		if err := finish(o, cookie, retiredKey(name), v); err != nil {
			return err
		}
	}
	return nil
}

// ReadRetired returns the retired counters by name (SelfTest included).
func ReadRetired(o *node.Objects) (map[string]NS, error) {
	out := map[string]NS{}
	if o.Retired == nil {
		return out, nil
	}
	var k [32]byte
	buf := make([]byte, node.RetiredValueSize)
	it := o.Retired.Iterate()
	for it.Next(&k, &buf) {
		c, name := decodeRetired(buf)
		out[name] = c
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading retired counters: %w", err)
	}
	return out, nil
}

var nsSize = binary.Size(NS{})

func decodeRetired(buf []byte) (NS, string) {
	var c NS
	if _, err := binary.Decode(buf[:nsSize], binary.NativeEndian, &c); err != nil {
		return NS{}, ""
	}
	name, _, _ := bytes.Cut(buf[nsSize:], []byte{0})
	return c, string(name)
}

func encodeRetired(c NS, name string) ([]byte, error) {
	buf := make([]byte, node.RetiredValueSize)
	if _, err := binary.Encode(buf[:nsSize], binary.NativeEndian, &c); err != nil {
		return nil, err
	}
	copy(buf[nsSize:], name)
	return buf, nil
}
