// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package selftest measures an engine's socket behaviour before mode auto
// may pick it: it pairs loopback connections through the engine's program
// in a private netns and cgroup (a child process, this binary re-executed)
// and judges the measurements.
package selftest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/counters"
	"github.com/socksplice/socksplice/pkg/crashpoint"
	"github.com/socksplice/socksplice/pkg/node"
)

// childArg, as argv[1], turns the plugin binary into the self-test child.
// Main functions (the plugin's, test binaries') call MaybeRunChild first
// thing.
const childArg = "__socksplice_selftest_child"

const selfTestTimeout = 20 * time.Second

// Check is one behaviour the self-test measured on a paired connection.
// Names match the semantics suite's cases.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Self-test checks. Each one is a data-loss, wrong-data or unbounded-memory
// case of the semantics suite that a sockmap kernel may fail.
const (
	CheckRecv         = "recv"         // the connection paired and a read() reader got every byte
	CheckSpliceRead   = "splice-read"  // a splice(2) reader got every byte (Go's io.Copy)
	CheckOOB          = "msg-oob"      // the urgent byte stayed out of band
	CheckBackpressure = "backpressure" // a writer to a non-reading peer got EAGAIN in bounded memory
	CheckHalfClose    = "half-close"   // a send after shutdown(SHUT_WR) failed with EPIPE and never arrived
)

// childReport is what the child measured.
type childReport struct {
	Checks []Check `json:"checks"`
	Err    string  `json:"err,omitempty"`
}

// Self-test settings for the splice engine: a ring small enough that the
// 1 MiB transfers wrap it many times and fill it.
const selfTestRingKiB = 64

// Run pairs loopback connections through one engine's program (the
// splice engine's if splice, else the sockmap engine's) in a private netns
// and cgroup, reads them with recv and with splice(2), checks urgent data
// and backpressure, and returns the measurements. exe is a binary that runs
// the child (see childArg).
func Run(o *node.Objects, exe string, splice bool) ([]Check, error) {
	prog := o.SockOps
	pol := sbpf.AbiSsPolicy{Flags: sbpf.PolicyEnabled | sbpf.PolicyLoopback}
	if splice {
		if o.Splice == nil {
			return nil, errors.New("the splice engine's program is not loaded")
		}
		prog = o.Splice
		pol.Flags |= sbpf.PolicySplice
		pol.RingKib = selfTestRingKiB
	}
	root, err := cgroup.Root()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, fmt.Sprintf("%s%d", cgroupPrefix, os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("self-test cgroup: %w", err)
	}
	crashpoint.Done(crashpoint.SelfTestCgroup)
	defer func() {
		if os.Remove(dir) == nil {
			crashpoint.Done(crashpoint.SelfTestRmCgroup)
		}
	}()
	l, err := link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: ebpf.AttachCGroupSockOps, Program: prog})
	if err != nil {
		return nil, fmt.Errorf("self-test attach: %w", err)
	}
	defer l.Close()
	crashpoint.Done(crashpoint.SelfTestAttach)
	cg, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer cg.Close()

	ctx, cancel := context.WithTimeout(context.Background(), selfTestTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, childArg)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWNET,
		UseCgroupFD: true,
		CgroupFD:    int(cg.Fd()),
		Pdeathsig:   syscall.SIGKILL,
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	// Unmarked only once the child is gone (deferred before its Wait):
	// none of its messages may count as a container's.
	defer func() {
		if o.MarkSelfTest(0) == nil {
			crashpoint.Done(crashpoint.SelfTestUnmark)
		}
	}()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("self-test child: %w", err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill() // ours, by PID; a no-op once it exited
	crashpoint.Done(crashpoint.SelfTestChild)

	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	cookieStr, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	if err != nil || !ok {
		return nil, fmt.Errorf("self-test child did not start: %q %v %s", line, err, stderr.String())
	}
	cookie, err := strconv.ParseUint(cookieStr, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("self-test child: bad netns cookie %q", cookieStr)
	}
	// Its own counters entry, retired under counters.SelfTest afterwards:
	// the self-test's connections count in no container or network.
	// Its redirected messages count apart too (node-wide counters).
	done := func() {
		if o.Enroll.Delete(cookie) == nil {
			crashpoint.Done(crashpoint.SelfTestUnenroll)
		}
		counters.Retire(o, cookie, counters.SelfTest)
	}
	// The marker first: from then on, a self-test killed with its
	// plugin is found by it (Reclaim).
	if err := o.MarkSelfTest(cookie); err != nil {
		return nil, fmt.Errorf("self-test enroll: %w", err)
	}
	crashpoint.Done(crashpoint.SelfTestMark)
	if err := counters.StartNS(o, cookie); err != nil {
		done()
		return nil, fmt.Errorf("self-test enroll: %w", err)
	}
	if err := o.Enroll.Update(cookie, &pol, ebpf.UpdateAny); err != nil {
		done()
		return nil, fmt.Errorf("self-test enroll: %w", err)
	}
	defer done()
	crashpoint.Done(crashpoint.SelfTestEnroll)
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		return nil, err
	}
	var rep childReport
	if err := json.NewDecoder(out).Decode(&rep); err != nil {
		return nil, fmt.Errorf("self-test child report: %w (%s)", err, stderr.String())
	}
	if rep.Err != "" {
		return nil, fmt.Errorf("self-test child: %s", rep.Err)
	}
	return rep.Checks, nil
}

// cgroupPrefix and the plugin's pid name a self-test's cgroup.
const cgroupPrefix = "socksplice-selftest-"

// Reclaim drops what a self-test killed with its plugin left behind: its
// netns, which the marker still names, enrolled and with a counters entry
// (the counts go to the self-test's retired ones), and its cgroup. The
// caller holds the node lock, so no self-test of this node runs; those of
// other nodes (other pin directories) have a live plugin and are left
// alone.
func Reclaim(o *node.Objects) error {
	var errs []error
	if o.SelfTestNetns != nil {
		var cookie uint64
		if err := o.SelfTestNetns.Lookup(uint32(0), &cookie); err != nil {
			errs = append(errs, fmt.Errorf("reading the self-test marker: %w", err))
		} else if cookie != 0 {
			err := o.Enroll.Delete(cookie)
			if err == nil || errors.Is(err, ebpf.ErrKeyNotExist) {
				err = counters.Retire(o, cookie, counters.SelfTest)
			}
			if err == nil {
				err = o.MarkSelfTest(0)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("reclaiming a killed self-test's netns %d: %w", cookie, err))
			}
		}
	}
	root, err := cgroup.Root()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	dirs, _ := filepath.Glob(filepath.Join(root, cgroupPrefix+"*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), cgroupPrefix))
		if err != nil || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // not ours, or its plugin still runs
		}
		if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
			errs = append(errs, fmt.Errorf("removing a killed self-test's cgroup: %w", err))
		}
	}
	return errors.Join(errs...)
}

// maxDetail bounds one check's line: the verdicts of both engines share a
// 4 KiB map value.
const maxDetail = 240

// Result is the self-test's judgement of one engine.
type Result struct {
	Passed  bool
	Reason  string
	Details []string // one line per check
}

// Judge turns the measurements of engine eng into a verdict. Every failure
// keeps eng out of auto: auto must never pick a path that loses data.
func Judge(checks []Check, eng string) Result {
	var r Result
	var failed []string
	for _, c := range checks {
		line := fmt.Sprintf("%s: ok=%v: %s", c.Name, c.OK, c.Detail)
		if len(line) > maxDetail {
			line = line[:maxDetail-3] + "..."
		}
		r.Details = append(r.Details, line)
		if !c.OK {
			failed = append(failed, c.Name+" ("+c.Detail+")")
		}
	}
	switch {
	case len(checks) == 0:
		r.Reason = "self-test measured nothing"
	case len(failed) > 0:
		r.Reason = eng + " fails the self-test: " + strings.Join(failed, "; ")
	default:
		r.Passed = true
		r.Reason = "self-test passed: " + strings.Join(checkNames(checks), ", ")
	}
	return r
}

func checkNames(cs []Check) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}
