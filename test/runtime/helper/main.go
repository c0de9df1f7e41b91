// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Command helper runs testenv's helper roles (xfer, idle) inside a real
// runtime's container. The runtime tests build it static and copy it into
// the container's root filesystem, where the test binary itself (linked
// against the host's libc) could not run.
package main

import (
	"fmt"
	"os"

	"github.com/socksplice/socksplice/test/testenv"
)

func main() {
	testenv.HelperMain() // exits when a role is set
	fmt.Fprintln(os.Stderr, "helper: no role (set SOCKSPLICE_TEST_HELPER)")
	os.Exit(2)
}
