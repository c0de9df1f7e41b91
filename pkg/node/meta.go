// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package node

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	sbpf "github.com/socksplice/socksplice/bpf"
)

// The meta map holds one JSON document per owner, each under its own key,
// so that no owner has to know another's: MetaNode is the node's (Meta);
// the packages above keep theirs under the other keys (MetaEngine: the
// engine's self-test verdicts).
const (
	MetaNode uint32 = iota
	MetaEngine

	metaKeys      = 2
	metaValueSize = 4096
)

// Meta is what the node remembers about its installation.
type Meta struct {
	Stamp    string    `json:"stamp"`
	LoadedAt time.Time `json:"loadedAt"`
}

// Stamp is this build's object stamp, as stored in Meta.
func Stamp() string {
	s := sbpf.Stamp()
	return hex.EncodeToString(s[:])
}

// ReadMeta returns the node's own metadata (zero if never written).
func (o *Objects) ReadMeta() (Meta, error) {
	var meta Meta
	err := o.GetMeta(MetaNode, &meta)
	return meta, err
}

// GetMeta decodes the JSON document stored under key into v; it leaves v
// alone if nothing was stored (or the pinned map, another build's, has no
// such key).
func (o *Objects) GetMeta(key uint32, v any) error {
	buf := make([]byte, metaValueSize)
	err := o.Meta.Lookup(key, &buf)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	buf = bytes.TrimRight(buf, "\x00")
	if len(buf) == 0 {
		return nil
	}
	return json.Unmarshal(buf, v)
}

// PutMeta stores v as the JSON document under key.
func (o *Objects) PutMeta(key uint32, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > metaValueSize {
		return fmt.Errorf("metadata %d too large (%d bytes)", key, len(b))
	}
	buf := make([]byte, metaValueSize)
	copy(buf, b)
	return o.Meta.Update(key, buf, ebpf.UpdateAny)
}
