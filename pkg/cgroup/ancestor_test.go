// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package cgroup

// An internal test of the one unexported function worth a table; the
// rest, in cgroup_test.go, goes through the exported API with testenv
// (which imports this package, so only an external test can import it).

import "testing"

func TestCommonAncestor(t *testing.T) {
	for _, tc := range []struct{ a, b, want string }{
		{"/a/b/c", "/a/b/d", "/a/b"},
		{"/a", "/b", "/"},
		{"/a/b", "/a/b", "/a/b"},
		{"/", "/x", "/"},
		{"/x", "/", "/"},
		{"/", "/", "/"},
		{"/a/b", "/a/bc", "/a"},
		{"/a/b/c/d", "/a/b", "/a/b"},
		{"/kubepods/pod1/c1", "/kubepods/pod1/c2", "/kubepods/pod1"},
	} {
		if got := commonAncestor(tc.a, tc.b); got != tc.want {
			t.Errorf("commonAncestor(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
}
