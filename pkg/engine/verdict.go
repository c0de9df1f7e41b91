// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cilium/ebpf"

	"github.com/socksplice/socksplice/pkg/bpffs"
	"github.com/socksplice/socksplice/pkg/crashpoint"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/pkg/selftest"
)

// SelfTest is one engine's cached self-test verdict. It holds only for
// what it was measured on: the kernel release, the node's object stamp and
// the engine's sock_ops program. A new build, a reinstall or a (re)loaded
// splice program (a module loaded or replaced since: another build of it
// may behave differently on the same kernel) makes it stale, with nobody
// having to forget it.
type SelfTest struct {
	Kernel  string         `json:"kernel"`
	Stamp   string         `json:"stamp"`
	Program ebpf.ProgramID `json:"program"`
	Engine  string         `json:"engine"` // the engine tested if it passed, else "off"
	Reason  string         `json:"reason"`
	Details []string       `json:"details,omitempty"`
	At      time.Time      `json:"at"`
}

// Verdicts are the cached self-test verdicts, kept in the node's meta map
// under node.MetaEngine.
type Verdicts struct {
	SelfTest   *SelfTest `json:"selfTest,omitempty"` // the sockmap engine's
	SpliceTest *SelfTest `json:"spliceTest,omitempty"`
	// Noticed holds the decisions already told to the operator (see
	// FirstNotice), newest last.
	Noticed []string `json:"noticed,omitempty"`
}

// maxNoticed bounds Noticed: the meta document has a fixed size.
const maxNoticed = 16

func (v *Verdicts) of(eng string) **SelfTest {
	if eng == Splice {
		return &v.SpliceTest
	}
	return &v.SelfTest
}

// basis is what a verdict of engine eng would be measured on now.
func basis(o *node.Objects, eng, kernel string) (SelfTest, error) {
	b := SelfTest{Kernel: kernel}
	meta, err := o.ReadMeta()
	if err != nil {
		return b, fmt.Errorf("reading node metadata: %w", err)
	}
	b.Stamp = meta.Stamp
	p := o.SockOps
	if eng == Splice {
		p = o.Splice
	}
	if p != nil {
		info, err := p.Info()
		if err != nil {
			return b, err
		}
		b.Program, _ = info.ID()
	}
	return b, nil
}

func (st *SelfTest) holds(b SelfTest) bool {
	return st != nil && b.Program != 0 && st.Kernel == b.Kernel && st.Stamp == b.Stamp && st.Program == b.Program
}

// Cached returns the node's verdicts that still hold on kernel; stale ones
// are left out.
func Cached(o *node.Objects, kernel string) (Verdicts, error) {
	var v Verdicts
	if err := o.GetMeta(node.MetaEngine, &v); err != nil {
		return v, fmt.Errorf("reading self-test verdicts: %w", err)
	}
	for _, eng := range []string{Sockmap, Splice} {
		b, err := basis(o, eng, kernel)
		if err != nil {
			return v, err
		}
		if st := v.of(eng); !(*st).holds(b) {
			*st = nil
		}
	}
	return v, nil
}

// Verdict is the self-test's answer for one engine (Sockmap or Splice):
// that engine if the node can run it and it passes, else off. The test runs
// once per node, kernel and program; the verdict is cached in the node's
// meta map.
func Verdict(eng string, f Features, o *node.Objects, exe string) (Decision, error) {
	var ready error
	switch eng {
	case Sockmap:
		ready = f.SockmapReady()
	case Splice:
		ready = spliceReady(f, o)
	default:
		return Decision{}, fmt.Errorf("no self-test for engine %q", eng)
	}
	if ready != nil {
		return Decision{Engine: Off, Reason: eng + " engine unusable: " + ready.Error()}, nil
	}
	b, err := basis(o, eng, f.Kernel)
	if err != nil {
		return Decision{}, err
	}
	var v Verdicts
	if err := o.GetMeta(node.MetaEngine, &v); err != nil {
		return Decision{}, fmt.Errorf("reading self-test verdicts: %w", err)
	}
	if st := *v.of(eng); st.holds(b) {
		return Decision{Engine: st.Engine, Reason: st.Reason, Detail: st.Details, Cached: true}, nil
	}
	checks, err := selftest.Run(o, exe, eng == Splice)
	if err != nil {
		// A self-test that cannot run proves nothing: stay off this
		// engine and do not cache, so the next ADD tries again.
		return Decision{Engine: Off, Reason: eng + " self-test failed to run: " + err.Error()}, nil
	}
	r := selftest.Judge(checks, eng)
	st := b
	st.Engine, st.Reason, st.Details, st.At = Off, r.Reason, r.Details, time.Now().UTC()
	if r.Passed {
		st.Engine = eng
	}
	*v.of(eng) = &st
	if err := o.PutMeta(node.MetaEngine, v); err != nil {
		return Decision{}, fmt.Errorf("caching self-test result: %w", err)
	}
	crashpoint.Done(crashpoint.EngineVerdict)
	return Decision{Engine: st.Engine, Reason: st.Reason, Detail: st.Details}, nil
}

// FirstNotice reports whether decision d for mode is new on this node: the
// first ADD that gets a decision tells the operator, the next thousand stay
// quiet. It remembers the decision as told.
func FirstNotice(o *node.Objects, mode string, d Decision) (bool, error) {
	key := noticeKey(mode, d)
	var v Verdicts
	if err := o.GetMeta(node.MetaEngine, &v); err != nil {
		return false, err
	}
	if slices.Contains(v.Noticed, key) {
		return false, nil
	}
	v.Noticed = append(v.Noticed, key)
	if n := len(v.Noticed); n > maxNoticed {
		v.Noticed = v.Noticed[n-maxNoticed:]
	}
	if err := o.PutMeta(node.MetaEngine, v); err != nil {
		return false, err
	}
	crashpoint.Done(crashpoint.EngineNotice)
	return true, nil
}

func noticeKey(mode string, d Decision) string {
	sum := sha256.Sum256([]byte(mode + "\x00" + d.Engine + "\x00" + d.Reason))
	return hex.EncodeToString(sum[:8])
}

// NoticesDir is where FirstNoticeIn remembers, under the pin directory.
const NoticesDir = "notices"

// FirstNoticeIn is FirstNotice for a node whose objects are not loaded
// because the kernel rules out every engine: it remembers the decision
// as an empty directory under the pin directory (on bpffs, so it lasts as
// long as pins would: until reboot or purge).
func FirstNoticeIn(pinDir, mode string, d Decision) (bool, error) {
	if err := bpffs.Ensure(pinDir); err != nil {
		return false, err
	}
	dir := filepath.Join(pinDir, NoticesDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, err
	}
	err := os.Mkdir(filepath.Join(dir, noticeKey(mode, d)), 0o700)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	return err == nil, err
}
