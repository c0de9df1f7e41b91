// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package kmod loads the splice engine's kernel module on a node: the one
// a package (socksplice-dkms) installed, or else one built from the
// module's source against the node's own kernel headers (the pattern of
// Falco's driver loader). It reports what happened and never fails: the
// plugin falls back per mode where the module is unavailable.
package kmod

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// How the module came to be loaded, or not.
const (
	AlreadyLoaded = "already loaded"
	FromPackage   = "loaded from package"
	Built         = "built from source and loaded"
	Unavailable   = "unavailable"
)

// Name is the module's name (and its .ko's).
const Name = "socksplice"

// Options says where to look.
type Options struct {
	// Source is a directory laid out as the repository's kernel/: module/
	// (the sources and Kbuild) and include/socksplice/. "" builds nothing.
	Source string
	// ModulesDir is the node's /lib/modules (its build/ links are the
	// headers, usually into /usr/src).
	ModulesDir string
}

// Result is the report.
type Result struct {
	How    string `json:"how"`    // one of the constants above
	Detail string `json:"detail"` // the file loaded, or why it is unavailable
}

func (r Result) String() string { return "splice module: " + r.How + ": " + r.Detail }

// Load loads the module if it can; see the package doc.
func Load(ctx context.Context, o Options) Result {
	if o.ModulesDir == "" {
		o.ModulesDir = "/lib/modules"
	}
	if _, err := os.Stat("/sys/module/" + Name); err == nil {
		return Result{AlreadyLoaded, loadedDetail()}
	}
	if _, err := os.Stat("/proc/modules"); err != nil {
		return Result{Unavailable, "this kernel has no loadable module support (no /proc/modules)"}
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return Result{Unavailable, "uname: " + err.Error()}
	}
	release := unix.ByteSliceToString(u.Release[:])
	var why []string
	if ko, err := loadPackaged(filepath.Join(o.ModulesDir, release)); err == nil {
		return Result{FromPackage, ko}
	} else {
		why = append(why, err.Error())
	}
	if o.Source == "" {
		return Result{Unavailable, strings.Join(why, "; ")}
	}
	work, err := os.MkdirTemp("", "socksplice-kmod-")
	if err != nil {
		return Result{Unavailable, err.Error()}
	}
	defer os.RemoveAll(work)
	ko, err := Build(ctx, o.Source, filepath.Join(o.ModulesDir, release, "build"), work)
	if err == nil {
		err = insmod(ko)
	}
	if err != nil {
		return Result{Unavailable, strings.Join(append(why, err.Error()), "; ")}
	}
	return Result{Built, fmt.Sprintf("against %s", filepath.Join(o.ModulesDir, release, "build"))}
}

// loadedDetail says why a loaded module stays, also when another build
// is installed: the kernel cannot swap a module's code, and refuses to
// unload one that programs or paired sockets still use (the refcount).
func loadedDetail() string {
	dir := "/sys/module/" + Name
	b, err := os.ReadFile(dir + "/refcnt")
	n := strings.TrimSpace(string(b))
	if err != nil || n == "0" {
		return dir + ", not in use: to load another build, rmmod " + Name + " and run this again"
	}
	return fmt.Sprintf("%s, in use (%s references: splice programs, prepared listeners, paired sockets), kept: "+
		"a loaded module cannot be replaced, and rmmod is refused until no container uses the splice engine; "+
		"another build loads after that, or at reboot", dir, n)
}

// loadPackaged loads the module installed under modDir (DKMS puts it in
// updates/dkms/), by finit_module, which needs no modprobe in the image.
func loadPackaged(modDir string) (string, error) {
	var ko string
	err := filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == modDir {
				return err
			}
			return nil // an unreadable corner, or build/ pointing at absent headers
		}
		if d.IsDir() && d.Name() == "build" || d.IsDir() && d.Name() == "source" {
			return fs.SkipDir
		}
		n := d.Name()
		if n == Name+".ko" || n == Name+".ko.xz" || n == Name+".ko.zst" || n == Name+".ko.gz" {
			ko = p
			return fs.SkipAll
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("no packaged module: %v", err)
	}
	if ko == "" {
		return "", fmt.Errorf("no packaged module under %s (socksplice-dkms not installed, or DKMS built none for this kernel)", modDir)
	}
	if err := insmod(ko); err != nil {
		return "", err
	}
	return ko, nil
}

// Build compiles the module from src into a copy under work, against the
// kernel build tree kbuild, and returns the .ko's path.
func Build(ctx context.Context, src, kbuild, work string) (string, error) {
	if _, err := os.Stat(filepath.Join(kbuild, "Makefile")); err != nil {
		return "", fmt.Errorf("no kernel headers at %s (install the node's linux-headers package and mount /lib/modules and /usr/src): %v", kbuild, err)
	}
	// The source is mounted read-only in the image; kbuild writes beside it.
	if err := os.CopyFS(work, os.DirFS(src)); err != nil {
		return "", fmt.Errorf("copying the module source: %v", err)
	}
	cmd := exec.CommandContext(ctx, "make", "-C", kbuild, "M="+filepath.Join(work, "module"), "modules")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building against %s: %v: %s", kbuild, err, tail(out.String(), 5))
	}
	return filepath.Join(work, "module", Name+".ko"), nil
}

func insmod(ko string) error {
	f, err := os.Open(ko)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if filepath.Ext(ko) != ".ko" {
		flags = unix.MODULE_INIT_COMPRESSED_FILE // the kernel decompresses
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading %s: %v (dmesg says why)", ko, err)
	}
	return nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
