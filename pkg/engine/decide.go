// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package engine

import (
	"errors"
	"fmt"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/node"
)

// Engine names, as in the network config's "mode".
const (
	Off     = "off"
	Sockmap = "sockmap"
	Splice  = "splice"
	Auto    = "auto"
)

// Decision is the engine a container gets and why.
type Decision struct {
	Engine string   `json:"engine"`
	Reason string   `json:"reason"`
	Cached bool     `json:"cached,omitempty"` // the self-test result came from the node cache
	Detail []string `json:"detail,omitempty"`
}

// ErrUnavailable wraps a forced engine the node cannot run.
type ErrUnavailable struct{ Engine, Why string }

func (e *ErrUnavailable) Error() string {
	return fmt.Sprintf("engine %q is not available on this node: %s", e.Engine, e.Why)
}

// Precheck decides what the kernel probe alone can, before the node's
// objects are loaded or anything is created: a forced engine the kernel
// cannot run fails (ErrUnavailable), and auto where neither engine can
// run is off (a kernel without sockmap, without BTF, a host without
// cgroup v2). final is false where the node's objects must decide: the
// self-tests of auto, the splice program of mode splice. A final engine
// other than off still needs them loaded.
func Precheck(mode string, f Features) (d Decision, final bool, err error) {
	switch mode {
	case Off:
		return Decision{Engine: Off, Reason: "mode off"}, true, nil
	case Sockmap:
		if err := f.SockmapReady(); err != nil {
			return Decision{}, true, &ErrUnavailable{Sockmap, err.Error()}
		}
		return Decision{Engine: Sockmap, Reason: "forced by mode sockmap (known gaps: see README)"}, true, nil
	case Splice:
		if err := spliceReady(f, nil); err != nil {
			return Decision{}, true, &ErrUnavailable{Splice, err.Error()}
		}
		return Decision{}, false, nil
	case Auto, "":
		// The same words as Decide's once the self-tests ran.
		sp, sm := spliceReady(f, nil), f.SockmapReady()
		if sp != nil && sm != nil {
			return Decision{Engine: Off, Reason: "splice engine not available (" + sp.Error() + "); sockmap engine unusable: " + sm.Error()}, true, nil
		}
		return Decision{}, false, nil
	}
	return Decision{}, true, fmt.Errorf("unknown mode %q", mode)
}

// Decide picks the engine for mode. o may be nil only for modes off and
// splice (then the kfuncs alone decide, as STATUS needs). Auto picks the
// splice engine if the node can run it and it passes its behavioural
// self-test, else sockmap if that passes its own, else off; each self-test
// runs once per node and kernel (exe runs the child) and its verdict is
// cached in the node's meta map.
func Decide(mode string, f Features, o *node.Objects, exe string) (Decision, error) {
	if d, final, err := Precheck(mode, f); final || err != nil {
		return d, err
	}
	if mode == Splice {
		if err := spliceReady(f, o); err != nil {
			return Decision{}, &ErrUnavailable{Splice, err.Error()}
		}
		return Decision{Engine: Splice, Reason: "forced by mode splice"}, nil
	}

	// Auto says why it did not pick splice, also where the module is
	// missing: that is what an operator installing it needs to read.
	var why string
	if err := spliceReady(f, o); err != nil {
		why = "splice engine not available (" + err.Error() + "); "
	} else {
		d, err := Verdict(Splice, f, o, exe)
		if err != nil || d.Engine == Splice {
			return d, err
		}
		why = "splice engine not used (" + d.Reason + "); "
	}
	d, err := Verdict(Sockmap, f, o, exe)
	d.Reason = why + d.Reason
	return d, err
}

// spliceReady returns why the splice engine cannot run, or nil. Without
// node objects (o nil) the kfuncs alone decide.
func spliceReady(f Features, o *node.Objects) error {
	if !f.BTF {
		// Without it nothing can tell the kfuncs: say what is missing.
		return f.SockmapReady()
	}
	if !f.SpliceKfunc && !f.SockOpsKfuncs {
		// The hook is told by a 6.15 kfunc in vmlinux's BTF: a kernel
		// with the hook backported (the project's test kernel) lacks it
		// and shows the hook only through the loaded module's kfuncs.
		return fmt.Errorf("kernel %s cannot call module kfuncs from sock_ops programs (needs 6.15), so the %s module cannot serve it; a kernel with that hook backported shows it only while the module is loaded (modprobe %s)", f.Kernel, sbpf.SpliceModule, sbpf.SpliceModule)
	}
	if !f.SpliceKfunc {
		return fmt.Errorf("the %s kernel module is not loaded (no %s kfunc): install socksplice-dkms, then modprobe %s", sbpf.SpliceModule, sbpf.SpliceKfuncPair, sbpf.SpliceModule)
	}
	// Also where a splice program is pinned: the module may have been
	// replaced by another release since.
	if f.SpliceABI != "" {
		return errors.New(f.SpliceABI)
	}
	// The splice program is loaded with the node's objects, the sockmap
	// engine's maps among them: it needs what they need.
	if err := f.SockmapReady(); err != nil {
		return err
	}
	if o != nil && o.Splice == nil {
		if o.SpliceErr != nil {
			return o.SpliceErr
		}
		return errors.New("the splice engine's program is not loaded on this node")
	}
	return nil
}
