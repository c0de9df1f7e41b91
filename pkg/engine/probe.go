// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package engine decides which data path (engine) a container's flows
// take: it probes the kernel, runs each engine's self-test once per node
// (package selftest) for mode auto, and caches the verdicts in the node's
// meta map.
package engine

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/node"
)

// Features is what the running kernel offers.
type Features struct {
	Kernel   string `json:"kernel"`
	SockOps  bool   `json:"sockOps"`
	SkMsg    bool   `json:"skMsg"`
	SockHash bool   `json:"sockHash"`
	// BTF: the kernel's own type information, which the programs'
	// CO-RE relocations are resolved against (CONFIG_DEBUG_INFO_BTF,
	// /sys/kernel/btf/vmlinux).
	BTF         bool   `json:"btf"`
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
	if !f.SpliceKfunc {
		f.BTF, f.SockOpsKfuncs = kernelBTF()
		return f
	}
	// The module's BTF builds on the kernel's: no need to parse vmlinux's
	// (megabytes) on every ADD.
	f.BTF, f.SockOpsKfuncs = true, true
	if err := node.SpliceABIError(); err != nil {
		f.SpliceABI = err.Error()
	}
	return f
}

// sockOpsHookKfunc came with the kernel's sock_ops kfunc hook (6.15): its
// presence in vmlinux BTF says a module's sock_ops kfuncs can register.
const sockOpsHookKfunc = "bpf_sock_ops_enable_tx_tstamp"

// kernelBTF says whether the loader finds the kernel's BTF (where
// cilium/ebpf looks for it, as it will when it loads the programs), and
// whether it has the sock_ops kfunc hook.
func kernelBTF() (have, sockOpsKfuncs bool) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return false, false
	}
	var fn *btf.Func
	return true, spec.TypeByName(sockOpsHookKfunc, &fn) == nil
}

// SockmapReady returns why the sockmap engine cannot run, or nil.
func (f Features) SockmapReady() error {
	var missing []string
	if !f.SockOps {
		missing = append(missing, "sock_ops programs")
	}
	if !f.SkMsg {
		missing = append(missing, "sk_msg programs")
	}
	if !f.SockHash {
		missing = append(missing, "SOCKHASH maps")
	}
	if !f.BTF {
		missing = append(missing, "kernel BTF (CONFIG_DEBUG_INFO_BTF, /sys/kernel/btf/vmlinux), which the programs' CO-RE relocations need")
	}
	if f.CgroupRoot == "" {
		missing = append(missing, "a mounted cgroup v2 hierarchy")
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("kernel %s lacks: %s", f.Kernel, strings.Join(missing, "; "))
}
