// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package testenv

// Helpers that run inside a real runtime's container (podman exec, ctr
// task exec, crictl exec): the runtime starts the helper binary there, so
// the parent only supplies the command and reads the same report.

import (
	"bufio"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// StartHelperCmd starts cmd, which runs a helper somewhere the test binary
// cannot go itself, and reads its report like StartHelper's. When ready
// is set it returns once the role called ready. cmd (the runtime's client
// process, ours) is killed by PID at cleanup if it still runs; what it
// started inside the container goes with the container.
func StartHelperCmd(t T, cmd *exec.Cmd, role string, ready bool) (*Proc, error) {
	t.Helper()
	p := &Proc{cmd: cmd, role: role, done: make(chan struct{})}
	cmd.Stderr = &p.stderr
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.out = bufio.NewReader(stdout)
	t.Cleanup(func() {
		p.Kill()
		go p.Wait()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	})
	if ready {
		line, err := p.out.ReadString('\n')
		if strings.TrimSpace(line) != readyLine {
			p.Kill()
			p.Wait()
			return nil, fmt.Errorf("helper %s (%s) did not get ready: %q %v %s", role, cmd, line, err, p.Stderr())
		}
	}
	return p, nil
}

// ExchangeCmd is Exchange for helpers a runtime starts: srv and cli make
// the command that runs the helper with the given environment (see
// HelperEnv) in the server's and the client's container. Each side's
// received bytes are checked against the other's seed.
func ExchangeCmd(t T, srv, cli func(env []string) *exec.Cmd, server, client Xfer) (s, c XferResult, err error) {
	t.Helper()
	start := func(mk func([]string) *exec.Cmd, x Xfer) (*Proc, error) {
		if x.Timeout == 0 {
			x.Timeout = 120 * time.Second
		}
		env, err := HelperEnv("xfer", x)
		if err != nil {
			return nil, err
		}
		return StartHelperCmd(t, mk(env), "xfer", x.Role == "server")
	}
	sp, err := start(srv, server)
	if err != nil {
		return s, c, fmt.Errorf("server: %w", err)
	}
	cp, err := start(cli, client)
	if err != nil {
		return s, c, fmt.Errorf("client: %w", err)
	}
	return awaitExchange(sp, cp, server, client, "client->server", "server->client")
}
