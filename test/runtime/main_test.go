// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package runtime holds the end-to-end tests on real container runtimes
// (containerd through ctr and through its CRI with crictl, ...): the
// plugin installed in a runtime's own CNI directories, containers started
// the way users start them, payload integrity, the fast path proven by
// veth and plugin counters, and nothing left behind.
package runtime

import (
	"os"
	"testing"

	"github.com/socksplice/socksplice/test/testenv"
)

func TestMain(m *testing.M) {
	testenv.HelperMain()
	code := m.Run()
	testenv.RemoveBinDir()
	removeBoxtool()
	os.Exit(code)
}
