// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package engine probes the kernel and decides which data path a
// container's flows take.
package engine

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/pkg/cgroup"
)

// SpliceKfunc is the kfunc the splice engine's kernel module provides.
const SpliceKfunc = "bpf_sock_splice_pair"

// Features is what the running kernel offers.
type Features struct {
	Kernel      string `json:"kernel"`
	SockOps     bool   `json:"sockOps"`
	SkMsg       bool   `json:"skMsg"`
	SockHash    bool   `json:"sockHash"`
	CgroupRoot  string `json:"cgroupRoot,omitempty"`
	SpliceKfunc bool   `json:"spliceKfunc"`
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
	f.SpliceKfunc = haveKfunc(SpliceKfunc)
	return f
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

// SpliceModule is the kernel module that provides SpliceKfunc.
const SpliceModule = "socksplice"

// haveKfunc looks for a kernel function in the splice module's BTF. Only
// that module provides it, and parsing vmlinux BTF (megabytes) cost every
// ADD 25-45 ms on a node where the module is not even loaded.
func haveKfunc(name string) bool {
	if _, err := os.Stat("/sys/kernel/btf/" + SpliceModule); err != nil {
		return false
	}
	spec, err := btf.LoadKernelModuleSpec(SpliceModule)
	if err != nil {
		return false
	}
	var fn *btf.Func
	return spec.TypeByName(name, &fn) == nil
}
