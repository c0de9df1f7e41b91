// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package status gathers what an operator needs to see on one node: the
// objects' stamp, the cached auto verdicts, every attachment with its
// engine and its container's counters, per-network sums, the self-test's
// own counters kept apart, and the node-wide counters. `socksplice
// status` prints it and the agent's metrics are read from it.
package status

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/socksplice/socksplice/pkg/counters"
	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/pkg/enroll"
	"github.com/socksplice/socksplice/pkg/node"
)

// Attachment is one (network, container, interface) that ADD recorded.
// Its field names are the JSON keys status has always printed.
type Attachment struct {
	Network, ContainerID, IfName string
	NetnsCookie                  uint64
	Engine                       string
	// Counters of the container's netns; nil with engine off, or on a
	// node that has no per-netns counters yet. Attachments that share a
	// netns (one container in two networks) show the same counters.
	Counters *counters.NS `json:"Counters,omitempty"`
}

// Network sums the counters of one network's containers.
type Network struct {
	Name string `json:"name"`
	// Attachments by engine (sockmap, splice, off).
	Attachments map[string]int `json:"attachments"`
	// Counters: its live containers' plus Retired. A netns in several
	// networks counts in each of them.
	Counters counters.NS `json:"counters"`
	// Retired: what its containers counted before they were deleted, so
	// that Counters never goes down.
	Retired counters.NS `json:"retired"`
}

// Meta is the node's metadata and the auto verdicts that still hold.
type Meta struct {
	node.Meta
	engine.Verdicts
}

// Status is what `socksplice status` prints as JSON.
type Status struct {
	PinDir string `json:"pinDir"`
	// Loaded: the node's objects are pinned under PinDir. Where they
	// are not, no container was added with an engine: the kernel probe
	// and the engines' *Unavailable say why a mode would not run.
	Loaded        bool         `json:"loaded"`
	Meta          Meta         `json:"meta"`
	SpliceProgram bool         `json:"spliceProgram"` // the splice engine's program is pinned
	Attachments   []Attachment `json:"attachments"`
	Networks      []Network    `json:"networks"`
	// SelfTest: the self-test's own connections (every run on this
	// node), which count in no attachment or network.
	SelfTest counters.NS `json:"selfTest"`
	// Counters are node-wide: every engine and container, and the
	// self-test, except that the self-test's redirected messages and
	// bytes are in selftestRedirect* instead of redirect*. Only here:
	// what is counted per message (redirected messages and bytes,
	// tcpMsgs, lookupMiss).
	Counters counters.Totals `json:"counters"`
	Kernel   engine.Features `json:"kernel"`
	// Why mode auto cannot pick the splice engine here (and mode
	// splice fails ADD): empty where it can.
	SpliceUnavailable string `json:"spliceUnavailable,omitempty"`
	// Why the sockmap engine cannot run on this kernel (auto runs plain
	// TCP where neither engine can, mode sockmap fails ADD): empty where
	// it can (auto still needs its self-test to pass).
	SockmapUnavailable string `json:"sockmapUnavailable,omitempty"`
}

// NotLoaded is the status of a node whose objects are not pinned under
// dir: what the kernel offers and why the engines could not run.
func NotLoaded(dir string, f engine.Features) *Status {
	s := &Status{PinDir: dir, Kernel: f, Attachments: []Attachment{}, Networks: []Network{}}
	s.unavailable(f, nil)
	return s
}

// unavailable fills in why each engine cannot run.
func (s *Status) unavailable(f engine.Features, o *node.Objects) {
	var unavail *engine.ErrUnavailable
	if _, err := engine.Decide(engine.Splice, f, o, ""); errors.As(err, &unavail) {
		s.SpliceUnavailable = unavail.Why
	}
	if err := f.SockmapReady(); err != nil {
		s.SockmapUnavailable = err.Error()
	}
}

// Collect reads the node's status from its objects; f is the kernel probe
// (engine.Probe()).
func Collect(o *node.Objects, f engine.Features) (*Status, error) {
	meta, err := o.ReadMeta()
	if err != nil {
		return nil, err
	}
	verdicts, err := engine.Cached(o, f.Kernel)
	if err != nil {
		return nil, err
	}
	s := &Status{PinDir: o.Dir, Loaded: true, Meta: Meta{meta, verdicts}, SpliceProgram: o.Splice != nil, Kernel: f,
		Attachments: []Attachment{}, Networks: []Network{}}
	s.unavailable(f, o)
	if s.Counters, err = counters.Read(o.Counters); err != nil {
		return nil, err
	}
	if err := s.collectAttachments(o); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Status) collectAttachments(o *node.Objects) error {
	recs, err := enroll.Records(o)
	if err != nil {
		return err
	}
	perNS, err := counters.ReadNS(o)
	if err != nil {
		return err
	}
	retired, err := counters.ReadRetired(o)
	if err != nil {
		return err
	}
	s.SelfTest = retired[counters.SelfTest]
	delete(retired, counters.SelfTest)

	nets := map[string]*Network{}
	network := func(name string) *Network {
		if n := nets[name]; n != nil {
			return n
		}
		n := &Network{Name: name, Attachments: map[string]int{}}
		nets[name] = n
		return n
	}
	// A netns counts once per network, however many interfaces it has there.
	seen := map[string]map[uint64]bool{}
	for k, r := range recs {
		a := Attachment{NetnsCookie: r.Netns, Engine: r.Engine()}
		a.Network, a.ContainerID, a.IfName, _ = r.Identity(k)
		n := network(a.Network)
		n.Attachments[a.Engine]++
		if c, ok := perNS[r.Netns]; ok && a.Engine != engine.Off {
			a.Counters = &c
			if seen[a.Network] == nil {
				seen[a.Network] = map[uint64]bool{}
			}
			if !seen[a.Network][r.Netns] {
				seen[a.Network][r.Netns] = true
				n.Counters.Add(c)
			}
		}
		s.Attachments = append(s.Attachments, a)
	}
	for name, c := range retired {
		n := network(name)
		n.Retired = c
		n.Counters.Add(c)
	}
	slices.SortFunc(s.Attachments, func(a, b Attachment) int {
		return cmp.Or(cmp.Compare(a.Network, b.Network), cmp.Compare(a.ContainerID, b.ContainerID),
			cmp.Compare(a.IfName, b.IfName))
	})
	for _, n := range nets {
		s.Networks = append(s.Networks, *n)
	}
	slices.SortFunc(s.Networks, func(a, b Network) int { return cmp.Compare(a.Name, b.Name) })
	return nil
}

// WriteTable prints the status for people: the engine verdicts, one line
// per attachment and per network with its counters, then the self-test's
// and the node-wide ones. Scripts should read the JSON.
func (s *Status) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if !s.Loaded {
		fmt.Fprintf(tw, "pinDir %s, kernel %s: no objects loaded (no container was added with an engine here)\n", s.PinDir, s.Kernel.Kernel)
	} else {
		fmt.Fprintf(tw, "pinDir %s, kernel %s, objects loaded %s\n", s.PinDir, s.Kernel.Kernel, s.Meta.LoadedAt.Format(time.RFC3339))
	}
	if s.SockmapUnavailable != "" {
		fmt.Fprintf(tw, "sockmap engine unavailable: %s\n", s.SockmapUnavailable)
	}
	for _, v := range []struct {
		name string
		t    *engine.SelfTest
	}{{"sockmap", s.Meta.SelfTest}, {"splice", s.Meta.SpliceTest}} {
		if v.t != nil {
			fmt.Fprintf(tw, "auto, %s self-test: %s\n", v.name, v.t.Reason)
		}
	}
	if s.SpliceUnavailable != "" {
		fmt.Fprintf(tw, "splice engine unavailable: %s\n", s.SpliceUnavailable)
	}
	if !s.Loaded {
		return tw.Flush()
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "NETWORK\tCONTAINER\tIFNAME\tENGINE\tPAIRED\tFALLBACKS")
	for _, a := range s.Attachments {
		paired, fb := "-", "-"
		if a.Counters != nil {
			paired, fb = strconv.FormatUint(a.Counters.Paired, 10), fallbacks(*a.Counters)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Network, a.ContainerID, a.IfName, a.Engine, paired, fb)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "NETWORK\tATTACHMENTS\tPAIRED\tFALLBACKS")
	for _, n := range s.Networks {
		var engs []string
		for e, k := range n.Attachments {
			engs = append(engs, fmt.Sprintf("%s=%d", e, k))
		}
		slices.Sort(engs)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", n.Name, strings.Join(engs, " "), n.Counters.Paired, fallbacks(n.Counters))
	}
	fmt.Fprintf(tw, "(self-test)\t\t%d\t%s\n", s.SelfTest.Paired, fallbacks(s.SelfTest))
	c := s.Counters
	fmt.Fprintf(tw, "\nnode-wide, self-test included: paired %d (splice %d), tcpMsgs %d, lookupMiss %d\n",
		c.Paired, c.SplicePaired, c.TcpMsgs, c.LookupMiss)
	fmt.Fprintf(tw, "sockmap redirected %d bytes in %d messages; the self-test %d bytes in %d messages\n",
		c.RedirectBytes, c.RedirectMsgs, c.SelftestRedirectBytes, c.SelftestRedirectMsgs)
	return tw.Flush()
}

// fallbacks lists the non-zero fallback counters, "-" if none.
func fallbacks(c counters.NS) string {
	var out []string
	for name, v := range c.Fields() {
		if name != "paired" && v != 0 {
			out = append(out, fmt.Sprintf("%s=%d", name, v))
		}
	}
	if len(out) == 0 {
		return "-"
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}
