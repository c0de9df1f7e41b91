// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// LoadSpliceStubbed returns this build's splice object with the program's
// kfunc calls turned into "return 0". Tests load it to run the rest of the
// program (peer resolution, counters, the shared maps) on a kernel without
// the socksplice module; nothing then pairs.
func LoadSpliceStubbed() (*ebpf.CollectionSpec, error) {
	spec, err := LoadSplice()
	if err != nil {
		return nil, err
	}
	p := spec.Programs[SpliceProgSockspliceSplice]
	n := 0
	for i, ins := range p.Instructions {
		if ins.IsKfuncCall() {
			p.Instructions[i] = asm.Mov.Imm(asm.R0, 0)
			n++
		}
	}
	if n != 2 {
		return nil, fmt.Errorf("stubbed %d kfunc calls, want 2 (%s and %s)", n, SpliceKfuncPair, SpliceKfuncListen)
	}
	return spec, nil
}
