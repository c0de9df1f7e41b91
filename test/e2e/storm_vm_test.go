//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

// In the test VM, under TCG, every plugin run (three per ADD and per DEL)
// is far slower than on the host: a smaller storm, one round. In the
// guest SOCKSPLICE_SOAK (make soak, make vm-test SOAK=...) lengthens the
// splice engine's long tests, not a storm.
const (
	stormContainers = 40
	stormSoaks      = false
)
