// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

import (
	"strings"
	"testing"
)

// Captured from redis-benchmark 7.0.15 (Debian bookworm) against
// redis-server on 127.0.0.1: "-t get -n 20000 -c 1 -P 1 --csv -q".
const redisCSV1 = `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"GET","27434.84","0.030","0.016","0.031","0.047","0.087","1.623"
`

// Same, -c 50 -n 50000, with a line redis-benchmark prints when it cannot
// read the server's CONFIG put in front, as non-CSV noise.
const redisCSV50 = `WARNING: Could not fetch server CONFIG
"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"GET","31786.40","1.061","0.224","0.863","2.159","6.135","13.039"
`

func TestParseRedisCSV(t *testing.T) {
	for _, tc := range []struct {
		in            string
		rps, p50, p99 float64
		avg           float64
	}{
		{redisCSV1, 27434.84, 0.031, 0.087, 0.030},
		{redisCSV50, 31786.40, 0.863, 6.135, 1.061},
	} {
		r, err := parseRedisCSV(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if r.Test != "GET" || r.RPS != tc.rps || r.P50ms != tc.p50 || r.P99ms != tc.p99 || r.AvgMs != tc.avg {
			t.Errorf("got %+v, want rps %v p50 %v p99 %v avg %v", r, tc.rps, tc.p50, tc.p99, tc.avg)
		}
	}
}

func TestParseRedisCSVColumnsByName(t *testing.T) {
	// Columns reordered: found by header name, not position.
	in := `"test","p50_latency_ms","rps","avg_latency_ms","p99_latency_ms"
"SET","0.5","1000","0.5","0.9"
"GET","0.25","2000","0.3","0.8"
`
	r, err := parseRedisCSV(in)
	if err != nil {
		t.Fatal(err)
	}
	if r.RPS != 2000 || r.P50ms != 0.25 {
		t.Errorf("got %+v", r)
	}
}

func TestParseRedisCSVErrors(t *testing.T) {
	for name, in := range map[string]string{
		"empty":     "",
		"no header": `"GET","27434.84","0.030","0.016","0.031","0.047","0.087","1.623"`,
		"no GET":    strings.SplitAfter(redisCSV1, "\n")[0] + `"SET","1","1","1","1","1","1","1"`,
		"no rps col": `"test","avg_latency_ms","p50_latency_ms","p99_latency_ms"
"GET","0.1","0.1","0.1"`,
		"bad number": `"test","rps","avg_latency_ms","p50_latency_ms","p99_latency_ms"
"GET","fast","0.1","0.1","0.1"`,
		"refused": "Could not connect to Redis at 127.0.0.1:16380: Connection refused\n",
	} {
		if r, err := parseRedisCSV(in); err == nil {
			t.Errorf("%s: no error, got %+v", name, r)
		}
	}
}

// Captured from sockperf 3.7 (Debian bookworm), "ping-pong --tcp -i
// 127.0.0.1 -p 11311 -m 1024 -t 2", colour codes and all.
const sockperfOut = "sockperf: \x1b[2;35m== version #3.7-no.git == \x1b[0m\n" +
	"sockperf[CLIENT] send on:sockperf: using recvfrom() to block on socket(s)\n" +
	"\n" +
	"[ 0] IP = 127.0.0.1       PORT = 11311 # TCP\n" +
	"sockperf: Warmup stage (sending a few dummy messages)...\n" +
	"sockperf: Starting test...\n" +
	"sockperf: Test end (interrupted by timer)\n" +
	"sockperf: Test ended\n" +
	"sockperf: [Total Run] RunTime=2.001 sec; Warm up time=400 msec; SentMessages=52537; ReceivedMessages=52536\n" +
	"sockperf: ========= Printing statistics for Server No: 0\n" +
	"sockperf: [Valid Duration] RunTime=1.549 sec; SentMessages=48589; ReceivedMessages=48589\n" +
	"sockperf: \x1b[2;35m====> avg-latency=15.914 (std-dev=72.202)\x1b[0m\n" +
	"sockperf: # dropped messages = 0; # duplicated messages = 0; # out-of-order messages = 0\n" +
	"sockperf: Summary: Latency is 15.914 usec\n" +
	"sockperf: \x1b[2;35mTotal 48589 observations\x1b[0m; each percentile contains 485.89 observations\n" +
	"sockperf: ---> <MAX> observation = 2678.871\n" +
	"sockperf: ---> percentile 99.999 = 2678.871\n" +
	"sockperf: ---> percentile 99.990 = 2160.871\n" +
	"sockperf: ---> percentile 99.900 = 1370.082\n" +
	"sockperf: ---> percentile 99.000 =   56.580\n" +
	"sockperf: ---> percentile 90.000 =   13.249\n" +
	"sockperf: ---> percentile 75.000 =   11.591\n" +
	"sockperf: ---> percentile 50.000 =   10.349\n" +
	"sockperf: ---> percentile 25.000 =    8.215\n" +
	"sockperf: ---> <MIN> observation =    8.075\n"

// What the same client prints, exiting 0, when nothing listens.
const sockperfRefused = "sockperf: \x1b[2;35m== version #3.7-no.git == \x1b[0m\n" +
	"sockperf: ERROR: Can`t connect socket (errno=111 Connection refused)\n"

// What it prints when the run is shorter than its warm-up trim
// (-t 1 --no-rdtsc).
const sockperfNoValid = "sockperf: \x1b[2;35m== version #3.7-no.git == \x1b[0m\n" +
	"sockperf: [Total Run] RunTime=1.001 sec; Warm up time=400 msec; SentMessages=50801; ReceivedMessages=50800\n" +
	"sockperf: ========= Printing statistics for Server No: 0\n" +
	"sockperf: No valid observations found. Try tune parameters: --time/--mps/--reply-every\n"

func TestParseSockperf(t *testing.T) {
	r, err := parseSockperf(sockperfOut)
	if err != nil {
		t.Fatal(err)
	}
	want := sockperfResult{Version: "3.7", Mode: spPingPong, Sent: 52537, Received: 52536, RunSec: 2.001,
		AvgLatencyUs: 15.914, P50Us: 10.349, ValidSec: 1.549, ValidMsgs: 48589}
	if r != want {
		t.Errorf("got %+v, want %+v", r, want)
	}
	// With one message in flight, 1e6/(2*avg) is the message rate over
	// the measured window: check sockperf agrees with itself.
	tps := 1e6 / (2 * r.AvgLatencyUs)
	if got := float64(r.ValidMsgs) / r.ValidSec; got < 0.95*tps || got > 1.05*tps {
		t.Errorf("window rate %.0f/s vs 1e6/(2*avg) %.0f/s", got, tps)
	}
}

func TestParseSockperfErrors(t *testing.T) {
	for name, tc := range map[string]struct{ in, want string }{
		"refused":  {sockperfRefused, "Can`t connect socket"},
		"no valid": {sockperfNoValid, "No valid observations"},
		"empty":    {"", "no avg-latency"},
		"dropped":  {strings.Replace(sockperfOut, "# dropped messages = 0", "# dropped messages = 3", 1), "3 dropped"},
	} {
		_, err := parseSockperf(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got error %v, want one containing %q", name, err, tc.want)
		}
	}
}

// Captured from sockperf 3.7 (Debian bookworm), "throughput --tcp -i
// 127.0.0.1 -p 11993 -m 4096 -t 1", and from its server, "server --tcp
// -i 127.0.0.1 -p 11993", after SIGINT.
const (
	sockperfTP = "sockperf: \x1b[2;35m== version #3.7-no.git == \x1b[0m\n" +
		"sockperf[CLIENT] send on:\n" +
		"[ 0] IP = 127.0.0.1       PORT = 11993 # TCP\n" +
		"sockperf: Warmup stage (sending a few dummy messages)...\n" +
		"sockperf: Starting test...\n" +
		"sockperf: Test end (interrupted by timer)\n" +
		"sockperf: Test ended\n" +
		"sockperf: Total of 62693 messages sent in 1.000 sec\n" +
		"\n" +
		"sockperf: \x1b[2;35mNOTE: test was performed, using msg-size=4096. For getting maximum throughput consider using --msg-size=1472\x1b[0m\n" +
		"sockperf: Summary: Message Rate is 62663 [msg/sec], Packet Rate is about 187989 [pkt/sec] (3 ip frags / msg)\n" +
		"sockperf: Summary: BandWidth is 244.777 MBps (1958.219 Mbps)\n"
	sockperfServer = "sockperf: \x1b[2;35m== version #3.7-no.git == \x1b[0m\n" +
		"sockperf: [SERVER] listen on:\n" +
		"[ 0] IP = 127.0.0.1       PORT = 11993 # TCP\n" +
		"sockperf: Warmup stage (sending a few dummy messages)...\n" +
		"sockperf: [tid 26196] using recvfrom() to block on socket(s)\n" +
		"sockperf: Test end (interrupted by user)\n" +
		"sockperf: Total 62693 messages received and handled\n" +
		"sockperf: cleanupAfterLoop() exit\n"
	// What a client sending more than the server takes (-m 65536) prints.
	sockperfTooBig = "sockperf: \x1b[2;35m== version #3.7-no.git == \x1b[0m\n" +
		"sockperf: Starting test...\n" +
		"IP = 127.0.0.1       PORT = 11995 # TCP sockperf: ERROR: A connection was forcibly closed by a peer (errno=0 Success)\n"
)

func TestParseSockperfThroughput(t *testing.T) {
	r, err := parseSockperf(sockperfTP)
	if err != nil {
		t.Fatal(err)
	}
	want := sockperfResult{Version: "3.7", Mode: spThroughput, Sent: 62693, RunSec: 1.000, MsgRate: 62663, MBps: 244.777}
	if r != want {
		t.Errorf("got %+v, want %+v", r, want)
	}
	n, err := parseSockperfServer(sockperfServer)
	if err != nil || n != 62693 {
		t.Errorf("server: %d, %v; want 62693", n, err)
	}
	if _, err := parseSockperfServer("sockperf: No messages were received on the server.\n"); err == nil {
		t.Error("a server without a count: no error")
	}
	if _, err := parseSockperf(sockperfTooBig); err == nil || !strings.Contains(err.Error(), "forcibly closed") {
		t.Errorf("too big a message: got %v", err)
	}
	// A throughput run that reports no rate is no figure.
	if _, err := parseSockperf(strings.Replace(sockperfTP, "Message Rate is 62663", "Message Rate is 0", 1)); err == nil {
		t.Error("a zero rate: no error")
	}
}
