// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package engine

import (
	"errors"
	"fmt"

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

// Decide picks the engine for mode. o may be nil only for modes off and
// splice (then the kfuncs alone decide, as STATUS needs). For auto it runs
// the sockmap behavioural self-test once per node (exe runs the child) and
// caches the verdict in the node's meta map.
func Decide(mode string, f Features, o *node.Objects, exe string) (Decision, error) {
	switch mode {
	case Off:
		return Decision{Engine: Off, Reason: "mode off"}, nil
	case Sockmap:
		if err := f.SockmapReady(); err != nil {
			return Decision{}, &ErrUnavailable{Sockmap, err.Error()}
		}
		return Decision{Engine: Sockmap, Reason: "forced by mode sockmap (known gaps: see README)"}, nil
	case Splice:
		if err := spliceReady(f, o); err != nil {
			return Decision{}, &ErrUnavailable{Splice, err.Error()}
		}
		return Decision{Engine: Splice, Reason: "forced by mode splice"}, nil
	case Auto, "":
	default:
		return Decision{}, fmt.Errorf("unknown mode %q", mode)
	}

	// The splice engine joins auto once it has a behavioural self-test of
	// its own; until then only an explicit "mode": "splice" selects it.
	return SockmapVerdict(f, o, exe)
}

// SockmapVerdict is what auto picks when the splice engine cannot run:
// sockmap if it passes the behavioural self-test, else off. The test runs
// once per node and kernel (exe runs the child); the verdict is cached in
// the node's meta map.
func SockmapVerdict(f Features, o *node.Objects, exe string) (Decision, error) {
	if err := f.SockmapReady(); err != nil {
		return Decision{Engine: Off, Reason: "sockmap engine unusable: " + err.Error()}, nil
	}
	meta, err := o.ReadMeta()
	if err != nil {
		return Decision{}, fmt.Errorf("reading node metadata: %w", err)
	}
	if st := meta.SelfTest; st != nil && st.Kernel == f.Kernel {
		return Decision{Engine: st.Engine, Reason: st.Reason, Detail: st.Details, Cached: true}, nil
	}
	st, err := RunSelfTest(o, exe, f.Kernel)
	if err != nil {
		// A self-test that cannot run proves nothing: stay on plain TCP
		// and do not cache, so the next ADD tries again.
		return Decision{Engine: Off, Reason: "self-test failed to run: " + err.Error()}, nil
	}
	meta.SelfTest = &st
	if err := o.WriteMeta(meta); err != nil {
		return Decision{}, fmt.Errorf("caching self-test result: %w", err)
	}
	return Decision{Engine: st.Engine, Reason: st.Reason, Detail: st.Details}, nil
}

// spliceReady returns why the splice engine cannot run, or nil. Without
// node objects (o nil) the kfuncs alone decide.
func spliceReady(f Features, o *node.Objects) error {
	if !f.SpliceKfunc {
		return fmt.Errorf("the kernel has no %s kfunc (the %s kernel module is not loaded)", SpliceKfunc, SpliceModule)
	}
	if o != nil && o.Splice == nil {
		if o.SpliceErr != nil {
			return o.SpliceErr
		}
		return errors.New("the splice engine's program is not loaded on this node")
	}
	return nil
}
