// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package engine

import (
	"errors"
	"strings"
	"testing"

	"github.com/socksplice/socksplice/pkg/node"
)

func TestJudge(t *testing.T) {
	const p = 1 << 20
	cases := []struct {
		name   string
		r      childReport
		engine string
		reason string
	}{
		{"all good", childReport{Payload: p, RecvRead: p, RecvIntact: true, RecvLoBytes: 300, SpliceRead: p, SpliceIntact: true, SpliceEnd: "EOF"}, "sockmap", "passed"},
		{"splice false EOF", childReport{Payload: p, RecvRead: p, RecvIntact: true, RecvLoBytes: 300, SpliceRead: 0, SpliceEnd: "EOF"}, "off", "splice(2)"},
		{"splice hang", childReport{Payload: p, RecvRead: p, RecvIntact: true, RecvLoBytes: 300, SpliceRead: 4096, SpliceEnd: "timeout"}, "off", "splice(2)"},
		{"recv corrupt", childReport{Payload: p, RecvRead: p, RecvIntact: false, SpliceIntact: true}, "off", "corrupted"},
		{"not paired", childReport{Payload: p, RecvRead: p, RecvIntact: true, RecvLoBytes: 2 * p, SpliceIntact: true}, "off", "did not carry"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var st node.SelfTest
			judge(&st, tc.r)
			if st.Engine != tc.engine || !strings.Contains(st.Reason, tc.reason) {
				t.Errorf("judge = %s (%s), want %s with %q", st.Engine, st.Reason, tc.engine, tc.reason)
			}
			if len(st.Details) != 2 {
				t.Errorf("details %v, want the two readers' measurements", st.Details)
			}
		})
	}
}

func TestDecideForcedModes(t *testing.T) {
	ready := Features{Kernel: "x", SockOps: true, SkMsg: true, SockHash: true, CgroupRoot: "/sys/fs/cgroup"}
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
	if _, err := Decide(Splice, ready, nil, ""); !errors.As(err, &unavail) || !strings.Contains(err.Error(), SpliceKfunc) {
		t.Errorf("splice without kfunc: %v, want ErrUnavailable naming %s", err, SpliceKfunc)
	}
	// auto on a kernel that cannot run sockmap stays off without a self-test.
	if d, err := Decide(Auto, noMsg, nil, ""); err != nil || d.Engine != Off || !strings.Contains(d.Reason, "sk_msg") {
		t.Errorf("auto without sk_msg: %+v %v", d, err)
	}
	if _, err := Decide("turbo", ready, nil, ""); err == nil {
		t.Errorf("unknown mode accepted")
	}
}
