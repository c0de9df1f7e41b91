// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package agent is `socksplice agent`, the DaemonSet's long-running main
// process: it runs the node installer (a hook, see Install) and serves
// Prometheus metrics read from the node's pinned maps at scrape time,
// with /readyz and /healthz, until its context ends.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/socksplice/socksplice/pkg/counters"
	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/pkg/node"
)

// DefaultListen is where the agent serves unless told otherwise.
const DefaultListen = ":9965"

// Options configure the agent.
type Options struct {
	Listen  string // host:port for /metrics, /readyz and /healthz
	PinDir  string // the node's pin directory (conf.DefaultPinDir in production)
	Version string // the binary's build version, for socksplice_build_info
	// ModuleCounters is the splice module's counters directory;
	// empty: /sys/module/socksplice/counters.
	ModuleCounters string
	// Logf, if set, hears where the agent serves (the address, with the
	// port chosen for ":0").
	Logf func(format string, a ...any)
}

// Install is the node installer the agent runs next to its HTTP server,
// nil for none.
//
// MERGE HOOK (issue 15, item 5): wire pkg/install here, e.g. in
// plugin/main.go before agent.Run:
//
//	agent.Install = func(ctx context.Context, ready func()) error {
//		return install.Run(ctx, install.Options{..., Ready: ready})
//	}
//
// It must run until ctx ends (it keeps the conflist in sync) and call
// ready once its first pass is done: until then /readyz says 503. A
// non-nil error other than ctx's ends the agent with that error.
var Install func(ctx context.Context, ready func()) error

// Agent serves one node's metrics and health.
type Agent struct {
	opts      Options
	installed atomic.Bool // the installer's first pass is done (or there is none)
	reg       *prometheus.Registry
}

// New returns an agent; its collector reads opts.PinDir at every scrape.
func New(opts Options) *Agent {
	if opts.ModuleCounters == "" {
		opts.ModuleCounters = moduleCountersDir
	}
	a := &Agent{opts: opts, reg: prometheus.NewRegistry()}
	a.reg.MustRegister(&collector{pinDir: opts.PinDir, version: opts.Version, moduleDir: opts.ModuleCounters,
		probe: sync.OnceValue(engine.Probe)})
	if Install == nil {
		a.installed.Store(true)
	}
	return a
}

// Handler serves /metrics, /readyz and /healthz.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	// ContinueOnError: a map that cannot be read costs its series, not
	// the whole scrape; the error is logged in the response's place.
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Ready says why the agent is not ready, or nil. It is ready once the
// installer's first pass is done and the node's pins can be read, or
// when there are none yet: no container was added on this node, so there
// is nothing to read, and the metrics say so (socksplice_pins_loaded 0).
func (a *Agent) Ready() error {
	if !a.installed.Load() {
		return errors.New("the installer has not finished its first pass")
	}
	o, err := node.OpenUnlocked(a.opts.PinDir)
	if errors.Is(err, node.ErrNotLoaded) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pins under %s: %w", a.opts.PinDir, err)
	}
	defer o.Close()
	if _, err := counters.Read(o.Counters); err != nil {
		return err
	}
	return nil
}

// Serve serves on ln, runs the installer hook if set, and on ctx's end
// shuts the server down gracefully (in-flight scrapes finish, at most 5 s).
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if Install != nil {
		go func() {
			err := Install(ctx, func() { a.installed.Store(true) })
			if err != nil && ctx.Err() == nil {
				cancel(fmt.Errorf("installer: %w", err))
			}
		}()
	}
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shut, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	err := srv.Shutdown(shut)
	if cause := context.Cause(ctx); !errors.Is(cause, context.Canceled) {
		return cause // the installer failed
	}
	return err
}

// Run listens on opts.Listen and serves until ctx ends (SIGTERM in
// production: the caller's signal.NotifyContext).
func Run(ctx context.Context, opts Options) error {
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return err
	}
	if opts.Logf != nil {
		opts.Logf("agent: serving /metrics, /readyz and /healthz on %s for %s", ln.Addr(), opts.PinDir)
	}
	return New(opts).Serve(ctx, ln)
}
