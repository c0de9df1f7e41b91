// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

// What the fault and vanishing-state tests share: a network with
// containers X and Y, the commands run on them, and the answers every
// state must give.

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/socksplice/socksplice/test/testenv"
)

// faultRun is a network of its own with a fresh pinDir and two
// containers, X (the one whose command is killed, or whose state
// vanishes) and Y (another one), with a view of the node's state.
type faultRun struct {
	t     *testing.T
	n     *testenv.Network
	x, y  *testenv.Container
	view  *stateView
	trace string
	// states are the clean run's state at each checkpoint; want, in a
	// fault run, the clean run's to compare with (nil in the clean run).
	states, want map[string][]string
	compared     int
}

func (r *faultRun) must(what string, err error) {
	r.t.Helper()
	if err != nil {
		r.t.Fatalf("%s: %v", what, err)
	}
}

func (r *faultRun) check(c *testenv.Container) error {
	return r.n.Socksplice(r.t, "CHECK", c, nil)
}

func (r *faultRun) gc(keep ...*testenv.Container) error {
	var valid []types.GCAttachment
	for _, c := range keep {
		valid = append(valid, types.GCAttachment{ContainerID: c.ID, IfName: "eth0"})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return r.n.CNI.GCNetworkList(ctx, r.n.List, &libcni.GCArgs{ValidAttachments: valid})
}

func (r *faultRun) add(c *testenv.Container) error {
	_, err := r.n.Add(r.t, c)
	return err
}

// afterKill checks the node's answers right after a kill: CNI STATUS
// succeeds and `socksplice status` answers or fails cleanly (no panic).
func (r *faultRun) afterKill() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.n.CNI.GetStatusNetworkList(ctx, r.n.List); err != nil {
		r.t.Errorf("STATUS after the kill: %v", err)
	}
	cmd := exec.Command(testenv.PluginBinary(r.t), "status", r.n.PinDir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && (!errors.As(err, &ee) || ee.ExitCode() != 1 || strings.Contains(string(out), "panic")) {
		r.t.Errorf("socksplice status after the kill: %v\n%s", err, out)
	}
}
