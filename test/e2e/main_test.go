// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"os"
	"testing"

	"github.com/socksplice/socksplice/test/cnitest"
)

func TestMain(m *testing.M) {
	cnitest.HelperMain()
	code := m.Run()
	cnitest.RemoveBinDir()
	os.Exit(code)
}
