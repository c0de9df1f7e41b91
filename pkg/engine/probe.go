// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package engine decides which data path (engine) a container's flows
// take: it probes the kernel, runs each engine's self-test once per node
// (package selftest) for mode auto, and caches the verdicts in the node's
// meta map.
package engine

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/node"
)

// Features is what the running kernel offers.
type Features struct {
	Kernel      string `json:"kernel"`
	SockOps     bool   `json:"sockOps"`
	SkMsg       bool   `json:"skMsg"`
	SockHash    bool   `json:"sockHash"`
	CgroupRoot  string `json:"cgroupRoot,omitempty"`
	SpliceKfunc bool   `json:"spliceKfunc"` // both of the splice engine's kfuncs
	// SockOpsKfuncs: the kernel lets sock_ops programs call kfuncs, which
	// the splice module needs (mainline 6.15).
	SockOpsKfuncs bool `json:"sockOpsKfuncs"`
	// SpliceABI says why the loaded module cannot run this build's splice
	// program (another SS_ABI_VERSION); empty when it can or is absent.
	SpliceABI string `json:"spliceABIMismatch,omitempty"`
}

// Probe inspects the running kernel. It loads nothing that stays.
func Probe() Features {
	var f Features
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		f.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	f.SockOps = features.HaveProgramType(ebpf.SockOps) == nil
	f.SkMsg = features.HaveProgramType(ebpf.SkMsg) == nil
	f.SockHash = features.HaveMapType(ebpf.SockHash) == nil
	if root, err := cgroup.Root(); err == nil {
		f.CgroupRoot = root
	}
	f.SpliceKfunc = node.HaveSpliceKfuncs()
	f.SockOpsKfuncs = f.SpliceKfunc || haveSockOpsKfuncs()
	if f.SpliceKfunc {
		if err := node.SpliceABIError(); err != nil {
			f.SpliceABI = err.Error()
		}
	}
	return f
}

// sockOpsHookKfunc came with the kernel's sock_ops kfunc hook (6.15): its
// presence in vmlinux BTF says a module's sock_ops kfuncs can register.
const sockOpsHookKfunc = "bpf_sock_ops_enable_tx_tstamp"

func haveSockOpsKfuncs() bool {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return false
	}
	var fn *btf.Func
	return spec.TypeByName(sockOpsHookKfunc, &fn) == nil
}

// SockmapReady returns why the sockmap engine cannot run, or nil.
func (f Features) SockmapReady() error {
	var missing []error
	if !f.SockOps {
		missing = append(missing, errors.New("sock_ops programs"))
	}
	if !f.SkMsg {
		missing = append(missing, errors.New("sk_msg programs"))
	}
	if !f.SockHash {
		missing = append(missing, errors.New("SOCKHASH maps"))
	}
	if f.CgroupRoot == "" {
		missing = append(missing, errors.New("a mounted cgroup v2 hierarchy"))
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("kernel %s lacks: %w", f.Kernel, errors.Join(missing...))
}
