// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/socksplice/socksplice/conf"
	"github.com/socksplice/socksplice/pkg/agent"
	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/pkg/install"
	"github.com/socksplice/socksplice/pkg/kmod"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/pkg/status"
)

// nodeCommands are the operator's subcommands: putting socksplice on a
// node, and seeing what it does there; each returns the exit status.
var nodeCommands = map[string]func(args []string) int{
	"status":    printStatus,
	"agent":     runAgent,
	"install":   cmdInstall,
	"uninstall": cmdUninstall,
	"manifest":  cmdManifest,
	"module":    cmdModule,
}

func newFlags(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("socksplice "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: socksplice %s [flags]\n%s\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses and rejects positional arguments; 0 means go on.
func parseFlags(fs *flag.FlagSet, args []string) int {
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2
	}
	return -1
}

func cmdInstall(args []string) int {
	o := install.Defaults()
	fs := newFlags("install", "Copies this binary into the CNI bin dir and writes a conflist that chains\nsocksplice after the node's primary config; with --watch, keeps it in sync\nuntil SIGINT/SIGTERM.")
	o.RegisterFlags(fs)
	watch := fs.Bool("watch", false, "keep the conflist in sync with the primary until stopped")
	if rc := parseFlags(fs, args); rc >= 0 {
		return rc
	}
	if !*watch {
		if _, err := install.Install(o); err != nil {
			fmt.Fprintf(os.Stderr, "socksplice install: %v\n", err)
			return 1
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := install.Run(ctx, o, nil); err != nil {
		fmt.Fprintf(os.Stderr, "socksplice install: %v\n", err)
		return 1
	}
	return 0
}

func cmdUninstall(args []string) int {
	o := install.Defaults()
	fs := newFlags("uninstall", "Removes socksplice's conflist; with --purge also the binary and the pins\n(only once no pod created with it remains: their DEL needs the binary).")
	o.RegisterFlags(fs)
	if rc := parseFlags(fs, args); rc >= 0 {
		return rc
	}
	if err := install.Uninstall(o); err != nil {
		fmt.Fprintf(os.Stderr, "socksplice uninstall: %v\n", err)
		return 1
	}
	return 0
}

func cmdManifest(args []string) int {
	o := install.ManifestDefaults("socksplice/socksplice:" + buildVersion)
	fs := newFlags("manifest", "Prints the Kubernetes manifests (kubectl apply -f -).")
	fs.StringVar(&o.Image, "image", o.Image, "the socksplice image")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "the namespace (created unless kube-system)")
	fs.StringVar(&o.Mode, "mode", o.Mode, "the plugin's mode on every node")
	fs.StringVar(&o.PinDir, "pin-dir", o.PinDir, "the plugin's pinDir")
	fs.IntVar(&o.Port, "port", o.Port, "the agent's /metrics and /readyz port")
	fs.BoolVar(&o.UninstallOnExit, "uninstall-on-exit", o.UninstallOnExit, "agents remove their conflist when stopped (apply this before deleting)")
	if rc := parseFlags(fs, args); rc >= 0 {
		return rc
	}
	m, err := install.Manifest(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "socksplice manifest: %v\n", err)
		return 2
	}
	fmt.Print(m)
	return 0
}

// cmdModule loads the splice module (the DaemonSet's init container). It
// exits 0 whatever happened: the module is optional.
func cmdModule(args []string) int {
	var o kmod.Options
	fs := newFlags("module", "Loads the splice kernel module: the packaged one (socksplice-dkms), or one\nbuilt from --source against the node's headers. Reports which; exits 0 even\nwhen unavailable.")
	fs.StringVar(&o.Source, "source", "", "module source laid out as the repository's kernel/ (module/, include/)")
	fs.StringVar(&o.ModulesDir, "modules-dir", "/lib/modules", "the node's /lib/modules")
	report := fs.String("report", "", "also write the result as JSON to this file")
	if rc := parseFlags(fs, args); rc >= 0 {
		return rc
	}
	r := kmod.Load(context.Background(), o)
	fmt.Println(r)
	if *report != "" {
		b, _ := json.Marshal(r)
		if err := os.WriteFile(*report, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "socksplice module: %v\n", err)
		}
	}
	return 0
}

// printStatus serves operators ("socksplice status [--human] [pinDir]"):
// the node's stamp, the cached auto verdicts, every attachment with its
// container's counters, per-network sums, the self-test's counters apart
// and the node-wide ones; JSON unless --human.
func printStatus(args []string) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	human := fs.Bool("human", false, "print tables for people instead of JSON")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: socksplice status [--human] [pinDir]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	dir := conf.DefaultPinDir
	if fs.NArg() > 0 {
		dir = fs.Arg(0)
	}
	var st *status.Status
	o, err := node.Open(dir)
	switch {
	case errors.Is(err, node.ErrNotLoaded):
		st = status.NotLoaded(dir, engine.Probe())
	case err != nil:
		fmt.Fprintf(os.Stderr, "socksplice: %s: %v\n", dir, err)
		return 1
	default:
		defer o.Close()
		if st, err = status.Collect(o, engine.Probe()); err != nil {
			fmt.Fprintf(os.Stderr, "socksplice: %v\n", err)
			return 1
		}
	}
	if *human {
		if err := st.WriteTable(os.Stdout); err != nil {
			return 1
		}
		return 0
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(st); err != nil {
		return 1
	}
	return 0
}

// runAgent is "socksplice agent [--listen ADDR] [installer flags]", the
// DaemonSet's main process: it runs the installer (pkg/install, kept in
// sync until stopped) and serves metrics, /readyz and /healthz until
// SIGTERM.
func runAgent(args []string) int {
	o := install.Defaults()
	fs := newFlags("agent", "Installs socksplice on the node and keeps its conflist in sync (as install\n--watch), and serves /metrics, /readyz and /healthz, until SIGINT/SIGTERM.")
	listen := fs.String("listen", agent.DefaultListen, "address to serve /metrics, /readyz and /healthz on")
	o.RegisterFlags(fs) // --pin-dir among them: the pins the metrics read
	if rc := parseFlags(fs, args); rc >= 0 {
		return rc
	}
	// Ready after the installer's first sync, chained or not: a node
	// whose primary CNI is not there yet must not stall a rollout; its
	// state is in the installer's log.
	agent.Install = func(ctx context.Context, ready func()) error {
		return install.Run(ctx, o, func(install.State) { ready() })
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := agent.Run(ctx, agent.Options{Listen: *listen, PinDir: o.PinDir, Version: buildVersion, Logf: logf}); err != nil {
		logf("agent: %v", err)
		return 1
	}
	logf("agent: stopped")
	return 0
}
