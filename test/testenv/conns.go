// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package testenv

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Conns is the helper role "conns": many short connections. On each, the
// client sends one request, its tenant's identity and a seeded random
// payload with its sha256; the server checks both and echoes the payload
// under its own identity; the client checks the echo. Every message is
// checked, so a byte delivered to the wrong tenant, or lost, altered or
// reordered, is counted.
type Conns struct {
	Role   string `json:"role"`   // "server" or "client"
	Addr   string `json:"addr"`   // listen or dial address, host:port
	Tenant string `json:"tenant"` // the identity every message carries, at most 255 bytes
	// LocalPort, for a client, is the source port of every connection, so
	// that connections repeat one 4-tuple. They run one at a time and end
	// with a reset (SO_LINGER 0), which frees the tuple at once (no
	// TIME_WAIT).
	LocalPort int `json:"localPort,omitempty"`
	// Count is how many connections a client makes, or Duration how long
	// it keeps making them; then it tells the server to stop.
	Count    int           `json:"count,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	Workers  int           `json:"workers,omitempty"`  // client: connections at once (without LocalPort); 0: 1
	MaxBytes int           `json:"maxBytes,omitempty"` // client: each payload is 1..MaxBytes bytes; 0: 4096
	Seed     uint64        `json:"seed"`
	Timeout  time.Duration `json:"timeout"` // bounds the whole run; 0: Duration + 120 s
}

// ConnsResult is what a conns helper reports.
type ConnsResult struct {
	Conns    int64  `json:"conns"`    // connections whose messages were all checked
	Msgs     int64  `json:"msgs"`     // messages checked: requests (server), echoes (client)
	Bytes    int64  `json:"bytes"`    // payload bytes in them
	Foreign  int64  `json:"foreign"`  // messages that carried another tenant's identity
	Corrupt  int64  `json:"corrupt"`  // messages whose payload, hash, length or sequence number was wrong
	Failed   int64  `json:"failed"`   // connections that ended in an I/O error
	FirstErr string `json:"firstErr"` // the first of those problems
}

func init() { Register("conns", runConns) }

// A request is: tenant length (1 byte), tenant, kind (1 byte), sequence
// number (8), payload length (4), sha256 of the payload (32), payload.
// A reply is the same with the server's tenant and the echoed payload.
const (
	kindData = 'D'
	kindQuit = 'Q' // the client is done: the server reports
)

type connMsg struct {
	tenant string
	kind   byte
	seq    uint64
	sum    [32]byte
	data   []byte
}

func writeMsg(w io.Writer, m connMsg) error {
	var b bytes.Buffer
	b.WriteByte(byte(len(m.tenant)))
	b.WriteString(m.tenant)
	b.WriteByte(m.kind)
	b.Write(binary.BigEndian.AppendUint64(nil, m.seq))
	b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(m.data))))
	b.Write(m.sum[:])
	b.Write(m.data)
	_, err := w.Write(b.Bytes())
	return err
}

// maxConnPayload bounds what a reader allocates for a payload, whatever
// a corrupted length says.
const maxConnPayload = 16 << 20

func readMsg(r io.Reader) (m connMsg, err error) {
	var n [1]byte
	if _, err = io.ReadFull(r, n[:]); err != nil {
		return m, err
	}
	head := make([]byte, int(n[0])+1+8+4+32)
	if _, err = io.ReadFull(r, head); err != nil {
		return m, fmt.Errorf("message header: %w", err)
	}
	m.tenant = string(head[:n[0]])
	head = head[n[0]:]
	m.kind, m.seq = head[0], binary.BigEndian.Uint64(head[1:9])
	size := binary.BigEndian.Uint32(head[9:13])
	copy(m.sum[:], head[13:])
	if size > maxConnPayload {
		return m, fmt.Errorf("message of tenant %q claims %d payload bytes", m.tenant, size)
	}
	m.data = make([]byte, size)
	if _, err = io.ReadFull(r, m.data); err != nil {
		return m, fmt.Errorf("payload: %w", err)
	}
	return m, nil
}

// connsTally counts what one end checked; safe for concurrent use.
type connsTally struct {
	conns, msgs, bytes, foreign, corrupt, failed atomic.Int64
	mu                                           sync.Mutex
	first                                        string
}

func (t *connsTally) problem(n *atomic.Int64, format string, a ...any) {
	n.Add(1)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.first == "" {
		t.first = fmt.Sprintf(format, a...)
	}
}

// check counts one received message against the tenant it must carry
// and the payload it must hold; it reports whether all was right.
func (t *connsTally) check(who string, m connMsg, tenant string, seq uint64, want []byte) bool {
	t.msgs.Add(1)
	t.bytes.Add(int64(len(m.data)))
	ok := true
	if m.tenant != tenant {
		t.problem(&t.foreign, "%s: message %d carries tenant %q, want %q", who, m.seq, m.tenant, tenant)
		ok = false
	}
	switch {
	case sha256.Sum256(m.data) != m.sum:
		t.problem(&t.corrupt, "%s: message %d: payload of %d bytes does not match its sha256", who, m.seq, len(m.data))
		ok = false
	case m.seq != seq:
		t.problem(&t.corrupt, "%s: got message %d, want %d", who, m.seq, seq)
		ok = false
	case want != nil && !bytes.Equal(m.data, want):
		t.problem(&t.corrupt, "%s: message %d: echo of %d bytes differs from the %d sent", who, m.seq, len(m.data), len(want))
		ok = false
	}
	return ok
}

func (t *connsTally) result() ConnsResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	return ConnsResult{Conns: t.conns.Load(), Msgs: t.msgs.Load(), Bytes: t.bytes.Load(),
		Foreign: t.foreign.Load(), Corrupt: t.corrupt.Load(), Failed: t.failed.Load(), FirstErr: t.first}
}

func runConns(x Conns, ready func()) (ConnsResult, error) {
	if len(x.Tenant) > 255 {
		return ConnsResult{}, fmt.Errorf("tenant %q is longer than 255 bytes", x.Tenant)
	}
	deadline := time.Now().Add(x.Timeout)
	switch x.Role {
	case "server":
		return connsServer(x, deadline, ready)
	case "client":
		return connsClient(x, deadline)
	}
	return ConnsResult{}, errors.New("unknown role " + x.Role)
}

// connsServer checks and echoes each connection's request until a client
// says it is done.
func connsServer(x Conns, deadline time.Time, ready func()) (ConnsResult, error) {
	ln, err := ListenTCP("tcp", x.Addr, false)
	if err != nil {
		return ConnsResult{}, err
	}
	defer ln.Close()
	ready()
	ln.SetDeadline(deadline)
	var t connsTally
	var wg sync.WaitGroup
	quit := make(chan struct{})
	var once sync.Once
	go func() {
		<-quit
		ln.Close()
	}()
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			select {
			case <-quit:
				wg.Wait()
				return t.result(), nil
			default:
			}
			wg.Wait()
			return t.result(), fmt.Errorf("accept (no quit from the client): %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			c.SetDeadline(deadline)
			m, err := readMsg(c)
			if err != nil {
				t.problem(&t.failed, "server: reading a request: %v", err)
				return
			}
			if m.kind == kindQuit {
				once.Do(func() { close(quit) })
				return
			}
			if !t.check("server", m, x.Tenant, m.seq, nil) {
				return
			}
			if err := writeMsg(c, connMsg{tenant: x.Tenant, kind: kindData, seq: m.seq, sum: m.sum, data: m.data}); err != nil {
				t.problem(&t.failed, "server: echoing %d: %v", m.seq, err)
				return
			}
			// The client closes once it has the echo (with a reset
			// when it reuses its port): anything more was meant for
			// another connection.
			if late, err := readMsg(c); err == nil {
				n := &t.corrupt
				if late.tenant != x.Tenant {
					n = &t.foreign
				}
				t.problem(n, "server: the request of connection %d (tenant %q) arrived on the socket of connection %d", late.seq, late.tenant, m.seq)
				return
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, unix.ECONNRESET) {
				t.problem(&t.corrupt, "server: after the request of connection %d: %v", m.seq, err)
				return
			}
			t.conns.Add(1)
		}()
	}
}

// connsClient makes the connections, checks every echo, then tells the
// server it is done.
func connsClient(x Conns, deadline time.Time) (ConnsResult, error) {
	workers, maxBytes := max(x.Workers, 1), x.MaxBytes
	if x.LocalPort != 0 {
		workers = 1
	}
	if maxBytes <= 0 {
		maxBytes = 4096
	}
	end := time.Now().Add(x.Duration)
	var next atomic.Int64
	more := func() (uint64, bool) {
		i := next.Add(1) - 1
		if x.Count > 0 {
			return uint64(i), i < int64(x.Count)
		}
		return uint64(i), time.Now().Before(end)
	}
	var t connsTally
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq, ok := more(); ok && time.Now().Before(deadline); seq, ok = more() {
				rng := rand.New(rand.NewPCG(x.Seed, seq))
				data := make([]byte, 1+rng.IntN(maxBytes))
				for i := 0; i < len(data); i += 8 {
					var w [8]byte
					binary.LittleEndian.PutUint64(w[:], rng.Uint64())
					copy(data[i:], w[:])
				}
				if err := connsOne(x, deadline, &t, seq, data); err != nil {
					t.problem(&t.failed, "client: connection %d: %v", seq, err)
				}
			}
		}()
	}
	wg.Wait()
	c, err := connsDial(x, deadline)
	if err != nil {
		return t.result(), fmt.Errorf("telling the server to stop: %w", err)
	}
	defer c.Close()
	return t.result(), writeMsg(c, connMsg{tenant: x.Tenant, kind: kindQuit})
}

// connsOne runs one connection: request, echo, close.
func connsOne(x Conns, deadline time.Time, t *connsTally, seq uint64, data []byte) error {
	c, err := connsDial(x, deadline)
	if err != nil {
		return err
	}
	defer c.Close()
	if x.LocalPort != 0 {
		c.SetLinger(0)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := writeMsg(c, connMsg{tenant: x.Tenant, kind: kindData, seq: seq, sum: sha256.Sum256(data), data: data}); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	m, err := readMsg(c)
	if err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	if t.check("client", m, x.Tenant, seq, data) {
		t.conns.Add(1)
	}
	return nil
}

// connsDial connects, from LocalPort when set.
func connsDial(x Conns, deadline time.Time) (*net.TCPConn, error) {
	d := Dialer(false)
	d.Deadline = deadline
	if x.LocalPort != 0 {
		d.LocalAddr = &net.TCPAddr{Port: x.LocalPort}
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			})
			return errors.Join(err, serr)
		}
	}
	return dialRetry(d, x.Addr)
}

// ConnsExchange runs a conns server in srv and a client in cli and waits
// for both reports.
func ConnsExchange(t T, srv, cli *Container, server, client Conns) (s, c ConnsResult, err error) {
	t.Helper()
	var procs [2]*Proc
	for i, x := range []Conns{server, client} {
		if x.Timeout == 0 {
			x.Timeout = x.Duration + 120*time.Second
		}
		if procs[i], err = []*Container{srv, cli}[i].StartHelper(t, Helper{Role: "conns", Spec: x, Ready: x.Role == "server"}); err != nil {
			return s, c, fmt.Errorf("starting conns %s: %w", x.Role, err)
		}
	}
	s, c, serr, cerr := awaitPair[ConnsResult](procs[0], procs[1])
	return s, c, errors.Join(serr, cerr)
}
