// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

import (
	"math"
	"slices"
	"time"
)

// Report is everything one benchmark run measured; it is written as
// bench.json, rendered as bench.md and charted as PNGs.
type Report struct {
	Started  time.Time     `json:"started"`
	Elapsed  time.Duration `json:"elapsed"`
	Quick    bool          `json:"quick"`
	Machine  Machine       `json:"machine"`
	Settings Settings      `json:"settings"`
	// Paths lists every path the run knows of, with why it did not run
	// where it could not.
	Paths      []PathInfo  `json:"paths"`
	RR         []Point     `json:"rr"`
	Stream     []Point     `json:"stream"`
	Apps       []AppPoint  `json:"apps"`
	CrossCheck *CrossCheck `json:"crossCheck,omitempty"`
	CNI        *CNICost    `json:"cni,omitempty"`
	Overhead   *Overhead   `json:"overhead,omitempty"`
	// Failures are paths that should have run on this machine and could
	// not: the only thing that fails "make bench-quick".
	Failures []string `json:"failures,omitempty"`
}

// Machine describes where the numbers were taken.
type Machine struct {
	Kernel    string `json:"kernel"`
	CPUModel  string `json:"cpuModel"`
	CPUs      int    `json:"cpus"`
	MemGiB    int    `json:"memGiB"`
	GoVersion string `json:"goVersion"`
	Virt      string `json:"virt"` // e.g. "KVM guest", "QEMU TCG guest"
}

// Settings are the knobs of the run.
type Settings struct {
	Runs        int           `json:"runs"`     // measured runs per point, alternating paths
	Duration    time.Duration `json:"duration"` // per measured run
	Warmup      time.Duration `json:"warmup"`   // one discarded run per point
	ClientCPU   int           `json:"clientCPU"`
	ServerCPU   int           `json:"serverCPU"`
	RRSizes     []int         `json:"rrSizes"`
	StreamSizes []int         `json:"streamSizes"`
}

// Path names. "tcp" is the baseline every ratio is taken against.
const (
	PathTCP      = "tcp"
	PathSockmap  = "sockmap"
	PathSplice   = "splice"
	PathSpliceBP = "splice+busypoll" // 50 us
	// PathSpliceBP10 busy-polls 10 us (the sockperf mode only).
	PathSpliceBP10 = "splice+busypoll10"
	PathUnix       = "unix"
	// PathToolTCP is plain TCP measured with the tool's own ends: the
	// sockperf mode's baseline for unix, which sockperf 3.7 cannot run.
	PathToolTCP = "tcp-tool"
	PathSMC     = "smc"
)

// Topologies.
const (
	TopoLoopback = "loopback" // both ends in one container, 127.0.0.1
	TopoVeth     = "veth"     // two containers on a bridge made by the CNI chain
	TopoNetkit   = "netkit"   // two containers joined by a netkit pair (the sockperf mode)
)

// PathInfo says whether a path can run here and, if not, why.
type PathInfo struct {
	Name      string `json:"name"`
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
}

// Stat is the median and range of one quantity over the measured runs.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Point is one (kind, topology, path, size) cell.
type Point struct {
	Kind     string `json:"kind"` // "rr" or "stream"
	Topology string `json:"topology"`
	Path     string `json:"path"`
	Size     int    `json:"size"` // request=response size (rr) or write size (stream)
	Runs     int    `json:"runs"`
	// rr
	TPS   Stat `json:"tps,omitzero"`
	P50us Stat `json:"p50us,omitzero"`
	P99us Stat `json:"p99us,omitzero"`
	// stream
	Gbps Stat `json:"gbps,omitzero"`
	// CPU seconds (user, system; both ends summed) per GB moved, from
	// getrusage of both processes, as seed 001 reports it.
	UserSPerGB Stat `json:"userSPerGB"`
	SysSPerGB  Stat `json:"sysSPerGB"`
	// Mean bytes returned per read at the receiver: how much batching the
	// path gives the reader.
	ReadBytes Stat `json:"readBytes"`
	// Voluntary context switches of both ends per MB moved: each is a
	// sleep on an empty or full socket, so this counts wake-ups.
	CtxSwPerMB Stat `json:"ctxSwPerMB"`
	// The sockperf mode's figures (sockperf.go). Tool is what measured:
	// "sockperf 3.7", or "bench" for the tool's own ends.
	Tool string `json:"tool,omitempty"`
	// LatUs (rr): mean one-way latency, RTT / 2, in microseconds.
	LatUs Stat `json:"latUs,omitzero"`
	// MsgPS (stream): messages the receiver got per second.
	MsgPS Stat `json:"msgPerSec,omitzero"`
	// CliCPUUs and SrvCPUUs: user + system CPU microseconds of each end
	// per request (rr: a round trip; stream: a message).
	CliCPUUs Stat `json:"clientCPUUsPerReq,omitzero"`
	SrvCPUUs Stat `json:"serverCPUUsPerReq,omitzero"`
	// BusyPollHitPct: of the splice module's busy polls during the run,
	// the share that found data (busy-poll paths only).
	BusyPollHitPct Stat `json:"busyPollHitPct,omitzero"`
	BusyPolls      Stat `json:"busyPolls,omitzero"` // per run
	// Verified is how the run was shown to take the path it is named for
	// (counters, bytes on lo/veth); empty for unverified peers.
	Verified string `json:"verified,omitempty"`
	Err      string `json:"err,omitempty"`
}

// AppPoint is an application-level result (redis-benchmark GET).
type AppPoint struct {
	App      string  `json:"app"` // "redis GET"
	Topology string  `json:"topology"`
	Path     string  `json:"path"`
	Clients  int     `json:"clients"`
	Requests int     `json:"requests"`
	RPS      Stat    `json:"rps"`
	P50ms    float64 `json:"p50ms,omitempty"`
	Err      string  `json:"err,omitempty"`
}

// CrossCheck compares the tool with sockperf at one point.
type CrossCheck struct {
	Tool       string  `json:"tool"` // "sockperf 3.7"
	Topology   string  `json:"topology"`
	Path       string  `json:"path"`
	Size       int     `json:"size"`
	SockperfUs float64 `json:"sockperfAvgLatencyUs"` // sockperf's one-way figure (RTT/2)
	SockperfTP float64 `json:"sockperfTPS"`          // 1e6 / (2 * SockperfUs)
	ToolTPS    float64 `json:"toolTPS"`
	Ratio      float64 `json:"ratio"` // ToolTPS / SockperfTP
	Agrees     bool    `json:"agrees"`
	Err        string  `json:"err,omitempty"`
}

// CNICost is the plugin's own cost on the node.
type CNICost struct {
	// The socksplice plugin alone, invoked as the runtime would with the
	// chain's prevResult: cold is the first ADD on a node (pins created,
	// programs loaded, auto self-test), warm every later one.
	ColdAdd Latency `json:"coldAdd"`
	WarmAdd Latency `json:"warmAdd"`
	Del     Latency `json:"del"`
	// The whole chain (bridge + host-local + socksplice) through libcni.
	ChainAdd Latency `json:"chainAdd"`
	ChainDel Latency `json:"chainDel"`
	// Enrolling N containers one after another through the whole chain.
	EnrollN    int     `json:"enrollN"`
	EnrollSecs float64 `json:"enrollSecs"`
	EnrollMode string  `json:"enrollMode"`
	Err        string  `json:"err,omitempty"`
}

// Latency is a latency distribution in milliseconds.
type Latency struct {
	N     int     `json:"n"`
	P50ms float64 `json:"p50ms"`
	P99ms float64 `json:"p99ms"`
	MaxMs float64 `json:"maxMs"`
}

// column summarizes one quantity of every sample, leaving out NaN (a
// figure a sample does not have, such as busy-poll hits off the busy-poll
// paths).
func column[S any](samples []S, f func(S) float64) Stat {
	xs := make([]float64, 0, len(samples))
	for _, s := range samples {
		if v := f(s); !math.IsNaN(v) {
			xs = append(xs, v)
		}
	}
	return summarize(xs)
}

// summarize returns the median and range of xs.
func summarize(xs []float64) Stat {
	if len(xs) == 0 {
		return Stat{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return Stat{Median: percentile(s, 50), Min: s[0], Max: s[len(s)-1]}
}

// percentile of sorted xs by linear interpolation between closest ranks.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	r := p / 100 * float64(len(sorted)-1)
	lo := int(math.Floor(r))
	hi := int(math.Ceil(r))
	return sorted[lo] + (sorted[hi]-sorted[lo])*(r-float64(lo))
}

// latencyOf summarizes durations.
func latencyOf(ds []time.Duration) Latency {
	ms := make([]float64, len(ds))
	for i, d := range ds {
		ms[i] = float64(d) / float64(time.Millisecond)
	}
	slices.Sort(ms)
	if len(ms) == 0 {
		return Latency{}
	}
	return Latency{N: len(ms), P50ms: percentile(ms, 50), P99ms: percentile(ms, 99), MaxMs: ms[len(ms)-1]}
}
