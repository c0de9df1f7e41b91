// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package testenv

// Processes in a container, and the one helper mechanism: the test binary
// (or the demo's, the benchmark's) re-executed inside a container, running
// a role registered with Register. The parent passes the role's spec as
// JSON in the environment; the helper may print one "ready" line (a server
// listening), then prints its report, {"result": ..., "err": ...}, on
// stdout and exits.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	roleEnv   = "SOCKSPLICE_TEST_HELPER"
	specEnv   = "SOCKSPLICE_TEST_HELPER_SPEC"
	readyLine = "ready"
)

type roleFunc func(spec []byte, ready func()) (any, error)

var roles = map[string]roleFunc{}

// Register makes run a helper role named role: it gets the spec the parent
// passed to StartHelper, calls ready once it can be used (when the parent
// waits for that), and returns what the parent's Proc.Result decodes.
// Call it from an init function, so that HelperMain knows it.
func Register[S, R any](role string, run func(spec S, ready func()) (R, error)) {
	if _, dup := roles[role]; dup {
		panic("testenv: helper role " + role + " registered twice")
	}
	roles[role] = func(b []byte, ready func()) (any, error) {
		var s S
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("spec: %w", err)
		}
		return run(s, ready)
	}
}

type report struct {
	Result json.RawMessage `json:"result,omitempty"`
	Err    string          `json:"err,omitempty"`
}

// HelperMain runs the helper role and exits when the binary was started as
// one; otherwise it returns at once. Call it first thing in TestMain (see
// TestMain) or main (see Main).
func HelperMain() {
	name := os.Getenv(roleEnv)
	if name == "" {
		return
	}
	out := os.Stdout
	os.Stdout = os.Stderr // the role's own prints must not garble the report
	var rep report
	if run := roles[name]; run == nil {
		rep.Err = "unknown helper role " + name
	} else {
		res, err := run([]byte(os.Getenv(specEnv)), func() { fmt.Fprintln(out, readyLine) })
		if err != nil {
			rep.Err = err.Error()
		}
		if res != nil {
			rep.Result, _ = json.Marshal(res)
		}
	}
	json.NewEncoder(out).Encode(rep)
	os.Exit(0)
}

// HelperEnv is the environment that makes a binary calling HelperMain run
// role with spec: for helpers a container runtime starts (test/runtime's
// boxtool), where StartHelper cannot. Their report is what
// DecodeHelperReport reads.
func HelperEnv(role string, spec any) ([]string, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	return []string{roleEnv + "=" + role, specEnv + "=" + string(b)}, nil
}

// DecodeHelperReport decodes a helper's report (what follows its "ready"
// line, if any, on its stdout) into v; the role's error is the error.
func DecodeHelperReport(r io.Reader, v any) error {
	var rep report
	if err := json.NewDecoder(r).Decode(&rep); err != nil {
		return fmt.Errorf("helper report: %w", err)
	}
	if len(rep.Result) > 0 {
		if err := json.Unmarshal(rep.Result, v); err != nil {
			return fmt.Errorf("helper result: %w", err)
		}
	}
	if rep.Err != "" {
		return errors.New(rep.Err)
	}
	return nil
}

// IsReadyLine reports whether line is the "ready" line a helper prints.
func IsReadyLine(line string) bool { return strings.TrimSpace(line) == readyLine }

// Helper is a helper process to start in a container.
type Helper struct {
	Role   string
	Spec   any
	Prefix []string // argv before the binary, e.g. {"taskset", "-c", "1"}
	Ready  bool     // wait until the role called ready
	Cgroup string   // the cgroup directory it is born in; empty: the container's
}

// StartHelper re-executes this binary in c as h.Role. The process is
// killed, by PID, at cleanup if it still runs.
func (c *Container) StartHelper(t T, h Helper) (*Proc, error) {
	t.Helper()
	spec, err := json.Marshal(h.Spec)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	argv := append(append([]string{}, h.Prefix...), self)
	if testing.Testing() {
		argv = append(argv, "-test.run=^$") // no tests, should HelperMain not be reached
	}
	cgroup := h.Cgroup
	if cgroup == "" {
		cgroup = c.Cgroup
	}
	var stdout io.Reader
	p, err := c.exec(t, cgroup, argv, func(cmd *exec.Cmd) (err error) {
		cmd.Env = append(os.Environ(), roleEnv+"="+h.Role, specEnv+"="+string(spec))
		stdout, err = cmd.StdoutPipe()
		return err
	})
	if err != nil {
		return nil, err
	}
	p.role, p.out = h.Role, bufio.NewReader(stdout)
	if h.Ready {
		line, err := p.out.ReadString('\n')
		if strings.TrimSpace(line) != readyLine {
			p.Kill()
			p.Wait()
			return nil, fmt.Errorf("helper %s in %s did not get ready: %q %v %s", h.Role, c.ID, line, err, p.Stderr())
		}
	}
	return p, nil
}

func init() {
	Register("idle", func(_ struct{}, ready func()) (struct{}, error) {
		ready()
		time.Sleep(time.Hour) // until killed at cleanup
		return struct{}{}, nil
	})
}

// StartIdle starts a helper that sits in c's netns, born in the cgroup
// directory cgroup (empty: c's), until it is killed at cleanup. It is in
// the netns when StartIdle returns.
func (c *Container) StartIdle(t T, cgroup string) *Proc {
	t.Helper()
	p, err := c.StartHelper(t, Helper{Role: "idle", Ready: true, Cgroup: cgroup})
	if err != nil {
		t.Fatalf("starting an idle process in %s: %v", c.ID, err)
	}
	return p
}

// Proc is a process running in a container.
type Proc struct {
	cmd      *exec.Cmd
	role     string        // helpers only
	out      *bufio.Reader // helpers only: their stdout
	stderr   lockedBuffer
	waitOnce sync.Once
	done     chan struct{}
	waitErr  error
}

// Exec starts argv in c's netns and cgroup (born there, so a sock_ops
// program attached to the cgroup sees its sockets). setup may set the
// environment and stdout before the start; stderr is kept for Stderr. The
// process is killed, by PID, and reaped at cleanup if it still runs,
// before the cleanups registered ahead of Exec's run (its container's, or
// those of a cgroup made for it), since cleanups run last first.
func (c *Container) Exec(t T, argv []string, setup func(*exec.Cmd) error) (*Proc, error) {
	t.Helper()
	return c.exec(t, c.Cgroup, argv, setup)
}

// exec is Exec born in the cgroup directory cgroup.
func (c *Container) exec(t T, cgroup string, argv []string, setup func(*exec.Cmd) error) (*Proc, error) {
	t.Helper()
	cg, err := os.Open(cgroup)
	if err != nil {
		return nil, err
	}
	defer cg.Close()
	p := &Proc{done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", c.NetnsName}, argv...)...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd()), Pdeathsig: syscall.SIGKILL}
	p.cmd.Stderr = &p.stderr
	if setup != nil {
		if err := setup(p.cmd); err != nil {
			return nil, err
		}
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		p.Kill()
		go p.Wait()
		select { // a grandchild holding stderr open must not hang the cleanup
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	})
	return p, nil
}

// Wait waits for the process to end; any number of callers may wait. For
// a helper, Result waits.
func (p *Proc) Wait() error {
	p.waitOnce.Do(func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	})
	return p.waitErr
}

// Exited reports whether a Wait has seen the process end.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill ends the process (ours, by PID) if it still runs.
func (p *Proc) Kill() {
	if !p.Exited() && p.cmd.Process != nil {
		p.cmd.Process.Kill()
	}
}

// Pid is the process's ID. "ip netns exec" and taskset exec what they
// run, so it is also the PID of the program at the end of argv.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process (ours, by PID) if it still runs.
func (p *Proc) Signal(sig os.Signal) error {
	if p.Exited() {
		return os.ErrProcessDone
	}
	return p.cmd.Process.Signal(sig)
}

// Stderr is what the process wrote to stderr so far.
func (p *Proc) Stderr() string { return p.stderr.String() }

// Result waits for a helper's report, at most timeout (0: as long as it
// takes), decodes its result into v and reaps the helper. The role's error
// comes back as the error, with whatever result it reported.
func (p *Proc) Result(v any, timeout time.Duration) error {
	var rep report
	decoded := make(chan error, 1)
	go func() { decoded <- json.NewDecoder(p.out).Decode(&rep) }()
	var expired <-chan time.Time
	if timeout > 0 {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		expired = timer.C
	}
	var derr error
	select {
	case derr = <-decoded:
	case <-expired:
		p.Kill()
		p.Wait() // closes the pipe the decoder reads
		<-decoded
		derr = fmt.Errorf("no report within %v", timeout)
	}
	werr := p.Wait()
	if derr != nil {
		return fmt.Errorf("helper %s: %v (exit: %v) %s", p.role, derr, werr, p.Stderr())
	}
	if len(rep.Result) > 0 {
		if err := json.Unmarshal(rep.Result, v); err != nil {
			return fmt.Errorf("helper %s: result: %v", p.role, err)
		}
	}
	if rep.Err != "" {
		return fmt.Errorf("helper %s: %s", p.role, rep.Err)
	}
	return werr
}

// lockedBuffer is a bytes.Buffer that the process's stderr copier and
// Stderr's readers share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
