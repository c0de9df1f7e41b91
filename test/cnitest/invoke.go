// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package cnitest

import (
	"context"
	"encoding/json"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
)

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
	c.mu.Lock()
	if r := c.results[n.Name]; r != nil {
		conf["prevResult"] = r
	}
	c.mu.Unlock()
	return conf
}

// Invoke runs the socksplice plugin binary directly with stdin for c.
func Invoke(t T, command string, c *Container, stdin []byte) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := &invoke.Args{Command: command, ContainerID: c.ID, NetNS: c.Netns, IfName: "eth0", Path: BinDir(t)}
	bin := filepath.Join(BinDir(t), "socksplice")
	if command == "ADD" {
		_, err := invoke.ExecPluginWithResult(ctx, bin, stdin, args, nil)
		return err
	}
	return invoke.ExecPluginWithoutResult(ctx, bin, stdin, args, nil)
}

// CheckSocksplice runs CHECK of the socksplice plugin alone (the bridge
// plugin's CHECK trips over its bridge MAC changing as ports are added).
func (n *Network) CheckSocksplice(t T, c *Container) error {
	t.Helper()
	b, err := json.Marshal(n.PluginConf(t, c))
	if err != nil {
		t.Fatal(err)
	}
	return Invoke(t, "CHECK", c, b)
}
