// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package engine

import (
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

// Decide picks the engine for mode. o may be nil only for mode off. For
// auto it runs the behavioural self-test once per node (exe runs the child)
// and caches the verdict in the node's meta map.
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
		why := "this plugin build has no splice engine yet"
		if !f.SpliceKfunc {
			why = "the kernel has no " + SpliceKfunc + " kfunc (the socksplice kernel module is not loaded)"
		}
		return Decision{}, &ErrUnavailable{Splice, why}
	case Auto, "":
	default:
		return Decision{}, fmt.Errorf("unknown mode %q", mode)
	}

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
