// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

// The CPU time of processes the benchmark does not build itself (sockperf),
// read from /proc/PID/stat: a server while it runs, a client after it
// exited and before it is reaped.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/test/testenv"
)

// userHZ is the unit of /proc/PID/stat's times: USER_HZ, 100 on every
// architecture Go runs Linux on (sysconf(_SC_CLK_TCK) would need cgo).
const userHZ = 100

// procCPU is what the benchmark reads from /proc/PID/stat.
type procCPU struct {
	Comm  string
	State byte // R, S, Z, ...
	// UserS and SysS are the process's user and system seconds, all its
	// threads included (utime, stime).
	UserS, SysS float64
}

// parseProcStat reads /proc/PID/stat's text. The command is in
// parentheses and may hold spaces and parentheses itself, so the fields
// are counted from the last ')'.
func parseProcStat(s string) (procCPU, error) {
	var p procCPU
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return p, fmt.Errorf("/proc/PID/stat: no (comm) in %q", s)
	}
	p.Comm = s[open+1 : end]
	// After the command: state(3) ppid pgrp session tty_nr tpgid flags
	// minflt cminflt majflt cmajflt utime(14) stime(15) ...
	f := strings.Fields(s[end+1:])
	if len(f) < 13 || len(f[0]) != 1 {
		return p, fmt.Errorf("/proc/PID/stat: %d fields after the command in %q", len(f), s)
	}
	p.State = f[0][0]
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return p, fmt.Errorf("/proc/PID/stat: utime/stime: %v", err)
	}
	p.UserS, p.SysS = float64(ut)/userHZ, float64(st)/userHZ
	return p, nil
}

// readProcCPU reads pid's stat and checks that it is the program comm,
// so that a wrapper that forked instead of exec'ing is not measured in
// its place.
func readProcCPU(pid int, comm string) (procCPU, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procCPU{}, err
	}
	p, err := parseProcStat(string(b))
	if err == nil && comm != "" && p.Comm != comm {
		err = fmt.Errorf("PID %d is %q, not %q", pid, p.Comm, comm)
	}
	return p, err
}

// waitExited blocks until the child pid has exited, without reaping it:
// its /proc entry, times included, stays until the Wait that reaps it.
func waitExited(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return err
		}
	}
}

// runMeasured runs argv in c to completion and returns its stdout; a
// process still running after timeout is killed. With comm, it also
// returns the CPU time of that program (argv's last exec), read from its
// /proc/PID/stat between its exit and its reaping.
//
// running, when set, is called with the PID once the process started and
// may watch it while it runs (it returns before the process is reaped).
func runMeasured(t testenv.T, c *testenv.Container, argv []string, comm string, timeout time.Duration, running func(pid int)) (string, procCPU, error) {
	var out bytes.Buffer
	p, err := c.Exec(t, argv, func(cmd *exec.Cmd) error {
		cmd.Stdout = &out
		cmd.WaitDelay = 2 * time.Second
		return nil
	})
	if err != nil {
		return "", procCPU{}, err
	}
	done := make(chan error, 1)
	go func() { done <- waitExited(p.Pid()) }()
	if running != nil {
		running(p.Pid())
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var cpu procCPU
	select {
	case err = <-done:
		if err == nil && comm != "" {
			cpu, err = readProcCPU(p.Pid(), comm)
		}
	case <-timer.C:
		p.Kill()
		<-done
		err = fmt.Errorf("timed out after %v", timeout)
	}
	if werr := p.Wait(); err == nil {
		err = werr
	}
	if err != nil {
		return out.String(), cpu, fmt.Errorf("%s: %v: %s", argv[0], err, lastLines(out.String()+p.Stderr(), 5))
	}
	return out.String(), cpu, nil
}

// socketFDs counts pid's open sockets.
func socketFDs(pid int) (int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n, nil
}

// waitSockets polls pid's socket count until ok accepts it, at most
// timeout, and returns the count it accepted.
func waitSockets(pid int, ok func(int) bool, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		n, err := socketFDs(pid)
		if err != nil {
			return n, err
		}
		if ok(n) {
			return n, nil
		}
		if time.Now().After(deadline) {
			return n, fmt.Errorf("%d sockets open after %v", n, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitProgram polls until pid runs the program comm (a wrapper exec'd
// it), at most timeout.
func waitProgram(pid int, comm string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := readProcCPU(pid, comm)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// inSyscall reports whether pid is blocked in the system call nr
// (/proc/PID/syscall starts with its number).
func inSyscall(pid, nr int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 0 && f[0] == strconv.Itoa(nr)
}
