// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

import (
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The ends' accounting is what every ratio rests on: both ends must agree
// on transactions and bytes, for every family the benchmark uses without
// special kernel support. Runs unprivileged over 127.0.0.1 and a Unix socket.
func TestEndsAgree(t *testing.T) {
	for _, fam := range []string{"tcp", "unix"} {
		for _, kind := range []string{"rr", "crr", "stream"} {
			for _, size := range []int{1, 1000, 64 << 10} {
				t.Run(fmt.Sprintf("%s/%s/%d", fam, kind, size), func(t *testing.T) {
					addr := filepath.Join(t.TempDir(), "s")
					if fam == "tcp" {
						addr = freeLoopback(t)
					}
					spec := EndSpec{Kind: kind, Family: fam, Addr: addr, Size: size, Duration: 50 * time.Millisecond}
					srv, cli, serr, cerr := runPair(spec)
					if serr != nil || cerr != nil {
						t.Fatalf("server: %v client: %v", serr, cerr)
					}
					if kind == "rr" || kind == "crr" {
						if cli.Txns == 0 || srv.Txns != cli.Txns {
							t.Fatalf("transactions: client %d server %d", cli.Txns, srv.Txns)
						}
						if want := cli.Txns * int64(size); cli.Bytes != want || srv.Bytes != want {
							t.Fatalf("bytes: client %d server %d, want %d each", cli.Bytes, srv.Bytes, want)
						}
						if cli.P50us <= 0 || cli.P99us < cli.P50us {
							t.Fatalf("latency p50 %v p99 %v", cli.P50us, cli.P99us)
						}
					} else if want := cli.Txns * int64(size); cli.Txns == 0 || srv.Bytes != want || srv.Seconds <= 0 {
						t.Fatalf("stream: sent %d writes of %d, received %d bytes in %v s", cli.Txns, size, srv.Bytes, srv.Seconds)
					}
				})
			}
		}
	}
}

func freeLoopback(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// runPair runs both ends in this process; runEnd locks each goroutine to
// its own thread.
func runPair(spec EndSpec) (srv, cli EndResult, serr, cerr error) {
	var wg sync.WaitGroup
	wg.Add(1)
	s := spec
	s.Role = "server"
	go func() {
		defer wg.Done()
		srv, serr = runEnd(s, func() {})
	}()
	c := spec
	c.Role = "client"
	deadline := time.Now().Add(5 * time.Second)
	for {
		if cli, cerr = runEnd(c, func() {}); cerr == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // the server may not listen yet
	}
	wg.Wait()
	return srv, cli, serr, cerr
}
