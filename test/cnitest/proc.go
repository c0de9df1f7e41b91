// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package cnitest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/socksplice/socksplice/pkg/selftest"
)

const helperEnv = "SOCKSPLICE_TEST_HELPER"

// Xfer tells a helper process what to do: a server accepts one connection,
// a client dials; both then send Bytes of seeded random data with random
// write sizes while reading everything the peer sends, until EOF.
type Xfer struct {
	Role      string        `json:"role"` // "server" or "client"
	Addr      string        `json:"addr"` // listen or dial address, host:port
	LocalPort int           `json:"localPort,omitempty"`
	Bytes     int64         `json:"bytes"`
	Seed      uint64        `json:"seed"`
	Timeout   time.Duration `json:"timeout"`
	// SpliceRead makes the helper read with splice(2) into a pipe, as Go's
	// io.Copy between two TCP connections does.
	SpliceRead bool `json:"spliceRead,omitempty"`
}

// XferResult is what a helper reports.
type XferResult struct {
	SentSHA   string `json:"sentSHA"`
	RecvSHA   string `json:"recvSHA"`
	RecvBytes int64  `json:"recvBytes"`
	LoBytes   uint64 `json:"loBytes"` // lo rx bytes in the helper's netns after the run
	ReadEnd   string `json:"readEnd"` // how reading stopped: EOF, an error, a timeout
	Local     string `json:"local"`
	Remote    string `json:"remote"`
	Err       string `json:"err,omitempty"`
}

// PayloadSHA is the sha256 of what a helper with this seed sends.
func PayloadSHA(seed uint64, n int64) string {
	h := sha256.New()
	io.CopyN(h, rand.NewChaCha8(seedBytes(seed)), n)
	return hex.EncodeToString(h.Sum(nil))
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	for i := 0; i < 8; i++ {
		s[i] = byte(seed >> (8 * i))
	}
	return s
}

// Proc is a helper process running in a container.
type Proc struct {
	cmd    *exec.Cmd
	out    *bufio.Reader
	stderr bytes.Buffer
	done   chan struct{}
	err    error
}

// Start runs a helper in c's netns and cgroup.
func (c *Container) Start(t T, x Xfer) *Proc {
	t.Helper()
	if x.Timeout == 0 {
		x.Timeout = 120 * time.Second
	}
	spec, _ := json.Marshal(x)
	var stdout io.ReadCloser
	p, err := c.Exec(t, []string{os.Args[0], "-test.run=^$"}, func(cmd *exec.Cmd) (err error) {
		cmd.Env = append(os.Environ(), helperEnv+"="+string(spec))
		stdout, err = cmd.StdoutPipe()
		return err
	})
	if err != nil {
		t.Fatalf("starting helper: %v", err)
	}
	p.out = bufio.NewReader(stdout)
	if x.Role == "server" {
		line, err := p.out.ReadString('\n')
		if strings.TrimSpace(line) != "listening" {
			p.Kill()
			t.Fatalf("helper server did not start: %q %v %s", line, err, p.stderr.String())
		}
	}
	return p
}

// Exec starts argv in c's netns and cgroup (born there, so the sock_ops
// program attached to the cgroup sees its sockets). setup may set the
// environment and stdout before the start; stderr is kept for Stderr. The
// process is killed, by PID, at cleanup if it still runs.
func (c *Container) Exec(t T, argv []string, setup func(*exec.Cmd) error) (*Proc, error) {
	t.Helper()
	cg, err := os.Open(c.Cgroup)
	if err != nil {
		return nil, err
	}
	defer cg.Close()
	p := &Proc{done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", c.NetnsName}, argv...)...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd()), Pdeathsig: syscall.SIGKILL}
	p.cmd.Stderr = &p.stderr
	if setup != nil {
		if err := setup(p.cmd); err != nil {
			return nil, err
		}
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// Wait waits for a process started with Exec.
func (p *Proc) Wait() error {
	err := p.cmd.Wait()
	close(p.done)
	return err
}

// Stderr is what the process wrote to stderr so far.
func (p *Proc) Stderr() string { return p.stderr.String() }

// PID is the process ID (of "ip netns exec", which execs the command).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Result waits for the helper and returns its report.
func (p *Proc) Result() (XferResult, error) {
	var r XferResult
	dec := json.NewDecoder(p.out)
	derr := dec.Decode(&r)
	werr := p.Wait()
	if derr != nil {
		return r, fmt.Errorf("helper report: %v (exit: %v) %s", derr, werr, p.stderr.String())
	}
	if r.Err != "" {
		return r, errors.New("helper: " + r.Err)
	}
	return r, werr
}

// Kill ends the helper (ours, by PID) if it still runs.
func (p *Proc) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	if p.cmd.Process != nil {
		p.cmd.Process.Kill()
	}
}

// HelperMain runs the helper when the test binary was started as one. Call
// it first thing in TestMain.
func HelperMain() {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		return
	}
	var x Xfer
	var r XferResult
	if err := json.Unmarshal([]byte(spec), &x); err != nil {
		r.Err = err.Error()
	} else {
		r = runXfer(x)
	}
	json.NewEncoder(os.Stdout).Encode(r)
	os.Exit(0)
}

func runXfer(x Xfer) (r XferResult) {
	var conn *net.TCPConn
	deadline := time.Now().Add(x.Timeout)
	switch x.Role {
	case "server":
		ln, err := net.Listen("tcp", x.Addr)
		if err != nil {
			r.Err = err.Error()
			return
		}
		defer ln.Close()
		fmt.Println("listening")
		ln.(*net.TCPListener).SetDeadline(deadline)
		c, err := ln.Accept()
		if err != nil {
			r.Err = err.Error()
			return
		}
		conn = c.(*net.TCPConn)
	case "client":
		d := net.Dialer{Deadline: deadline}
		if x.LocalPort != 0 {
			d.LocalAddr = &net.TCPAddr{Port: x.LocalPort}
		}
		var c net.Conn
		var err error
		for i := 0; i < 50; i++ { // the server may still be binding
			if c, err = d.Dial("tcp", x.Addr); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			r.Err = err.Error()
			return
		}
		conn = c.(*net.TCPConn)
	default:
		r.Err = "unknown role " + x.Role
		return
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	r.Local, r.Remote = conn.LocalAddr().String(), conn.RemoteAddr().String()

	type readRes struct {
		n   int64
		sha string
		err error
	}
	rc := make(chan readRes, 1)
	go func() {
		h := sha256.New()
		if x.SpliceRead {
			n, end := selftest.SpliceRead(h, conn)
			r.ReadEnd = end
			rc <- readRes{n, hex.EncodeToString(h.Sum(nil)), nil}
			return
		}
		buf := make([]byte, 128<<10)
		var n int64
		for {
			m, err := conn.Read(buf)
			h.Write(buf[:m])
			n += int64(m)
			if err == io.EOF {
				r.ReadEnd = "EOF"
				rc <- readRes{n, hex.EncodeToString(h.Sum(nil)), nil}
				return
			}
			if err != nil {
				rc <- readRes{n, "", err}
				return
			}
		}
	}()

	src := rand.NewChaCha8(seedBytes(x.Seed))
	sizes := rand.New(rand.NewPCG(x.Seed, 7))
	h := sha256.New()
	buf := make([]byte, 256<<10)
	for left := x.Bytes; left > 0; {
		n := min(int64(1+sizes.IntN(len(buf))), left)
		src.Read(buf[:n])
		h.Write(buf[:n])
		if _, err := conn.Write(buf[:n]); err != nil {
			r.Err = "write: " + err.Error()
			return
		}
		left -= n
	}
	r.SentSHA = hex.EncodeToString(h.Sum(nil))
	if err := conn.CloseWrite(); err != nil {
		r.Err = "shutdown: " + err.Error()
		return
	}
	rr := <-rc
	if rr.err != nil {
		r.Err = fmt.Sprintf("read after %d bytes: %v", rr.n, rr.err)
		return
	}
	r.RecvBytes, r.RecvSHA = rr.n, rr.sha
	r.LoBytes = loRxBytes()
	return r
}

func loRxBytes() uint64 {
	b, err := os.ReadFile("/proc/self/net/dev")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(name) == "lo" {
			if f := strings.Fields(rest); len(f) > 0 {
				v, _ := strconv.ParseUint(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

// Exchange runs server x in srv and client y in cli and waits for both.
func Exchange(t T, srv, cli *Container, server, client Xfer) (s, c XferResult, err error) {
	t.Helper()
	sp := srv.Start(t, server)
	cp := cli.Start(t, client)
	var wg sync.WaitGroup
	var serr, cerr error
	wg.Add(2)
	go func() { defer wg.Done(); s, serr = sp.Result() }()
	go func() { defer wg.Done(); c, cerr = cp.Result() }()
	wg.Wait()
	if serr != nil || cerr != nil {
		return s, c, fmt.Errorf("server: %v; client: %v", serr, cerr)
	}
	return s, c, nil
}
