//go:build !vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

// On the host: the 200 containers, and SOCKSPLICE_SOAK's rounds.
const (
	stormContainers = 200
	stormSoaks      = true
)
