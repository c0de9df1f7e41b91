// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"testing"

	"github.com/socksplice/socksplice/test/testenv"
)

func TestMain(m *testing.M) { testenv.TestMain(m) }
