// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package cnitest

import (
	"fmt"
	"os"
	"sync"
)

// Runner gives the harness what it needs from a test outside "go test"
// (the demo, the benchmark): a failure prints and unwinds every cleanup
// before exiting, so nothing is left behind.
type Runner struct {
	Name     string // prefixes failure messages and temp directories
	mu       sync.Mutex
	cleanups []func()
}

func (r *Runner) Helper()                   {}
func (r *Runner) Logf(f string, a ...any)   { fmt.Printf(f+"\n", a...) }
func (r *Runner) Errorf(f string, a ...any) { r.Fatalf(f, a...) }
func (r *Runner) Fatal(a ...any)            { r.exit(fmt.Sprint(a...)) }
func (r *Runner) Fatalf(f string, a ...any) { r.exit(fmt.Sprintf(f, a...)) }
func (r *Runner) Skip(a ...any)             { r.exit("cannot run: " + fmt.Sprint(a...)) }
func (r *Runner) Skipf(f string, a ...any)  { r.exit("cannot run: " + fmt.Sprintf(f, a...)) }

func (r *Runner) Cleanup(f func()) {
	r.mu.Lock()
	r.cleanups = append(r.cleanups, f)
	r.mu.Unlock()
}

func (r *Runner) TempDir() string {
	d, err := os.MkdirTemp("", "socksplice-"+r.Name+"-")
	if err != nil {
		r.Fatal(err)
	}
	r.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func (r *Runner) exit(msg string) {
	fmt.Fprintf(os.Stderr, "%s failed: %s\n", r.Name, msg)
	r.RunCleanups()
	os.Exit(1)
}

// RunCleanups runs the registered cleanups, last first; call it (deferred)
// at the end of main.
func (r *Runner) RunCleanups() {
	r.mu.Lock()
	cs := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}
