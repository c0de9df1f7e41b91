// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package testenv

import (
	"errors"
	"fmt"
	"os"
	"sync"
)

// runner is the T of code outside "go test". Its cleanups run last
// first, each once. A failure in Main's runner prints, runs every cleanup
// and exits; in Try's it unwinds to Try.
type runner struct {
	name     string
	parent   T // Try's: logs go there; nil for Main's
	mu       sync.Mutex
	cleanups []func()
}

// failure is what a Try runner's Fatal panics with.
type failure string

// Main runs a program's body (the demo, the benchmark) with a T: first
// the helper role when the binary was re-executed as one, then a check for
// root. A failure prints "name failed: ..." and exits 1 once every cleanup
// ran; otherwise the cleanups run when body returns.
func Main(name string, body func(t T)) {
	HelperMain()
	r := &runner{name: name}
	r.Cleanup(RemoveBinDir)
	RequireRoot(r)
	body(r)
	r.runCleanups()
}

// Try runs body with a T of its own: a failure there ends body and comes
// back as Try's error, and everything body made is removed before Try
// returns, failure or not (a failing cleanup is logged, the others still
// run). It keeps a long measurement's many containers from outliving it.
func Try(parent T, name string, body func(t T)) (err error) {
	r := &runner{name: name, parent: parent}
	defer r.runCleanups()
	defer func() {
		if p := recover(); p != nil {
			f, ok := p.(failure)
			if !ok {
				panic(p)
			}
			err = errors.New(string(f))
		}
	}()
	body(r)
	return nil
}

func (r *runner) Helper() {}

func (r *runner) Logf(f string, a ...any) {
	if r.parent != nil {
		r.parent.Logf(f, a...)
		return
	}
	fmt.Printf(f+"\n", a...)
}

func (r *runner) Errorf(f string, a ...any) { r.fail(fmt.Sprintf(f, a...)) }
func (r *runner) Fatal(a ...any)            { r.fail(fmt.Sprint(a...)) }
func (r *runner) Fatalf(f string, a ...any) { r.fail(fmt.Sprintf(f, a...)) }
func (r *runner) Skip(a ...any)             { r.fail("cannot run: " + fmt.Sprint(a...)) }
func (r *runner) Skipf(f string, a ...any)  { r.fail("cannot run: " + fmt.Sprintf(f, a...)) }

func (r *runner) Cleanup(f func()) {
	r.mu.Lock()
	r.cleanups = append(r.cleanups, f)
	r.mu.Unlock()
}

func (r *runner) TempDir() string {
	d, err := os.MkdirTemp("", "socksplice-"+r.name+"-")
	if err != nil {
		r.Fatal(err)
	}
	r.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func (r *runner) fail(msg string) {
	if r.parent != nil {
		panic(failure(msg))
	}
	fmt.Fprintf(os.Stderr, "%s failed: %s\n", r.name, msg)
	r.runCleanups() // a failure inside a cleanup gets here again and goes on with the rest
	os.Exit(1)
}

// runCleanups runs the cleanups last first, taking one at a time so that
// a failure inside one does not skip the others.
func (r *runner) runCleanups() {
	for {
		r.mu.Lock()
		n := len(r.cleanups)
		if n == 0 {
			r.mu.Unlock()
			return
		}
		f := r.cleanups[n-1]
		r.cleanups = r.cleanups[:n-1]
		r.mu.Unlock()
		r.runCleanup(f)
	}
}

func (r *runner) runCleanup(f func()) {
	if r.parent != nil {
		defer func() {
			if p := recover(); p != nil {
				if _, ok := p.(failure); !ok {
					panic(p)
				}
				r.parent.Logf("%s cleanup: %v", r.name, p)
			}
		}()
	}
	f()
}
