// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package testenv

// What the suites take from socksplice's own packages is here, so that it
// is repointed in one place when they move; the node a package test gets
// is in node.go.

import (
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/counters"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/pkg/selftest"
)

// Counters are the node's BPF counters, summed over all CPUs.
type Counters = counters.Totals

// ReadCounters reads the counters pinned under pinDir; all zero while
// nothing is loaded there (a plain-TCP network may run first). It takes
// the node lock: the caller must not hold the pins open.
func ReadCounters(t T, pinDir string) Counters {
	t.Helper()
	o, err := node.Open(pinDir)
	if errors.Is(err, node.ErrNotLoaded) {
		return Counters{}
	}
	if err != nil {
		t.Fatalf("opening pins: %v", err)
	}
	defer o.Close()
	c, err := counters.Read(o.Counters)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// counterDelta is a minus b, counter by counter (every uint64 field: a
// counter added to the ABI needs no change here).
func counterDelta(a, b Counters) Counters {
	d := reflect.ValueOf(&a).Elem()
	bv := reflect.ValueOf(b)
	for i := 0; i < d.NumField(); i++ {
		if f := d.Field(i); f.CanSet() && f.Kind() == reflect.Uint64 {
			f.SetUint(f.Uint() - bv.Field(i).Uint())
		}
	}
	return a
}

// ModuleStats reads the splice module's counters and live objects (its
// "stats" parameter), plus its reference count as "refcnt".
func ModuleStats(t T) map[string]int64 {
	t.Helper()
	dir := "/sys/module/" + sbpf.SpliceModule
	b, err := os.ReadFile(dir + "/parameters/stats")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(l, " ")
		m[k], _ = strconv.ParseInt(v, 10, 64)
	}
	rc, err := os.ReadFile(dir + "/refcnt")
	if err != nil {
		t.Fatal(err)
	}
	m["refcnt"], _ = strconv.ParseInt(strings.TrimSpace(string(rc)), 10, 64)
	return m
}

// RequireSpliceModule skips unless the splice kernel module is loaded (the
// VM harness loads it; the host kernel cannot).
func RequireSpliceModule(t T) {
	t.Helper()
	if _, err := os.Stat("/sys/kernel/btf/" + sbpf.SpliceModule); err != nil {
		t.Skipf("SKIP: the %s kernel module is not loaded (%v): the splice engine cannot run", sbpf.SpliceModule, err)
	}
}

// ModuleLoaded says whether the splice module is loaded.
func ModuleLoaded() bool {
	_, err := os.Stat("/sys/module/" + sbpf.SpliceModule + "/refcnt")
	return err == nil
}

// RequireReloadableModule skips unless the splice module is loaded and
// the guest said where its .ko is (kernel/vm/guest-tests.sh sets
// SOCKSPLICE_MODULE_KO), and makes sure at cleanup that it is loaded
// again: the rest of the suite relies on it. It returns the .ko's path.
func RequireReloadableModule(t T) string {
	t.Helper()
	RequireRoot(t)
	RequireSpliceModule(t)
	ko := os.Getenv("SOCKSPLICE_MODULE_KO")
	if ko == "" {
		t.Skip("SKIP: SOCKSPLICE_MODULE_KO is not set (the VM's guest-tests.sh sets it): cannot load the module again after rmmod")
	}
	if _, err := os.Stat(ko); err != nil {
		t.Skipf("SKIP: %v", err)
	}
	t.Cleanup(func() {
		if !ModuleLoaded() {
			if err := InsmodSplice(ko); err != nil {
				t.Errorf("loading %s again: %v", ko, err)
			}
		}
		if !ModuleLoaded() {
			t.Errorf("the module is not loaded after the test")
		}
	})
	return ko
}

// InsmodSplice loads the splice module from ko.
func InsmodSplice(ko string) error {
	fd, err := unix.Open(ko, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.FinitModule(fd, "", 0)
}

// RmmodSplice tries delete_module(O_NONBLOCK) once: nil when the module
// went.
func RmmodSplice() error { return unix.DeleteModule(sbpf.SpliceModule, unix.O_NONBLOCK) }

// ModuleBusy says whether RmmodSplice was refused because something
// holds the module.
func ModuleBusy(err error) bool {
	return errors.Is(err, unix.EWOULDBLOCK) || errors.Is(err, unix.EBUSY)
}

// spliceRead reads c to its end with splice(2), as Go's io.Copy between
// TCP connections does.
func spliceRead(w io.Writer, c *net.TCPConn) (int64, string) { return selftest.SpliceRead(w, c) }

func cgroupRoot() (string, error) { return cgroup.Root() }

// MapEntries counts the entries of the node's per-container and
// per-socket maps under pinDir (nil while nothing is loaded there): what
// must be empty again once every container is gone.
func MapEntries(t T, pinDir string) map[string]int {
	t.Helper()
	o, err := node.Open(pinDir)
	if errors.Is(err, node.ErrNotLoaded) {
		return nil
	}
	if err != nil {
		t.Fatalf("opening pins: %v", err)
	}
	defer o.Close()
	return MapEntriesOf(t, o)
}

// MapEntriesOf is MapEntries of objects the caller has open.
func MapEntriesOf(t T, o *node.Objects) map[string]int {
	t.Helper()
	out := map[string]int{}
	for name, m := range map[string]*ebpf.Map{"pairs": o.Pairs, "enroll": o.Enroll, "localAddrs": o.LocalAddrs, "domainAddrs": o.DomainAddrs, "attach": o.Attach} {
		// Keys only: a SOCKHASH's values are sockets.
		key := make([]byte, m.KeySize())
		var prev any // nil: the first key
		for n := 0; ; n++ {
			if err := m.NextKey(prev, key); err != nil {
				if !errors.Is(err, ebpf.ErrKeyNotExist) {
					t.Fatalf("map %s: %v", name, err)
				}
				out[name] = n
				break
			}
			prev = append([]byte(nil), key...)
		}
	}
	return out
}
