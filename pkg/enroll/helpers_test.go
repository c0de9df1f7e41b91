// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package enroll

import (
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"

	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/internal/nodetest"
)

var loadNode = nodetest.Load

// cgroupDir creates a fresh cgroup v2 directory, removed at cleanup.
func cgroupDir(t *testing.T) string {
	t.Helper()
	root, err := cgroup.Root()
	if err != nil {
		t.Fatal(err)
	}
	return nodetest.NewCgroup(t, root)
}

// newNetns creates a network namespace, removed at cleanup.
func newNetns(t *testing.T) ns.NetNS {
	t.Helper()
	n, err := testutils.NewNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Close()
		if err := testutils.UnmountNS(n); err != nil {
			t.Errorf("removing netns %s: %v", n.Path(), err)
		}
	})
	return n
}
