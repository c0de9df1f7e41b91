// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Command socksplice is a CNI chained plugin that pairs same-host TCP
// connections of enrolled containers and moves their payload through a
// short kernel path. It is thin: it parses, calls pkg, prints results.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/socksplice/socksplice/conf"
	"github.com/socksplice/socksplice/pkg/agent"
	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/pkg/enroll"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/pkg/selftest"
	"github.com/socksplice/socksplice/pkg/status"
)

// Plugin-specific CNI error codes (100 and up are ours).
const (
	ErrEngineUnavailable uint = 100 // a forced engine cannot run on this node
	ErrLoad              uint = 101 // loading or pinning the BPF objects failed
	ErrEnroll            uint = 102 // enrolling or attaching the container failed
)

var buildVersion = "dev"

func main() {
	selftest.MaybeRunChild()
	if len(os.Args) > 1 && os.Args[1] == "status" {
		os.Exit(printStatus(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		os.Exit(runAgent(os.Args[2:]))
	}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		GC:     cmdGC,
		Status: cmdStatus,
	}, version.PluginSupports(conf.SupportedVersions...), "socksplice "+buildVersion)
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "socksplice: "+format+"\n", a...)
}

// parse reads and validates the config; ADD and CHECK also need prevResult
// and a netns. Nothing is touched before this succeeds.
func parse(args *skel.CmdArgs, needPrev bool) (*conf.NetConf, *current.Result, error) {
	c, err := conf.Parse(args.StdinData)
	if err != nil {
		return nil, nil, err
	}
	if !needPrev {
		return c, nil, nil
	}
	if err := c.RequirePrevResult(); err != nil {
		return nil, nil, err
	}
	prev, err := current.NewResultFromResult(c.PrevResult)
	if err != nil {
		return nil, nil, types.NewError(types.ErrInvalidNetworkConfig, "prevResult: "+err.Error(), "")
	}
	if args.Netns == "" {
		return nil, nil, types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_NETNS: required for "+os.Getenv("CNI_COMMAND"), "")
	}
	return c, prev, nil
}

// containerAddrs returns the addresses prevResult gave the container's side.
func containerAddrs(prev *current.Result) []netip.Addr {
	var out []netip.Addr
	for _, ip := range prev.IPs {
		if ip.Interface != nil {
			i := *ip.Interface
			if i < 0 || i >= len(prev.Interfaces) || prev.Interfaces[i].Sandbox == "" {
				continue
			}
		}
		if a, ok := netip.AddrFromSlice(ip.Address.IP); ok {
			out = append(out, a.Unmap())
		}
	}
	return out
}

func attachment(c *conf.NetConf, args *skel.CmdArgs, prev *current.Result) enroll.Attachment {
	return enroll.Attachment{
		Network:     c.Name,
		ContainerID: args.ContainerID,
		IfName:      args.IfName,
		Netns:       args.Netns,
		Domain:      c.Domain(),
		Addrs:       containerAddrs(prev),
		CgroupPath:  c.RuntimeConfig.CgroupPath,
		Policy: enroll.Policy{
			Loopback:   c.Loopback,
			Ports:      c.PortSet(),
			BusyPollUs: uint32(c.BusyPollUs),
			RingKiB:    uint32(c.RingKiB),
		},
	}
}

func decide(c *conf.NetConf, o *node.Objects) (engine.Decision, error) {
	exe, err := os.Executable()
	if err != nil {
		return engine.Decision{}, types.NewError(types.ErrInternal, "locating own binary for the self-test", err.Error())
	}
	d, err := engine.Decide(string(c.Mode), engine.Probe(), o, exe)
	var unavail *engine.ErrUnavailable
	if errors.As(err, &unavail) {
		return d, types.NewError(ErrEngineUnavailable, "mode: "+err.Error(), "")
	}
	if err != nil {
		return d, types.NewError(types.ErrInternal, "choosing engine", err.Error())
	}
	return d, nil
}

func cmdAdd(args *skel.CmdArgs) error {
	c, prev, err := parse(args, true)
	if err != nil {
		return err
	}
	if c.Mode == conf.ModeOff {
		return types.PrintResult(c.PrevResult, c.CNIVersion)
	}
	o, err := node.Load(c.PinDir)
	if err != nil {
		return types.NewError(ErrLoad, "pinDir: loading BPF objects", err.Error())
	}
	defer o.Close()
	d, err := decide(c, o)
	if err != nil {
		return err
	}
	// The runtime keeps the plugin's stderr in its log: the one place an
	// operator sees why a container is not on the fast path.
	switch {
	case d.Engine == engine.Off:
		logf("network %s: mode %s runs plain TCP on this node: %s", c.Name, c.Mode, d.Reason)
	case d.Engine != engine.Splice && c.Mode == conf.ModeAuto:
		logf("network %s: mode auto uses the %s engine on this node: %s", c.Name, d.Engine, d.Reason)
	}
	if d.Engine == engine.Sockmap && c.BusyPollUs != 0 {
		logf("network %s: busyPollUs=%d is unused by the sockmap engine (splice engine only)", c.Name, c.BusyPollUs)
	}
	// Off is recorded too (nothing is enrolled), for CHECK and STATUS.
	a := attachment(c, args, prev)
	a.Engine = d.Engine
	if err := enroll.Add(o, a); err != nil {
		return types.NewError(ErrEnroll, "enrolling container "+args.ContainerID, err.Error())
	}
	return types.PrintResult(c.PrevResult, c.CNIVersion)
}

// cmdDel undoes ADD whatever the mode says now (it may have changed since),
// and succeeds when there is nothing to undo.
func cmdDel(args *skel.CmdArgs) error {
	c, _, err := parse(args, false)
	if err != nil {
		return err
	}
	return withPinned(c.PinDir, true, func(o *node.Objects) error {
		if err := enroll.Remove(o, c.Name, args.ContainerID, args.IfName); err != nil {
			return types.NewError(ErrEnroll, "removing container "+args.ContainerID, err.Error())
		}
		return nil
	})
}

// withPinned runs fn on the node's pinned objects, for the commands that
// must not create state. Where nothing is pinned it fails, or succeeds at
// once if nothingOK (there is nothing to undo).
func withPinned(dir string, nothingOK bool, fn func(*node.Objects) error) error {
	o, err := node.Open(dir)
	if nothingOK && errors.Is(err, node.ErrNotLoaded) {
		return nil
	}
	if err != nil {
		return types.NewError(ErrLoad, "pinDir: opening BPF objects", err.Error())
	}
	defer o.Close()
	return fn(o)
}

// cmdCheck verifies what ADD recorded, with the engine ADD chose: it
// decides nothing and runs no self-test.
func cmdCheck(args *skel.CmdArgs) error {
	c, prev, err := parse(args, true)
	if err != nil {
		return err
	}
	if c.Mode == conf.ModeOff {
		return nil
	}
	return withPinned(c.PinDir, false, func(o *node.Objects) error {
		if err := enroll.Check(o, attachment(c, args, prev)); err != nil {
			return types.NewError(ErrEnroll, "check", err.Error())
		}
		return nil
	})
}

// cmdGC drops the attachments of this network that the runtime no longer lists.
func cmdGC(args *skel.CmdArgs) error {
	c, _, err := parse(args, false)
	if err != nil {
		return err
	}
	var keep []enroll.ID
	for _, a := range c.ValidAttachments {
		keep = append(keep, enroll.ID{ContainerID: a.ContainerID, IfName: a.IfName})
	}
	return withPinned(c.PinDir, true, func(o *node.Objects) error {
		n, err := enroll.GC(o, c.Name, keep)
		if err != nil {
			return types.NewError(ErrEnroll, "gc", err.Error())
		}
		if n > 0 {
			logf("network %s: gc removed %d stale attachments", c.Name, n)
		}
		return nil
	})
}

// cmdStatus reports whether the configured engine can run here.
func cmdStatus(args *skel.CmdArgs) error {
	c, _, err := parse(args, false)
	if err != nil {
		return err
	}
	f := engine.Probe()
	switch c.Mode {
	case conf.ModeSockmap:
		if err := f.SockmapReady(); err != nil {
			return types.NewError(types.ErrPluginNotAvailable, "mode: sockmap engine unavailable", err.Error())
		}
	case conf.ModeSplice:
		if _, err := engine.Decide(engine.Splice, f, nil, ""); err != nil {
			return types.NewError(types.ErrPluginNotAvailable, "mode: "+err.Error(), "")
		}
	}
	return nil
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
	o, err := node.Open(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "socksplice: %s: %v\n", dir, err)
		return 1
	}
	defer o.Close()
	st, err := status.Collect(o, engine.Probe())
	if err != nil {
		fmt.Fprintf(os.Stderr, "socksplice: %v\n", err)
		return 1
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

// runAgent is "socksplice agent [--listen ADDR] [--pin-dir DIR]", the
// DaemonSet's main process: metrics, /readyz and /healthz until SIGTERM.
func runAgent(args []string) int {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	listen := fs.String("listen", agent.DefaultListen, "address to serve /metrics, /readyz and /healthz on")
	pinDir := fs.String("pin-dir", conf.DefaultPinDir, "the node's pin directory (the networks' pinDir)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "socksplice agent: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := agent.Run(ctx, agent.Options{Listen: *listen, PinDir: *pinDir, Version: buildVersion, Logf: logf}); err != nil {
		logf("agent: %v", err)
		return 1
	}
	logf("agent: stopped")
	return 0
}
