//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package testmod

import (
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/test/testenv"
)

// TestSockOpsKfunc loads a sock_ops program that calls the test module's
// kfunc, attaches it, makes a loopback connection and reads back what the
// kfunc returned at both ends' ESTABLISHED. The VM script loads the module
// first (insmod); without the enablement patch that load already fails.
func TestSockOpsKfunc(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/btf/socksplice_testmod"); err != nil {
		t.Fatalf("module BTF missing (is socksplice_testmod loaded?): %v", err)
	}
	var objs KfuncObjects
	if err := LoadKfuncObjects(&objs, nil); err != nil {
		t.Fatalf("loading a sock_ops program that calls a module kfunc: %v", err)
	}
	defer objs.Close()
	root, err := cgroup.Root()
	if err != nil {
		t.Fatal(err)
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: root, Attach: ebpf.AttachCGroupSockOps, Program: objs.TestmodSockops})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	// Plain TCP: an MPTCP listener's sockets are subflows (Go's default).
	ln, err := testenv.ListenTCP("tcp4", "127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := testenv.Dialer(false).Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var result, calls uint64
	if err := objs.Result.Get(&result); err != nil {
		t.Fatal(err)
	}
	if err := objs.Calls.Get(&calls); err != nil {
		t.Fatal(err)
	}
	t.Logf("kfunc socksplice_testmod_add(40, 2) = %d, called %d times", result, calls)
	if result != 42 || calls < 2 {
		t.Errorf("result %d after %d calls, want 42 after >= 2 (both ends' ESTABLISHED)", result, calls)
	}
}
