// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Command socksplice is a CNI chained plugin that pairs same-host TCP
// connections of enrolled containers and moves their payload through a
// short kernel path. It is thin: it parses, calls pkg, prints results.
package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/socksplice/socksplice/conf"
	"github.com/socksplice/socksplice/pkg/bpffs"
	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/pkg/enroll"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/pkg/notice"
	"github.com/socksplice/socksplice/pkg/selftest"
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
	if len(os.Args) > 1 && nodeCommands[os.Args[1]] != nil {
		os.Exit(nodeCommands[os.Args[1]](os.Args[2:]))
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
	// What enroll.Add would refuse, refused here, before anything is
	// made (a record must name the attachment for DEL and GC to find it).
	if n := len(c.Name) + len(args.ContainerID) + len(args.IfName); n > enroll.MaxIdent {
		return nil, nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf(
			"CNI_CONTAINERID: %d bytes long; with the network name (%d) and CNI_IFNAME (%d) it may take %d bytes at most",
			len(args.ContainerID), len(c.Name), len(args.IfName), enroll.MaxIdent), "")
	}
	if n := len(containerAddrs(prev)); n > enroll.MaxAddrs {
		return nil, nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(
			"prevResult: %d addresses on the container's interfaces, at most %d are supported", n, enroll.MaxAddrs), "")
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

// engineErr turns the engine's refusal into the CNI error ADD returns.
func engineErr(err error) error {
	var unavail *engine.ErrUnavailable
	if errors.As(err, &unavail) {
		return types.NewError(ErrEngineUnavailable, "mode: "+err.Error(), "")
	}
	return types.NewError(types.ErrInternal, "choosing engine", err.Error())
}

func decide(c *conf.NetConf, f engine.Features, o *node.Objects) (engine.Decision, error) {
	exe, err := os.Executable()
	if err != nil {
		return engine.Decision{}, types.NewError(types.ErrInternal, "locating own binary for the self-test", err.Error())
	}
	d, err := engine.Decide(string(c.Mode), f, o, exe)
	if err != nil {
		return d, engineErr(err)
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
	// What the kernel rules out is decided before anything is loaded: a
	// forced engine it cannot run fails here, and auto where no engine
	// can run (no BTF, no sockmap, no cgroup v2) loads, enrolls and
	// records nothing.
	f := engine.Probe()
	d, final, err := engine.Precheck(string(c.Mode), f)
	if err != nil {
		return engineErr(err)
	}
	if final && d.Engine == engine.Off {
		tell(c, d, nil)
		return types.PrintResult(c.PrevResult, c.CNIVersion)
	}
	o, err := node.Load(c.PinDir)
	if err != nil {
		return types.NewError(ErrLoad, "pinDir: loading BPF objects", err.Error())
	}
	defer o.Close()
	if err := selftest.Reclaim(o); err != nil {
		logf("%v", err) // a leftover of a killed ADD; this ADD need not fail for it
	}
	if !final {
		if d, err = decide(c, f, o); err != nil {
			return err
		}
	}
	tell(c, d, o)
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

// tell says on stderr when a container gets less than the fastest engine,
// and, once per node and decision, in the system log: the runtime keeps
// the plugin's stderr in its log (podman does not). Without objects (the
// kernel ruled out every engine) the node's pin directory remembers what
// was told.
func tell(c *conf.NetConf, d engine.Decision, o *node.Objects) {
	var weaker string
	switch {
	case d.Engine == engine.Off:
		weaker = fmt.Sprintf("network %s: mode %s (from %s) runs plain TCP on this node: %s", c.Name, c.Mode, c.ModeFrom(), d.Reason)
	case d.Engine != engine.Splice && c.Mode == conf.ModeAuto:
		weaker = fmt.Sprintf("network %s: mode auto (from %s) uses the %s engine on this node: %s", c.Name, c.ModeFrom(), d.Engine, d.Reason)
	default:
		return
	}
	logf("%s", weaker)
	var first bool
	var err error
	if o != nil {
		first, err = engine.FirstNotice(o, string(c.Mode), d)
	} else {
		first, err = engine.FirstNoticeIn(c.PinDir, string(c.Mode), d)
	}
	if err != nil {
		logf("remembering the notice: %v", err)
	} else if first {
		if _, err := notice.Log(weaker); err != nil {
			logf("system log: %v", err)
		}
	}
}

// cmdDel undoes ADD whatever the mode says now (it may have changed since),
// and always succeeds: a DEL that fails stops the chain, and the primary
// plugin would never release the container's address. A config that no
// longer parses still names the network and pins to clean (conf.DelTarget);
// whatever cannot be undone is logged, and GC reclaims it later.
func cmdDel(args *skel.CmdArgs) error {
	var name, pinDir string
	if c, err := conf.Parse(args.StdinData); err == nil {
		name, pinDir = c.Name, c.PinDir
	} else {
		name, pinDir = conf.DelTarget(args.StdinData)
		logf("DEL of container %s: the config is invalid (%v); removing what ADD recorded for it anyway (network %q, pinDir %s)",
			args.ContainerID, err, name, pinDir)
	}
	err := withPinned(pinDir, true, func(o *node.Objects) error {
		if name == "" {
			_, err := enroll.RemoveContainer(o, args.ContainerID, args.IfName)
			return err
		}
		return enroll.Remove(o, name, args.ContainerID, args.IfName)
	})
	if err != nil {
		logf("DEL of container %s: not everything could be undone (left for GC): %v", args.ContainerID, err)
	}
	return nil
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
	// Where the kernel rules out every engine, auto's ADD enrolled and
	// recorded nothing: there is nothing to check.
	if d, final, err := engine.Precheck(string(c.Mode), engine.Probe()); err == nil && final && d.Engine == engine.Off {
		return nil
	}
	return withPinned(c.PinDir, false, func(o *node.Objects) error {
		if err := enroll.Check(o, attachment(c, args, prev)); err != nil {
			return types.NewError(ErrEnroll, "check", err.Error())
		}
		return nil
	})
}

// cmdGC drops the attachments of this network that the runtime no longer
// lists, and what a self-test killed with its plugin left.
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
		if err := selftest.Reclaim(o); err != nil {
			return types.NewError(ErrEnroll, "gc", err.Error())
		}
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

// cmdStatus reports whether ADD would succeed here: the configured engine
// can run (auto always can: where no engine runs, it runs plain TCP), and
// the pin directory can hold pins.
func cmdStatus(args *skel.CmdArgs) error {
	c, _, err := parse(args, false)
	if err != nil {
		return err
	}
	if c.Mode == conf.ModeOff {
		return nil
	}
	d, final, err := engine.Precheck(string(c.Mode), engine.Probe())
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "mode: "+err.Error(), "")
	}
	if final && d.Engine == engine.Off {
		return nil // ADD needs no pins there
	}
	if err := bpffs.Usable(c.PinDir); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "pinDir: "+err.Error(), "")
	}
	return nil
}
