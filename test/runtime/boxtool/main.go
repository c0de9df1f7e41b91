// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Command boxtool is the one program inside the runtime tests' containers
// and images, built static (CGO_ENABLED=0) so that a rootfs needs nothing
// else: "boxtool pause" is a pod sandbox's pause process, and with
// testenv's helper environment (testenv.HelperEnv) it runs a helper role
// such as xfer, printing its report on stdout as a re-executed test
// binary does.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/socksplice/socksplice/test/testenv"
)

func main() {
	testenv.HelperMain() // exits when the environment names a role
	if len(os.Args) == 2 && os.Args[1] == "pause" {
		// PID 1 gets no default signal handling: without these handlers
		// a stop would wait for the runtime's SIGKILL timeout.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		return
	}
	fmt.Fprintln(os.Stderr, "usage: boxtool pause (or run with testenv's helper environment)")
	os.Exit(2)
}
