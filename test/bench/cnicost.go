// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/socksplice/socksplice/test/testenv"
)

// cniSubnet is the CNI cost network's range: a /16, so host-local never runs
// out however many containers are enrolled, apart from the e2e tests' /24s
// and the topologies' 10.234.x.0/24.
const cniSubnet = "10.232.0.0/16"

// cniMaxContainers is what host-local can hand out in cniSubnet, with room
// to spare.
const cniMaxContainers = 65000

// measureCNI measures the plugin's own cost on this node in mode "auto" (what
// an operator gets by default): the socksplice plugin alone, cold and warm,
// and the whole chain while enrolling enrollN containers one after another.
// It removes everything it made before returning (testenv.Try); a failure
// stops the measurement and is reported in Err, with what was measured
// until then.
func measureCNI(t testenv.T, enrollN, samples int) *CNICost {
	res := &CNICost{EnrollN: enrollN, EnrollMode: "sequential"}
	var coldAdd, warmAdd, del, chainAdd, chainDel []time.Duration
	err := testenv.Try(t, "bench-cni", func(s testenv.T) {
		must := func(err error, format string, a ...any) {
			if err != nil {
				s.Fatalf(format+": %v", append(a, err)...)
			}
		}
		// One sample at least: the first chain ADD loads the network's pins
		// and must not be counted as an enrolment.
		if samples < 1 || enrollN < 0 || enrollN+samples > cniMaxContainers {
			s.Fatalf("samples=%d enrollN=%d: need samples >= 1, enrollN >= 0 and at most %d containers in %s",
				samples, enrollN, cniMaxContainers, cniSubnet)
		}
		pin := testenv.PinDir(s) // its cleanup is the first registered, so it runs after every DEL
		n := testenv.NewNetwork(s, testenv.NetOpts{Subnet: cniSubnet, PinDir: pin, Plugin: map[string]any{"mode": "auto"}})

		// plugin runs the socksplice plugin alone for c, as the runtime
		// would at the end of the chain, against pinDir.
		plugin := func(cmd string, c *testenv.Container, pinDir string) time.Duration {
			conf := n.PluginConf(s, c)
			conf["pinDir"] = pinDir
			b, err := json.Marshal(conf)
			must(err, "socksplice %s config", cmd)
			start := time.Now()
			err = testenv.Invoke(s, cmd, c, b)
			d := time.Since(start)
			must(err, "socksplice %s %s (pinDir %s)", cmd, c.ID, pinDir)
			return d
		}

		// The plugin-alone samples need a prevResult, so their containers
		// go through the chain first. The first of these ADDs is the
		// network's cold one; everything after it on pin is warm.
		probes := make([]*testenv.Container, samples)
		for i := range probes {
			probes[i] = testenv.NewContainer(s, fmt.Sprintf("cnib%d", i))
			_, err := n.Add(s, probes[i])
			must(err, "chain ADD %s", probes[i].ID)
		}
		for _, c := range probes {
			del = append(del, plugin("DEL", c, pin))
			warmAdd = append(warmAdd, plugin("ADD", c, pin))
		}

		// Enrolment: containers exist beforehand (the runtime makes the
		// netns and cgroup before calling CNI), so only the chain's ADDs are
		// timed.
		enrolled := make([]*testenv.Container, enrollN)
		for i := range enrolled {
			enrolled[i] = testenv.NewContainer(s, fmt.Sprintf("cnie%d", i))
		}
		start := time.Now()
		for _, c := range enrolled {
			t0 := time.Now()
			_, err := n.Add(s, c)
			d := time.Since(t0)
			must(err, "chain ADD %s (enrolment %d of %d)", c.ID, len(chainAdd)+1, enrollN)
			chainAdd = append(chainAdd, d)
		}
		res.EnrollSecs = time.Since(start).Seconds()
		for _, c := range enrolled {
			t0 := time.Now()
			err := n.Del(s, c)
			d := time.Since(t0)
			must(err, "chain DEL %s", c.ID)
			chainDel = append(chainDel, d)
		}

		// Cold ADDs last: each loads and verifies a fresh set of programs
		// and runs auto's self-test, whose teardown should not overlap the
		// warm samples. A fresh pin directory per sample makes each one the
		// first ADD of a node; the container leaves pin first so that its
		// cgroup is as bare as on a new node.
		for _, c := range probes {
			plugin("DEL", c, pin)
			cold := testenv.PinDir(s)
			coldAdd = append(coldAdd, plugin("ADD", c, cold))
			plugin("DEL", c, cold)
			must(os.RemoveAll(cold), "removing %s", cold)
		}
		for _, c := range probes {
			must(n.Del(s, c), "chain DEL %s", c.ID)
		}
	})
	if err != nil {
		res.Err = err.Error()
	}
	res.ColdAdd, res.WarmAdd, res.Del = latencyOf(coldAdd), latencyOf(warmAdd), latencyOf(del)
	res.ChainAdd, res.ChainDel = latencyOf(chainAdd), latencyOf(chainDel)
	return res
}
