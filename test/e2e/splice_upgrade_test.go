//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"testing"

	"github.com/socksplice/socksplice/test/testenv"
)

// Issue 16, item 4 on the splice engine: the upgrade and downgrade of
// TestUpgradeUnderTraffic with the streams spliced by the module. The
// module holds the pairs, so the old programs all go at the upgrade.
func TestSpliceUpgradeUnderTraffic(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireSpliceModule(t)
	upgradeUnderTraffic(t, map[string]any{"mode": "splice"}, 248)
}
