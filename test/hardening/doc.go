// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package hardening holds the splice module's hardening tests (issue 14): each test is named TestHardening...
package hardening
