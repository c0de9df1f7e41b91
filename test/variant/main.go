// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Command variant builds the plugin variants the upgrade tests install
// (testenv.Variants: this tree's plugin with its BPF objects compiled
// with other C flags) into DIR/NAME/socksplice, for a test run that
// cannot build them itself: the VM's guest (kernel/vm/test.sh).
//
//	go run ./test/variant DIR
package main

import (
	"fmt"
	"os"

	"github.com/socksplice/socksplice/test/testenv"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: variant DIR")
		os.Exit(2)
	}
	if err := testenv.BuildVariants(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "variant:", err)
		os.Exit(1)
	}
}
