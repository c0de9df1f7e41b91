//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

// In the test VM, under TCG, every plugin run (three per ADD and per DEL)
// is far slower than on the host: a smaller storm, one round. The guest's SOCKSPLICE_SOAK is the
// splice soak's length (kernel/vm/guest-tests.sh), not a storm's.
const (
	stormContainers = 40
	stormSoaks      = false
)
