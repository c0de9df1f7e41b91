// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package engine

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
	"github.com/socksplice/socksplice/pkg/node"
)

// SelfTestArg, as argv[1], turns the plugin binary into the self-test
// child. Main functions (the plugin's, test binaries') call
// MaybeRunSelfTestChild first thing.
const SelfTestArg = "__socksplice_selftest_child"

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
)

// childReport is what the child measured.
type childReport struct {
	Checks []Check `json:"checks"`
	Err    string  `json:"err,omitempty"`
}

// Self-test settings for the splice engine: a ring small enough that the
// 1 MiB transfers wrap it many times and fill it.
const selfTestRingKiB = 64

// RunSelfTest pairs loopback connections through one engine (Sockmap or
// Splice) in a private netns and cgroup, reads them with recv and with
// splice(2), checks urgent data and backpressure, and says whether "auto"
// may use that engine. exe is a binary that runs the child (see
// SelfTestArg).
func RunSelfTest(o *node.Objects, exe, kernel, eng string) (node.SelfTest, error) {
	st := node.SelfTest{Kernel: kernel, Engine: Off, At: time.Now().UTC()}
	prog := o.SockOps
	pol := sbpf.AbiSsPolicy{Flags: sbpf.PolicyEnabled | sbpf.PolicyLoopback}
	switch eng {
	case Sockmap:
	case Splice:
		if o.Splice == nil {
			return st, errors.New("the splice engine's program is not loaded")
		}
		prog = o.Splice
		pol.Flags |= sbpf.PolicySplice
		pol.RingKib = selfTestRingKiB
	default:
		return st, fmt.Errorf("no self-test for engine %q", eng)
	}
	root, err := cgroup.Root()
	if err != nil {
		return st, err
	}
	dir := filepath.Join(root, fmt.Sprintf("socksplice-selftest-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return st, fmt.Errorf("self-test cgroup: %w", err)
	}
	defer os.Remove(dir)
	l, err := link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: ebpf.AttachCGroupSockOps, Program: prog})
	if err != nil {
		return st, fmt.Errorf("self-test attach: %w", err)
	}
	defer l.Close()
	cg, err := os.Open(dir)
	if err != nil {
		return st, err
	}
	defer cg.Close()

	ctx, cancel := context.WithTimeout(context.Background(), selfTestTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, SelfTestArg)
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
		return st, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return st, err
	}
	if err := cmd.Start(); err != nil {
		return st, fmt.Errorf("self-test child: %w", err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill() // ours, by PID; a no-op once it exited

	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	cookieStr, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	if err != nil || !ok {
		return st, fmt.Errorf("self-test child did not start: %q %v %s", line, err, stderr.String())
	}
	cookie, err := strconv.ParseUint(cookieStr, 10, 64)
	if err != nil {
		return st, fmt.Errorf("self-test child: bad netns cookie %q", cookieStr)
	}
	if err := o.Enroll.Update(cookie, &pol, ebpf.UpdateAny); err != nil {
		return st, fmt.Errorf("self-test enroll: %w", err)
	}
	defer o.Enroll.Delete(cookie)
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		return st, err
	}
	var rep childReport
	if err := json.NewDecoder(out).Decode(&rep); err != nil {
		return st, fmt.Errorf("self-test child report: %w (%s)", err, stderr.String())
	}
	if rep.Err != "" {
		return st, fmt.Errorf("self-test child: %s", rep.Err)
	}
	judge(&st, rep, eng)
	return st, nil
}

// maxDetail bounds one check's line: the verdicts live in a 4 KiB map value.
const maxDetail = 240

// judge turns measurements into the auto decision for engine eng. Every
// failure keeps eng out of auto: auto must never pick a path that loses
// data.
func judge(st *node.SelfTest, r childReport, eng string) {
	st.Engine = Off
	st.Details = nil
	var failed []string
	for _, c := range r.Checks {
		line := fmt.Sprintf("%s: ok=%v: %s", c.Name, c.OK, c.Detail)
		if len(line) > maxDetail {
			line = line[:maxDetail-3] + "..."
		}
		st.Details = append(st.Details, line)
		if !c.OK {
			failed = append(failed, c.Name+" ("+c.Detail+")")
		}
	}
	switch {
	case len(r.Checks) == 0:
		st.Reason = "self-test measured nothing"
	case len(failed) > 0:
		st.Reason = eng + " fails the self-test: " + strings.Join(failed, "; ")
	default:
		st.Engine = eng
		st.Reason = "self-test passed: " + strings.Join(checkNames(r.Checks), ", ")
	}
}

func checkNames(cs []Check) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}
