// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package selftest

import (
	"strings"
	"testing"
)

func TestJudge(t *testing.T) {
	pass := func(name string) Check { return Check{Name: name, OK: true, Detail: "fine"} }
	fail := func(name string) Check { return Check{Name: name, Detail: "broken"} }
	all := func(cs ...Check) []Check { return cs }
	cases := []struct {
		name   string
		checks []Check
		passed bool
		reason []string
	}{
		{"all good", all(pass(CheckRecv), pass(CheckSpliceRead), pass(CheckOOB), pass(CheckBackpressure), pass(CheckHalfClose)), true, []string{"passed"}},
		{"send after shutdown delivered", all(pass(CheckRecv), pass(CheckSpliceRead), pass(CheckOOB), pass(CheckBackpressure), fail(CheckHalfClose)), false, []string{"half-close"}},
		{"splice false EOF", all(pass(CheckRecv), fail(CheckSpliceRead), pass(CheckOOB), pass(CheckBackpressure)), false, []string{"splice-read"}},
		{"two failures named", all(pass(CheckRecv), fail(CheckSpliceRead), fail(CheckOOB), pass(CheckBackpressure)), false, []string{"splice-read", "msg-oob"}},
		{"unbounded memory", all(pass(CheckRecv), pass(CheckSpliceRead), pass(CheckOOB), fail(CheckBackpressure)), false, []string{"backpressure"}},
		{"not paired", all(fail(CheckRecv), pass(CheckSpliceRead)), false, []string{"recv"}},
		{"nothing measured", all(), false, []string{"nothing"}},
	}
	for _, eng := range []string{"sockmap", "splice"} {
		for _, tc := range cases {
			t.Run(eng+"/"+tc.name, func(t *testing.T) {
				r := Judge(tc.checks, eng)
				if r.Passed != tc.passed {
					t.Errorf("Judge passed = %v (%s), want %v", r.Passed, r.Reason, tc.passed)
				}
				for _, w := range tc.reason {
					if !strings.Contains(r.Reason, w) {
						t.Errorf("reason %q does not name %q", r.Reason, w)
					}
				}
				if !tc.passed && len(tc.checks) > 0 && !strings.HasPrefix(r.Reason, eng+" fails") {
					t.Errorf("reason %q does not name the engine %s", r.Reason, eng)
				}
				if len(r.Details) != len(tc.checks) {
					t.Errorf("details %v, want one line per check", r.Details)
				}
			})
		}
	}

	// A long detail is cut so that two verdicts fit the node's meta map.
	r := Judge(all(Check{Name: CheckRecv, Detail: strings.Repeat("x", 5000)}), "splice")
	if len(r.Details) != 1 || len(r.Details[0]) != maxDetail || !strings.HasSuffix(r.Details[0], "...") {
		t.Errorf("a 5000-byte detail became %d bytes", len(r.Details[0]))
	}
}
