//go:build vmtest

// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package hardening

import (
	"testing"

	"github.com/socksplice/socksplice/test/testenv"
)

func TestMain(m *testing.M) { testenv.TestMain(m) }
