// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package runtime holds the end-to-end tests on real container runtimes
// (podman with its CNI backend, cnitool, containerd through ctr and
// through its CRI with crictl): each runs socksplice in the
// runtime's own CNI chain with the real bridge and host-local plugins,
// moves data between two containers, proves the fast path carried it and
// that removing everything left nothing behind.
package runtime

import (
	"testing"

	"github.com/socksplice/socksplice/test/testenv"
)

func TestMain(m *testing.M) { testenv.TestMain(m) }
