// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/pkg/node"
	"github.com/socksplice/socksplice/pkg/status"
)

const moduleCountersDir = "/sys/module/" + sbpf.SpliceModule + "/counters"

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("socksplice_"+name, help, labels, nil)
}

var (
	descBuild = desc("build_info", "The agent's build: version, BPF object stamp, ABI version.",
		"version", "stamp", "abi_version")
	descPins   = desc("pins_loaded", "1 when the node's BPF objects are pinned (a container was added), else 0.")
	descPaired = desc("paired_total",
		"Sockets paired (sockmap) or handed to the splice module, by network; the self-test's excluded.", "network")
	descFallback = desc("fallback_total",
		"Sockets of enrolled containers left on plain TCP at ESTABLISHED (or listen), by network and reason; the self-test's excluded.",
		"network", "reason")
	descAttach = desc("attachments", "Attachments ADD recorded, by network and the engine it chose.",
		"network", "engine")
	descSelfPaired   = desc("selftest_paired_total", "Sockets the self-test paired (counted in no network).")
	descSelfFallback = desc("selftest_fallback_total", "The self-test's sockets left on TCP, by reason.", "reason")
	descBytes        = desc("redirected_bytes_total",
		"Payload bytes moved off TCP, node-wide: sk_msg redirects (sockmap, the self-test's excluded), the module's rings (splice, the self-test's included).",
		"engine")
	descMsgs = desc("redirected_messages_total", "Messages the sockmap engine redirected, node-wide (the self-test's excluded).",
		"engine")
	descSelfBytes = desc("selftest_redirected_bytes_total", "Payload bytes the sockmap self-test's connections redirected.", "engine")
	descNode      = desc("node_events_total",
		"Every node-wide BPF counter (struct ss_counters), all engines, containers and self-test together.", "counter")
	descModule      = desc("module_events_total", "The splice module's counters (/sys/module/socksplice/counters).", "counter")
	descModuleGauge = desc("module_live", "The splice module's gauges (live_*).", "gauge")
)

// collector reads the pinned maps at every scrape: nothing polls, and a
// scrape shows what the maps hold at that moment.
type collector struct {
	pinDir, version, moduleDir string
	// The kernel probe (25-30 ms: it parses kernel BTF), once: no series
	// depends on it, only status fields the metrics do not export.
	probe func() engine.Features
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBuild, descPins, descPaired, descFallback, descAttach,
		descSelfPaired, descSelfFallback, descSelfBytes, descBytes, descMsgs, descNode, descModule, descModuleGauge} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descBuild, prometheus.GaugeValue, 1,
		c.version, node.Stamp(), strconv.Itoa(sbpf.ABIVersion))
	c.collectModule(ch)
	o, err := node.OpenUnlocked(c.pinDir)
	if errors.Is(err, node.ErrNotLoaded) {
		ch <- prometheus.MustNewConstMetric(descPins, prometheus.GaugeValue, 0)
		return
	}
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descPins, err)
		return
	}
	defer o.Close()
	ch <- prometheus.MustNewConstMetric(descPins, prometheus.GaugeValue, 1)
	st, err := status.Collect(o, c.probe())
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descPaired, err)
		return
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, n := range st.Networks {
		counter(descPaired, n.Counters.Paired, n.Name)
		for reason, v := range n.Counters.Fields() {
			if reason != "paired" {
				counter(descFallback, v, n.Name, reason)
			}
		}
		for eng, k := range n.Attachments {
			ch <- prometheus.MustNewConstMetric(descAttach, prometheus.GaugeValue, float64(k), n.Name, eng)
		}
	}
	counter(descSelfPaired, st.SelfTest.Paired)
	for reason, v := range st.SelfTest.Fields() {
		if reason != "paired" {
			counter(descSelfFallback, v, reason)
		}
	}
	counter(descBytes, st.Counters.RedirectBytes, engine.Sockmap)
	counter(descMsgs, st.Counters.RedirectMsgs, engine.Sockmap)
	counter(descSelfBytes, st.Counters.SelftestRedirectBytes, engine.Sockmap)
	for name, v := range st.Counters.Fields() {
		counter(descNode, v, name)
	}
}

// collectModule exports the splice module's counters where it is loaded;
// its ring_bytes are the splice engine's redirected bytes.
func (c *collector) collectModule(ch chan<- prometheus.Metric) {
	ents, err := os.ReadDir(c.moduleDir)
	if err != nil {
		return // not loaded
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(c.moduleDir, e.Name()))
		if err != nil {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			continue
		}
		name := e.Name()
		switch {
		case strings.HasPrefix(name, "live_"):
			ch <- prometheus.MustNewConstMetric(descModuleGauge, prometheus.GaugeValue, float64(v), name)
		default:
			ch <- prometheus.MustNewConstMetric(descModule, prometheus.CounterValue, float64(v), name)
		}
		if name == "ring_bytes" {
			ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(v), engine.Splice)
		}
	}
}
