// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/test/testenv"
)

const (
	redisPort    = 6379
	sockperfPort = 11111 // sockperf's own default
	// readyWait bounds how long a freshly started server may take to
	// accept connections.
	readyWait = 5 * time.Second
)

// pinned prefixes argv with taskset so that the process and its threads
// stay on one CPU; a negative cpu leaves it unpinned.
func pinned(cpu int, argv ...string) []string {
	if cpu < 0 {
		return argv
	}
	return append([]string{"taskset", "-c", strconv.Itoa(cpu)}, argv...)
}

// server is a long-running process in a container, reaped by a goroutine
// so that exited can tell when it ended.
type server struct {
	p   *testenv.Proc
	out *bytes.Buffer
}

func startServer(t testenv.T, c *testenv.Container, argv []string) (*server, error) {
	s := &server{out: new(bytes.Buffer)}
	p, err := c.Exec(t, argv, func(cmd *exec.Cmd) error {
		cmd.Stdout = s.out
		// A grandchild holding stdout open must not block the reap.
		cmd.WaitDelay = 2 * time.Second
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.p = p
	go p.Wait()
	return s, nil
}

func (s *server) exited() bool { return s.p.Exited() }

// stop kills the server by PID and waits for it; its output is only read
// afterwards, when nothing writes to it any more.
func (s *server) stop() string {
	s.p.Kill()
	s.p.Wait()
	return lastLines(s.out.String()+s.p.Stderr(), 5)
}

// fail stops the server and returns the error text for what went wrong,
// with the server's last lines.
func (s *server) fail(format string, a ...any) string {
	msg := fmt.Sprintf(format, a...)
	if out := s.stop(); out != "" {
		msg += " (server: " + out + ")"
	}
	return msg
}

// runIn runs argv in c to completion and returns its stdout; a process
// still running after timeout is killed (redis-benchmark, for one, spins
// forever when its server has gone).
func runIn(t testenv.T, c *testenv.Container, argv []string, timeout time.Duration) (string, error) {
	out, _, err := runMeasured(t, c, argv, "", timeout, nil)
	return out, err
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// missing names the first tool not on PATH, with the package to install.
func missing(pkgs string, tools ...string) string {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if tool == "taskset" {
				pkgs = "util-linux"
			}
			return tool + " not installed (apt-get install " + pkgs + ")"
		}
	}
	return ""
}

// runRedis measures redis-benchmark GET against a redis-server in srv,
// started afresh for this call: runs measured runs of requests GETs over
// clients connections, one request in flight per connection.
func runRedis(t testenv.T, srv, cli *testenv.Container, addr netip.Addr, path, topology string, clients, requests, runs int, srvCPU, cliCPU int) AppPoint {
	ap := AppPoint{App: "redis GET", Topology: topology, Path: path, Clients: clients, Requests: requests}
	if msg := missing("redis-server redis-tools", "redis-server", "redis-benchmark", "redis-cli", "taskset"); msg != "" {
		ap.Err = msg
		return ap
	}
	host, port := addr.String(), strconv.Itoa(redisPort)
	// No persistence: a snapshot or AOF fsync in the middle of a run
	// would be disk time, not network time.
	s, err := startServer(t, srv, pinned(srvCPU, "redis-server", "--port", port, "--bind", host,
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no"))
	if err != nil {
		ap.Err = "starting redis-server: " + err.Error()
		return ap
	}
	fail := func(format string, a ...any) AppPoint {
		ap.Err = s.fail(format, a...)
		return ap
	}

	// The host's namespace cannot reach container addresses, so readiness
	// is probed from the client container.
	for deadline := time.Now().Add(readyWait); ; {
		out, err := runIn(t, cli, []string{"redis-cli", "-h", host, "-p", port, "ping"}, 2*time.Second)
		if err == nil && strings.TrimSpace(out) == "PONG" {
			break
		}
		if s.exited() {
			return fail("redis-server exited")
		}
		if time.Now().After(deadline) {
			return fail("redis-server at %s:%s not ready after %v: %v %s", host, port, readyWait, err, strings.TrimSpace(out))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The key redis-benchmark GETs (it substitutes __rand_int__ only with
	// -r), holding the 3 bytes its SET test would have written, so that
	// every GET returns a value rather than a nil.
	if out, err := runIn(t, cli, []string{"redis-cli", "-h", host, "-p", port, "set", "key:__rand_int__", "xxx"}, 5*time.Second); err != nil || strings.TrimSpace(out) != "OK" {
		return fail("redis-cli set: %v %s", err, strings.TrimSpace(out))
	}

	bench := func(n int) (redisResult, error) {
		// -P 1: no pipelining, so each connection has one request in
		// flight, like the tool's request/response loop.
		argv := pinned(cliCPU, "redis-benchmark", "-h", host, "-p", port, "-t", "get",
			"-n", strconv.Itoa(n), "-c", strconv.Itoa(clients), "-P", "1", "--csv", "-q")
		// Generous: the timeout only catches a hang, never a slow machine.
		out, err := runIn(t, cli, argv, 30*time.Second+time.Duration(n)*time.Millisecond)
		if err != nil {
			return redisResult{}, err
		}
		return parseRedisCSV(out)
	}
	// One short discarded pass: the server is fresh, so the first
	// measured run would otherwise pay for its cold caches and allocator.
	if _, err := bench(max(requests/10, 10*clients)); err != nil {
		return fail("redis-benchmark warm-up: %v", err)
	}
	var rps, p50 []float64
	for i := 0; i < max(runs, 1); i++ {
		r, err := bench(requests)
		if err != nil {
			return fail("redis-benchmark: %v", err)
		}
		rps = append(rps, r.RPS)
		p50 = append(p50, r.P50ms)
	}
	s.stop()
	ap.RPS = summarize(rps)
	ap.P50ms = summarize(p50).Median
	return ap
}

// redisResult is one row of redis-benchmark --csv.
type redisResult struct {
	Test  string
	RPS   float64
	AvgMs float64
	P50ms float64
	P99ms float64
}

// parseRedisCSV reads the GET row of redis-benchmark --csv (redis 7):
// "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...
// Columns are found by name, and lines that are not CSV (warnings) are
// skipped, so that another redis version fails loudly or not at all.
func parseRedisCSV(out string) (redisResult, error) {
	var r redisResult
	col := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, `"`) {
			continue
		}
		rec, err := csv.NewReader(strings.NewReader(line)).Read()
		if err != nil {
			continue
		}
		if rec[0] == "test" {
			for i, name := range rec {
				col[name] = i
			}
			continue
		}
		if len(col) == 0 || !strings.EqualFold(rec[0], "GET") {
			continue
		}
		get := func(name string) (float64, error) {
			i, ok := col[name]
			if !ok || i >= len(rec) {
				return 0, fmt.Errorf("redis-benchmark csv: no %q column in %q", name, line)
			}
			v, err := strconv.ParseFloat(rec[i], 64)
			if err != nil {
				return 0, fmt.Errorf("redis-benchmark csv: %s: %v", name, err)
			}
			return v, nil
		}
		var errs [4]error
		r.Test = rec[0]
		r.RPS, errs[0] = get("rps")
		r.AvgMs, errs[1] = get("avg_latency_ms")
		r.P50ms, errs[2] = get("p50_latency_ms")
		r.P99ms, errs[3] = get("p99_latency_ms")
		if err := errors.Join(errs[:]...); err != nil {
			return r, err
		}
		if r.RPS <= 0 {
			return r, fmt.Errorf("redis-benchmark csv: rps %v", r.RPS)
		}
		return r, nil
	}
	return r, fmt.Errorf("redis-benchmark csv: no GET row in %q", lastLines(out, 5))
}

// runSockperf runs sockperf's TCP ping-pong between srv and cli for dur
// and returns its figures; the caller fills Topology, ToolTPS, Ratio and
// Agrees.
func runSockperf(t testenv.T, srv, cli *testenv.Container, addr netip.Addr, size int, dur time.Duration, srvCPU, cliCPU int) CrossCheck {
	cc := CrossCheck{Tool: "sockperf", Path: PathTCP, Size: size}
	out, err := sockperfOnce(t, srv, cli, spRun{Mode: spPingPong, Addr: addr, Size: size, Dur: dur, SrvCPU: srvCPU, CliCPU: cliCPU})
	if err != nil {
		cc.Err = err.Error()
		return cc
	}
	if out.Version != "" {
		cc.Tool = "sockperf " + out.Version
	}
	cc.SockperfUs = out.AvgLatencyUs
	cc.SockperfTP = 1e6 / (2 * out.AvgLatencyUs)
	return cc
}

// sockperf's two client modes the benchmark runs.
const (
	spPingPong   = "ping-pong"
	spThroughput = "throughput"
)

// spRun is one sockperf run: a fresh server in one container, one client
// in another (or the same, for loopback).
type spRun struct {
	Mode           string // spPingPong or spThroughput
	Addr           netip.Addr
	Size           int
	Dur            time.Duration // rounded up to whole seconds, at least 1
	SrvCPU, CliCPU int
}

// spOut is what one sockperf run measured: the client's own figures, the
// server's count of messages, and what each process cost.
type spOut struct {
	sockperfResult
	// ServerMsgs is what the server says it handled, read from its exit
	// report: ping-pong requests answered, or throughput messages
	// received. It equals what the client sent, or the run fails.
	ServerMsgs int64
	// CliCPU and SrvCPU are each sockperf process's user + system
	// seconds (/proc/PID/stat) for the run: the client's from its 2 s
	// sleep after connecting to its exit (read after it exited and before
	// it was reaped), or its whole life where that sleep was not caught
	// (CliSetupSampled false); the server's from before the client
	// started until the client's connection closed.
	CliCPU, SrvCPU  float64
	CliSetupSampled bool
	// DrainS is from the client's exit to the server's closing the
	// connection: how long the last bytes in flight took to arrive.
	DrainS float64
	// SrvPID and CliPID name the run's processes, for a profile taken
	// meanwhile (make vm-bench-profile).
	SrvPID, CliPID int
}

// sockperfOnce runs one sockperf client against a sockperf server started
// afresh for it, and checks that the server handled every message the
// client sent.
//
// The flags make sockperf a plain blocking loop over one connection:
//   - -i/-p (no -f feed file) selects sockperf's blocking recvfrom() I/O
//     on both ends, not the epoll (-F) that its help calls the default:
//     that default applies to -f only, and the server then blocks in
//     accept() and serves the one connection with recv()/send().
//   - ping-pong already defaults to --mps=max, burst 1 and a reply to every
//     message, so no pacing and no second message in flight; TCP_NODELAY
//     is on, as in Go. Throughput sends back to back with Nagle on (its
//     default) and asks for no replies.
//   - the warm-up "dummy messages" go to multicast sockets only; for TCP
//     the client sleeps 2 s, then, in ping-pong, drops the first 400 ms
//     and last 50 ms of the run from its statistics. So -t is whole
//     seconds >= 1 and the measured window is about -t minus 0.45 s.
//   - timestamps stay on RDTSC (sockperf calibrates it against
//     CLOCK_MONOTONIC at start): with --no-rdtsc sockperf 3.7 scales that
//     400/50 ms trim by the TSC frequency in GHz, eating ~1.1 s of the run.
//   - avg-latency is the mean RTT / 2 (no --full-rtt); with one message in
//     flight 1e6/(2*avg) is messages per second over the measured window.
//   - the server, stopped with SIGINT, prints how many messages it
//     handled; it is started per run, so that count is this run's.
func sockperfOnce(t testenv.T, srv, cli *testenv.Container, r spRun) (spOut, error) {
	var o spOut
	if msg := missing("sockperf", "sockperf", "taskset"); msg != "" {
		return o, errors.New(msg)
	}
	if r.Mode != spPingPong && r.Mode != spThroughput {
		return o, fmt.Errorf("sockperf mode %q: want %s or %s", r.Mode, spPingPong, spThroughput)
	}
	if !r.Addr.Is4() {
		return o, errors.New("sockperf 3.7 takes IPv4 addresses only, not " + r.Addr.String())
	}
	if r.Size < 14 {
		return o, fmt.Errorf("sockperf messages are at least 14 bytes (its header), not %d", r.Size)
	}
	secs := max(int(math.Ceil(r.Dur.Seconds())), 1)
	host, port := r.Addr.String(), strconv.Itoa(sockperfPort)
	s, err := startServer(t, srv, pinned(r.SrvCPU, "sockperf", "server", "--tcp", "-i", host, "-p", port))
	if err != nil {
		return o, fmt.Errorf("starting sockperf server: %v", err)
	}
	fail := func(format string, a ...any) (spOut, error) {
		return o, errors.New(s.fail(format, a...))
	}
	spid := s.p.Pid()
	o.SrvPID = spid
	// Listening: "ip netns exec" has exec'd sockperf (ip holds a netlink
	// socket of its own before), and sockperf's socket is there. The
	// client retries anyway, for the moment between socket() and listen().
	if err := waitProgram(spid, "sockperf", readyWait); err != nil {
		return fail("sockperf server: %v", err)
	}
	base, err := waitSockets(spid, func(n int) bool { return n >= 1 }, readyWait)
	if err != nil {
		return fail("sockperf server: %v", err)
	}
	argv := pinned(r.CliCPU, "sockperf", r.Mode, "--tcp", "-i", host, "-p", port,
		"-m", strconv.Itoa(r.Size), "-t", strconv.Itoa(secs))
	var out string
	var srv0 procCPU
	var exited time.Time
	for deadline := time.Now().Add(readyWait); ; {
		if srv0, err = readProcCPU(spid, "sockperf"); err != nil {
			return fail("sockperf server: %v", err)
		}
		var cpu, setup procCPU
		var sampled bool
		out, cpu, err = runMeasured(t, cli, argv, "sockperf", time.Duration(secs+2)*time.Second+30*time.Second, func(pid int) {
			o.CliPID = pid
			setup, sampled = sockperfSetupCPU(pid, spid, base)
		})
		if err != nil {
			return fail("sockperf %s: %v", r.Mode, err)
		}
		exited = time.Now()
		o.CliCPU, o.CliSetupSampled = cpu.UserS+cpu.SysS, sampled
		if sampled {
			o.CliCPU -= setup.UserS + setup.SysS
		}
		// sockperf prints "Can`t connect" and exits 0 at once while the
		// server is not listening yet.
		if !strings.Contains(out, "Can`t connect") {
			break
		}
		if s.exited() {
			return fail("sockperf server exited")
		}
		if time.Now().After(deadline) {
			return fail("sockperf server at %s:%s not ready after %v: %s", host, port, readyWait, lastLines(out, 2))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The connection is closed when the server is back to its listening
	// socket alone: it has read everything up to the client's FIN.
	if _, err := waitSockets(spid, func(n int) bool { return n <= base }, 30*time.Second); err != nil {
		return fail("sockperf server did not close the client's connection: %v", err)
	}
	o.DrainS = time.Since(exited).Seconds()
	srv1, err := readProcCPU(spid, "sockperf")
	if err != nil {
		return fail("sockperf server: %v", err)
	}
	o.SrvCPU = (srv1.UserS + srv1.SysS) - (srv0.UserS + srv0.SysS)
	srvOut := s.interrupt()
	if o.sockperfResult, err = parseSockperf(out); err != nil {
		return o, err
	}
	if o.ServerMsgs, err = parseSockperfServer(srvOut); err != nil {
		return o, err
	}
	// The client may count one message more than it sent: sockperf 3.7
	// counts a message before its send (client_send_packet), and keeps
	// the count when the end-of-test SIGALRM interrupts a send that was
	// waiting for room before it wrote a byte (EINTR). The splice paths
	// show it: their rings then took exactly the bytes of the messages
	// the server handled (sockperfOn). A ping-pong client may also exit
	// before the server has answered its last request.
	if o.ServerMsgs != o.Sent && o.ServerMsgs != o.Sent-1 {
		return o, fmt.Errorf("sockperf %s: the client sent %d messages, the server handled %d", r.Mode, o.Sent, o.ServerMsgs)
	}
	return o, nil
}

// sockperfSetupCPU samples the CPU time a sockperf client (cpid) spent
// before its test: its start, its 100 ms TSC calibration sleep and its
// connect to the server (spid, which then holds more than base sockets).
// After connecting, the client sleeps 2 s before it starts sending: the
// time read in that sleep is its set-up. It gives up (false) when the
// client exits first, or when it first finds the client connected and
// asleep more than 1 s after the connection: that sleep might be the one
// after the test.
func sockperfSetupCPU(cpid, spid, base int) (procCPU, bool) {
	var conn time.Time
	for deadline := time.Now().Add(readyWait + 10*time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		p, err := readProcCPU(cpid, "")
		if err != nil || p.State == 'Z' {
			return p, false
		}
		if conn.IsZero() {
			if n, err := socketFDs(spid); err != nil {
				return p, false
			} else if n > base {
				conn = time.Now()
			}
		}
		if !conn.IsZero() && p.Comm == "sockperf" && p.State == 'S' && inSyscall(cpid, unix.SYS_CLOCK_NANOSLEEP) {
			// Read again: the first read may predate the sleep.
			p, err = readProcCPU(cpid, "sockperf")
			return p, err == nil && time.Since(conn) < time.Second
		}
	}
	return procCPU{}, false
}

// interrupt stops the server with SIGINT, on which sockperf prints its
// totals, and returns what it printed; one that does not exit within 5 s
// is killed.
func (s *server) interrupt() string {
	s.p.Signal(os.Interrupt)
	for deadline := time.Now().Add(5 * time.Second); !s.exited() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	s.p.Kill()
	s.p.Wait()
	return s.out.String()
}

// sockperfResult is what a sockperf 3.7 client prints.
type sockperfResult struct {
	Version string // "3.7"
	Mode    string // spPingPong or spThroughput
	// Sent is every message the client sent, Received every reply it got
	// (ping-pong), over RunSec, the whole run ("[Total Run]" in
	// ping-pong, "Total of N messages sent in S sec" in throughput).
	Sent, Received int64
	RunSec         float64
	// ping-pong, over the measured window
	AvgLatencyUs float64 // mean RTT / 2
	P50Us        float64 // also RTT / 2
	ValidSec     float64 // measured window, after the warm-up trim
	ValidMsgs    int     // replies received in it
	Dropped      int
	// throughput, at the sender: messages and MB (1e6 bytes) per second
	MsgRate, MBps float64
}

var (
	ansiRE     = regexp.MustCompile("\x1b\\[[0-9;]*m")
	spVerRE    = regexp.MustCompile(`version #?([0-9]+(?:\.[0-9]+)+)`)
	spAvgRE    = regexp.MustCompile(`avg-latency=([0-9.]+)`)
	spP50RE    = regexp.MustCompile(`percentile 50\.000 =\s*([0-9.]+)`)
	spValidRE  = regexp.MustCompile(`\[Valid Duration\] RunTime=([0-9.]+) sec; SentMessages=[0-9]+; ReceivedMessages=([0-9]+)`)
	spTotalRE  = regexp.MustCompile(`\[Total Run\] RunTime=([0-9.]+) sec;.* SentMessages=([0-9]+); ReceivedMessages=([0-9]+)`)
	spDroppedR = regexp.MustCompile(`# dropped messages = ([0-9]+)`)
	spTPSentRE = regexp.MustCompile(`Total of ([0-9]+) messages sent in ([0-9.]+) sec`)
	spTPRateRE = regexp.MustCompile(`Message Rate is ([0-9.]+) \[msg/sec\]`)
	spTPBWRE   = regexp.MustCompile(`BandWidth is ([0-9.]+) MBps`)
	spSrvRE    = regexp.MustCompile(`Total ([0-9]+) messages received and handled`)
)

// parseSockperf reads sockperf 3.7 ping-pong or throughput client output
// (colour codes and all).
func parseSockperf(out string) (sockperfResult, error) {
	var r sockperfResult
	out = ansiRE.ReplaceAllString(out, "")
	if m := spVerRE.FindStringSubmatch(out); m != nil {
		r.Version = m[1]
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "ERROR") || strings.Contains(l, "No valid observations") {
			return r, errors.New("sockperf: " + strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "sockperf:")))
		}
	}
	if m := spTPSentRE.FindStringSubmatch(out); m != nil {
		r.Mode = spThroughput
		r.Sent, _ = strconv.ParseInt(m[1], 10, 64)
		r.RunSec, _ = strconv.ParseFloat(m[2], 64)
		if m := spTPRateRE.FindStringSubmatch(out); m != nil {
			r.MsgRate, _ = strconv.ParseFloat(m[1], 64)
		}
		if m := spTPBWRE.FindStringSubmatch(out); m != nil {
			r.MBps, _ = strconv.ParseFloat(m[1], 64)
		}
		if r.Sent <= 0 || r.RunSec <= 0 || r.MsgRate <= 0 {
			return r, fmt.Errorf("sockperf throughput: %d messages in %v s at %v msg/s: %s", r.Sent, r.RunSec, r.MsgRate, lastLines(out, 3))
		}
		return r, nil
	}
	r.Mode = spPingPong
	m := spAvgRE.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("sockperf: no avg-latency in output: %s", lastLines(out, 3))
	}
	var err error
	if r.AvgLatencyUs, err = strconv.ParseFloat(m[1], 64); err != nil || r.AvgLatencyUs <= 0 {
		return r, fmt.Errorf("sockperf: avg-latency %q", m[1])
	}
	if m := spP50RE.FindStringSubmatch(out); m != nil {
		r.P50Us, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := spValidRE.FindStringSubmatch(out); m != nil {
		r.ValidSec, _ = strconv.ParseFloat(m[1], 64)
		r.ValidMsgs, _ = strconv.Atoi(m[2])
	}
	if m := spTotalRE.FindStringSubmatch(out); m != nil {
		r.RunSec, _ = strconv.ParseFloat(m[1], 64)
		r.Sent, _ = strconv.ParseInt(m[2], 10, 64)
		r.Received, _ = strconv.ParseInt(m[3], 10, 64)
	}
	if m := spDroppedR.FindStringSubmatch(out); m != nil {
		r.Dropped, _ = strconv.Atoi(m[1])
	}
	if r.Dropped > 0 {
		// Messages lost on TCP mean the run was broken, not slow.
		return r, fmt.Errorf("sockperf: %d dropped messages", r.Dropped)
	}
	return r, nil
}

// parseSockperfServer reads how many messages a sockperf 3.7 server
// handled from what it prints when interrupted.
func parseSockperfServer(out string) (int64, error) {
	m := spSrvRE.FindStringSubmatch(ansiRE.ReplaceAllString(out, ""))
	if m == nil {
		return 0, fmt.Errorf("sockperf server: no message count in its output: %s", lastLines(out, 3))
	}
	return strconv.ParseInt(m[1], 10, 64)
}
