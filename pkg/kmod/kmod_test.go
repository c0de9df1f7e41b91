// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package kmod

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// kernelSource is the repository's kernel/ dir, laid out as the image
// carries it.
func kernelSource(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "kernel")
}

// TestLoadReports runs the loader on this machine, as the init container
// would with the source at hand: it must say what happened and why.
func TestLoadReports(t *testing.T) {
	r := Load(context.Background(), Options{Source: kernelSource(t), ModulesDir: t.TempDir()})
	t.Logf("%s", r)
	_, loaded := os.Stat("/sys/module/" + Name)
	_, modules := os.Stat("/proc/modules")
	switch {
	case loaded == nil:
		if r.How != AlreadyLoaded {
			t.Errorf("module loaded, report %s", r)
		}
	case modules != nil:
		if r.How != Unavailable || !strings.Contains(r.Detail, "no loadable module support") {
			t.Errorf("kernel without modules, report %s", r)
		}
	default:
		// An empty modules dir: no package, and no headers to build with.
		if r.How != Unavailable || !strings.Contains(r.Detail, "no packaged module") || !strings.Contains(r.Detail, "no kernel headers") {
			t.Errorf("report %s, want unavailable naming the missing package and headers", r)
		}
	}
}

// TestBuildNeedsHeaders: without the node's headers the build says which
// package and mounts are missing, before copying anything.
func TestBuildNeedsHeaders(t *testing.T) {
	work := t.TempDir()
	_, err := Build(context.Background(), kernelSource(t), filepath.Join(t.TempDir(), "build"), work)
	if err == nil || !strings.Contains(err.Error(), "no kernel headers") || !strings.Contains(err.Error(), "linux-headers") {
		t.Errorf("error %v, want one naming the missing headers", err)
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("work dir holds %d entries after a refused build", len(ents))
	}
}
