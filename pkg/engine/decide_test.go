// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package engine

import (
	"errors"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/node"
)

func TestDecideForcedModes(t *testing.T) {
	ready := Features{Kernel: "x", SockOps: true, SkMsg: true, SockHash: true, BTF: true, CgroupRoot: "/sys/fs/cgroup", SockOpsKfuncs: true}
	var unavail *ErrUnavailable

	if d, err := Decide(Off, ready, nil, ""); err != nil || d.Engine != Off {
		t.Errorf("off: %+v %v", d, err)
	}
	if d, err := Decide(Sockmap, ready, nil, ""); err != nil || d.Engine != Sockmap {
		t.Errorf("sockmap: %+v %v", d, err)
	}
	noMsg := ready
	noMsg.SkMsg = false
	if _, err := Decide(Sockmap, noMsg, nil, ""); !errors.As(err, &unavail) || !strings.Contains(err.Error(), "sk_msg") {
		t.Errorf("sockmap without sk_msg: %v, want ErrUnavailable naming sk_msg", err)
	}
	if _, err := Decide(Splice, ready, nil, ""); !errors.As(err, &unavail) || !strings.Contains(err.Error(), sbpf.SpliceKfuncPair) {
		t.Errorf("splice without kfunc: %v, want ErrUnavailable naming %s", err, sbpf.SpliceKfuncPair)
	}
	// auto on a kernel that cannot run sockmap stays off without a self-test.
	if d, err := Decide(Auto, noMsg, nil, ""); err != nil || d.Engine != Off || !strings.Contains(d.Reason, "sk_msg") {
		t.Errorf("auto without sk_msg: %+v %v", d, err)
	}
	if _, err := Decide("turbo", ready, nil, ""); err == nil {
		t.Errorf("unknown mode accepted")
	}
}

func TestDecideSplice(t *testing.T) {
	noKfunc := Features{Kernel: "x", SockOps: true, SkMsg: true, SockHash: true, BTF: true, CgroupRoot: "/sys/fs/cgroup", SockOpsKfuncs: true}
	noHook := noKfunc
	noHook.Kernel, noHook.SockOpsKfuncs = "6.12.118+deb13-amd64", false
	kfunc := noKfunc
	kfunc.SpliceKfunc = true
	noSockmap := kfunc
	noSockmap.SkMsg = false // auto falls back to off without a self-test
	neither := noSockmap
	neither.SpliceKfunc = false
	loaded := &node.Objects{Splice: &ebpf.Program{}}
	failed := &node.Objects{SpliceErr: errors.New("verifier says no")}
	missing := &node.Objects{}

	cases := []struct {
		name   string
		mode   string
		f      Features
		o      *node.Objects
		engine string // "" means ErrUnavailable
		want   string // in the reason or the error
	}{
		{"forced, no kfunc", Splice, noKfunc, loaded, "", sbpf.SpliceKfuncPair},
		{"forced, no kfunc, no objects (STATUS)", Splice, noKfunc, nil, "", sbpf.SpliceModule},
		{"forced, kernel without the sock_ops kfunc hook", Splice, noHook, nil, "", "kernel 6.12.118+deb13-amd64 cannot call module kfuncs from sock_ops programs (needs 6.15), so the socksplice module cannot serve it; a kernel with that hook backported shows it only while the module is loaded"},
		{"forced, kfunc, no objects (STATUS)", Splice, kfunc, nil, Splice, "forced"},
		{"forced, kfunc, program loaded", Splice, kfunc, loaded, Splice, "forced"},
		{"forced, kfunc, program failed", Splice, kfunc, failed, "", "verifier says no"},
		{"forced, kfunc, program missing", Splice, kfunc, missing, "", "not loaded"},
		// auto tries splice only where its program runs (the self-test
		// itself: TestSelfTestRunsAndCaches in the test kernel).
		{"auto, kfunc, program failed", Auto, noSockmap, failed, Off, "sk_msg"},
		{"auto default mode, kfunc, program missing", "", noSockmap, missing, Off, "sk_msg"},
		{"auto, no kfunc", Auto, neither, nil, Off, "sk_msg"},
		// auto says why it did not pick splice even where it could not.
		{"auto, no kfunc, says why", Auto, neither, nil, Off, "splice engine not available (the socksplice kernel module is not loaded"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Decide(tc.mode, tc.f, tc.o, "")
			if tc.engine == "" {
				var unavail *ErrUnavailable
				if !errors.As(err, &unavail) || unavail.Engine != Splice || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Decide = %+v, %v; want ErrUnavailable for splice naming %q", d, err, tc.want)
				}
				return
			}
			if err != nil || d.Engine != tc.engine || !strings.Contains(d.Reason, tc.want) {
				t.Errorf("Decide = %+v, %v; want engine %s, reason naming %q", d, err, tc.engine, tc.want)
			}
		})
	}
}

// TestPrecheck: what the kernel probe alone rules out is decided before
// anything is loaded: auto is off where neither engine can run (a kernel
// without BTF or SOCKHASH, a host without cgroup v2), a forced engine
// fails naming what is missing, and everything else waits for the node's
// objects.
func TestPrecheck(t *testing.T) {
	ready := Features{Kernel: "x", SockOps: true, SkMsg: true, SockHash: true, BTF: true, CgroupRoot: "/sys/fs/cgroup", SockOpsKfuncs: true}
	noBTF, noHash, noCgroup := ready, ready, ready
	noBTF.BTF, noHash.SockHash, noCgroup.CgroupRoot = false, false, ""
	spliceNoHash := noHash
	spliceNoHash.SpliceKfunc = true
	cases := []struct {
		name  string
		mode  string
		f     Features
		final bool
		eng   string // "" means ErrUnavailable
		want  string
	}{
		{"auto, ready", Auto, ready, false, "", ""},
		{"auto, no BTF", Auto, noBTF, true, Off, "sockmap engine unusable: kernel x lacks: kernel BTF"},
		{"auto, no SOCKHASH", Auto, noHash, true, Off, "lacks: SOCKHASH maps"},
		{"auto, no cgroup v2", "", noCgroup, true, Off, "lacks: a mounted cgroup v2 hierarchy"},
		{"auto, module but no SOCKHASH", Auto, spliceNoHash, true, Off, "splice engine not available (kernel x lacks: SOCKHASH maps)"},
		{"sockmap, ready", Sockmap, ready, true, Sockmap, "forced"},
		{"sockmap, no BTF", Sockmap, noBTF, true, "", "kernel BTF"},
		{"splice, module but no SOCKHASH", Splice, spliceNoHash, true, "", "SOCKHASH"},
		{"off", Off, noBTF, true, Off, "mode off"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, final, err := Precheck(tc.mode, tc.f)
			if final != tc.final {
				t.Fatalf("Precheck = %+v, final %v, %v; want final %v", d, final, err, tc.final)
			}
			if !final {
				return
			}
			if tc.eng == "" {
				var unavail *ErrUnavailable
				if !errors.As(err, &unavail) || unavail.Engine != tc.mode || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Precheck = %v; want ErrUnavailable for %s naming %q", err, tc.mode, tc.want)
				}
				return
			}
			if err != nil || d.Engine != tc.eng || !strings.Contains(d.Reason, tc.want) {
				t.Errorf("Precheck = %+v, %v; want %s, reason naming %q", d, err, tc.eng, tc.want)
			}
			// Decide says the same without objects.
			if d2, err2 := Decide(tc.mode, tc.f, nil, ""); d2.Reason != d.Reason || (err2 == nil) != (err == nil) {
				t.Errorf("Decide = %+v, %v; Precheck said %+v, %v", d2, err2, d, err)
			}
		})
	}
}
