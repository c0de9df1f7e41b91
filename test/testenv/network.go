// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package testenv

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/socksplice/socksplice/conf"
)

// NetOpts shapes a test network.
type NetOpts struct {
	Name      string         // network name; random if empty
	Subnet    string         // e.g. 10.123.0.0/24
	Subnet6   string         // optional second range, e.g. fd00:123::/64
	PinDir    string         // the socksplice plugin's pinDir
	Plugin    map[string]any // socksplice plugin fields (mode, ports, ...)
	NoCgroups bool           // do not declare the cgroupPath capability
	Version   string         // cniVersion; 1.1.0 if empty
}

// Network is one conflist [bridge + host-local + socksplice].
type Network struct {
	Name     string
	Bridge   string
	PinDir   string
	List     *libcni.NetworkConfigList
	CNI      *libcni.CNIConfig
	cacheDir string
	path     []string  // where libcni finds the plugins
	plugin   string    // the socksplice the network runs (WrapSocksplice), "" for PluginBinary
	stderr   io.Writer // where the plugins' stderr goes
	env      []string  // extra environment of the socksplice plugin
}

// NewNetwork writes the conflist for a new network with its own bridge.
func NewNetwork(t T, o NetOpts) *Network {
	t.Helper()
	sfx := suffix()
	name := o.Name
	if name == "" {
		name = "sstest-" + sfx
	}
	ranges := [][]map[string]string{{{"subnet": o.Subnet}}}
	if o.Subnet6 != "" {
		ranges = append(ranges, []map[string]string{{"subnet": o.Subnet6}})
	}
	plugin := map[string]any{"type": "socksplice", "pinDir": o.PinDir}
	if !o.NoCgroups {
		plugin["capabilities"] = map[string]bool{"cgroupPath": true, conf.CapPodAnnotations: true}
	}
	for k, v := range o.Plugin {
		plugin[k] = v
	}
	if o.Version == "" {
		o.Version = "1.1.0"
	}
	b, err := json.Marshal(map[string]any{
		"cniVersion": o.Version,
		"name":       name,
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": "ssbr" + sfx, "isGateway": false, "ipMasq": false,
				"ipam": map[string]any{"type": "host-local", "ranges": ranges},
			},
			plugin,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return NetworkFromConfList(t, b)
}

// NetworkFromConfList uses a conflist [bridge + host-local + socksplice]
// as given, except that host-local keeps its leases in a temporary
// directory. The bridge is deleted at cleanup.
func NetworkFromConfList(t T, conflist []byte) *Network {
	t.Helper()
	var list map[string]any
	if err := json.Unmarshal(conflist, &list); err != nil {
		t.Fatalf("conflist: %v", err)
	}
	n := &Network{cacheDir: t.TempDir(), stderr: os.Stderr}
	n.Name, _ = list["name"].(string)
	plugins, _ := list["plugins"].([]any)
	for _, p := range plugins {
		pm, _ := p.(map[string]any)
		switch pm["type"] {
		case "bridge":
			n.Bridge, _ = pm["bridge"].(string)
			if ipam, ok := pm["ipam"].(map[string]any); ok {
				ipam["dataDir"] = t.TempDir()
			}
		case "socksplice":
			n.PinDir, _ = pm["pinDir"].(string)
		}
	}
	if n.Bridge == "" || n.PinDir == "" {
		t.Fatalf("conflist %s: need a bridge plugin with a bridge name and a socksplice plugin with pinDir", n.Name)
	}
	b, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	if n.List, err = libcni.ConfListFromBytes(b); err != nil {
		t.Fatalf("conflist: %v", err)
	}
	n.path = []string{BinDir(t)}
	n.CNI = libcni.NewCNIConfigWithCacheDir(n.path, n.cacheDir, nil)
	t.Cleanup(func() { exec.Command("ip", "link", "del", n.Bridge).Run() })
	return n
}

// WrapSocksplice makes the network run the socksplice plugin through a
// shell script, for a plugin that sees another host than the test does (a
// mount namespace of its own, fewer capabilities): script runs with the
// plugin's arguments and the plugin's path in $SOCKSPLICE, and must end
// by exec'ing it (stdin, stdout and the environment pass through). It
// returns the script's path, which takes the plugin's subcommands too.
func (n *Network) WrapSocksplice(t T, script string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "socksplice")
	body := "#!/bin/sh\nSOCKSPLICE=" + PluginBinary(t) + "\n" + script + "\n"
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	n.path = []string{dir, BinDir(t)}
	n.plugin = path
	n.CNI = libcni.NewCNIConfigWithCacheDir(n.path, n.cacheDir, n.exec())
	return path
}

func (n *Network) rt(c *Container, withCgroup bool) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{ContainerID: c.ID, NetNS: c.Netns, IfName: "eth0"}
	rt.CapabilityArgs = map[string]any{}
	if withCgroup {
		rt.CapabilityArgs["cgroupPath"] = c.CgroupRel
	}
	if c.Annotations != nil {
		rt.CapabilityArgs[conf.CapPodAnnotations] = c.Annotations
	}
	return rt
}

// Add runs ADD of the network for c, passing c's cgroup as cgroupPath.
// A successful ADD is undone at cleanup.
func (n *Network) Add(t T, c *Container) (*current.Result, error) {
	return n.add(t, c, true)
}

// AddNoCgroup runs ADD without cgroupPath (as podman does).
func (n *Network) AddNoCgroup(t T, c *Container) (*current.Result, error) {
	return n.add(t, c, false)
}

func (n *Network) add(t T, c *Container, withCgroup bool) (*current.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := n.CNI.AddNetworkList(ctx, n.List, n.rt(c, withCgroup))
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { n.Del(t, c) })
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.results[n.Name] = r
	c.mu.Unlock()
	return r, nil
}

// UsePluginDir makes the runtime look for plugins in dir (CNI_PATH)
// instead of BinDir: a node's plugin directory (PluginDir), where an
// upgrade replaces the binary.
func (n *Network) UsePluginDir(dir string) {
	n.CNI = libcni.NewCNIConfigWithCacheDir([]string{dir}, n.cacheDir, nil)
}

// LogTo also copies what the network's plugins write to stderr (the
// runtime's log of ADD, DEL, ...) to w.
func (n *Network) LogTo(t T, w io.Writer) {
	n.stderr = io.MultiWriter(os.Stderr, w)
	n.CNI = libcni.NewCNIConfigWithCacheDir(n.path, n.cacheDir, n.exec())
}

// PluginEnv gives the socksplice plugin's later runs through n (ADD, DEL,
// CHECK, GC) env on top of the test's environment; none: its own again.
// The other plugins of the chain do not get it.
func (n *Network) PluginEnv(t T, env ...string) {
	n.env = env
	n.CNI = libcni.NewCNIConfigWithCacheDir(n.path, n.cacheDir, n.exec())
}

func (n *Network) exec() invoke.Exec {
	return &pluginEnvExec{
		Exec: &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: n.stderr}, PluginDecoder: version.PluginDecoder{}},
		env:  n.env,
	}
}

// pluginEnvExec runs the plugins, adding env to the socksplice plugin's
// environment.
type pluginEnvExec struct {
	invoke.Exec
	env []string
}

func (e *pluginEnvExec) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	if filepath.Base(path) == "socksplice" {
		environ = append(slices.Clone(environ), e.env...)
	}
	return e.Exec.ExecPlugin(ctx, path, stdin, environ)
}

// MustAdd is Add that fails the test on error.
func (n *Network) MustAdd(t T, c *Container) *current.Result {
	t.Helper()
	r, err := n.Add(t, c)
	if err != nil {
		t.Fatalf("ADD %s in %s: %v", c.ID, n.Name, err)
	}
	return r
}

// Del runs DEL of the network for c.
func (n *Network) Del(t T, c *Container) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return n.CNI.DelNetworkList(ctx, n.List, n.rt(c, true))
}

// PluginConf returns the socksplice plugin's config as libcni would hand it
// over for c: the list's cniVersion and name, prevResult from c's ADD and
// the runtime's cgroupPath.
func (n *Network) PluginConf(t T, c *Container) map[string]any {
	t.Helper()
	var conf map[string]any
	if err := json.Unmarshal(n.List.Plugins[len(n.List.Plugins)-1].Bytes, &conf); err != nil {
		t.Fatal(err)
	}
	conf["cniVersion"] = n.List.CNIVersion
	conf["name"] = n.Name
	delete(conf, "capabilities")
	conf["runtimeConfig"] = map[string]any{"cgroupPath": c.CgroupRel}
	if r := c.result(n); r != nil {
		conf["prevResult"] = r
	}
	return conf
}

// Socksplice runs command (ADD, CHECK, DEL) of the socksplice plugin alone
// for c, as the runtime would at the end of n's chain, with conf (nil:
// PluginConf's). CHECK goes to it alone because the bridge plugin's CHECK
// trips over its bridge MAC changing as ports are added.
func (n *Network) Socksplice(t T, command string, c *Container, conf map[string]any) error {
	t.Helper()
	if conf == nil {
		conf = n.PluginConf(t, c)
	}
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	bin := n.plugin
	if bin == "" {
		bin = PluginBinary(t)
	}
	return invokePlugin(t, bin, command, c, b)
}

// Invoke runs the socksplice plugin binary directly with stdin for c.
func Invoke(t T, command string, c *Container, stdin []byte) error {
	t.Helper()
	return invokePlugin(t, PluginBinary(t), command, c, stdin)
}

func invokePlugin(t T, bin, command string, c *Container, stdin []byte) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := &invoke.Args{Command: command, ContainerID: c.ID, NetNS: c.Netns, IfName: "eth0", Path: BinDir(t)}
	if command == "ADD" {
		_, err := invoke.ExecPluginWithResult(ctx, bin, stdin, args, nil)
		return err
	}
	return invoke.ExecPluginWithoutResult(ctx, bin, stdin, args, nil)
}

// Meter measures what n's counters and the host veths of some of its
// containers saw from its making on.
type Meter struct {
	Veths []string // the host veths, in the order of the containers
	t     T
	pin   string
	c0    Counters
	v0    []uint64
}

// Meter starts a Meter on n and the host veths of cs.
func (n *Network) Meter(t T, cs ...*Container) *Meter {
	t.Helper()
	m := &Meter{t: t, pin: n.PinDir}
	for _, c := range cs {
		v := c.HostVeth(n)
		m.Veths = append(m.Veths, v)
		m.v0 = append(m.v0, VethBytes(t, v))
	}
	m.c0 = ReadCounters(t, n.PinDir)
	return m
}

// Counters returns how the network's counters moved since the start.
func (m *Meter) Counters() Counters {
	m.t.Helper()
	return counterDelta(ReadCounters(m.t, m.pin), m.c0)
}

// VethBytes returns the rx+tx bytes each veth carried since the start.
func (m *Meter) VethBytes() []uint64 {
	m.t.Helper()
	d := make([]uint64, len(m.Veths))
	for i, v := range m.Veths {
		d[i] = VethBytes(m.t, v) - m.v0[i]
	}
	return d
}
