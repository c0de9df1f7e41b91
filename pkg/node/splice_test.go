// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package node_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/counters"
	"github.com/socksplice/socksplice/pkg/internal/nodetest"
	"github.com/socksplice/socksplice/pkg/node"
)

// connChildEnv turns the test binary into a child that makes loopback
// connections in its own netns, one per "go" line on stdin.
const connChildEnv = "SOCKSPLICE_NODE_TEST_CONN_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(connChildEnv) != "" {
		if err := connChild(); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func connChild() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return err
	}
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	unix.Close(fd)
	if err != nil {
		return err
	}
	fmt.Printf("ready %d\n", cookie)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() && in.Text() == "go" {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		s, err := ln.Accept()
		if err != nil {
			return err
		}
		buf := []byte("x")
		if _, err := c.Write(buf); err != nil {
			return err
		}
		if _, err := io.ReadFull(s, buf); err != nil {
			return err
		}
		c.Close()
		s.Close()
		ln.Close()
		fmt.Println("done")
	}
	return nil
}

// stubbedNode loads a node under a fresh pin directory (removed at
// cleanup) whose splice program is the one with stubbed kfuncs.
func stubbedNode(t *testing.T) *node.Objects {
	t.Helper()
	needRoot(t)
	dir := pinDir(t)
	o := load(t, dir)
	ok := false
	defer func() {
		if !ok { // t.Fatal in loadStubbed: the caller gets no node to close
			o.Close()
		}
	}()
	nodetest.LoadStubbedSplice(t, o)
	ok = true
	if _, err := os.Stat(filepath.Join(dir, node.ProgsDir, "splice")); err != nil {
		t.Errorf("splice program not pinned: %v", err)
	}
	return o
}

// connChildIn starts the connection child in a netns of its own inside the
// cgroup dir. It returns the child's netns cookie and a function that has
// it make one loopback connection and exchange a byte; the child goes when
// the test ends.
func connChildIn(t *testing.T, dir string) (uint64, func()) {
	t.Helper()
	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), connChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWNET,
		UseCgroupFD: true,
		CgroupFD:    int(cg.Fd()),
		Pdeathsig:   syscall.SIGKILL,
	}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill() // ours, by PID
		cmd.Wait()
	})
	out := bufio.NewReader(stdout)
	line, _ := out.ReadString('\n')
	cs, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	if !ok {
		t.Fatalf("child: %q", line)
	}
	cookie, err := strconv.ParseUint(cs, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return cookie, func() {
		t.Helper()
		io.WriteString(stdin, "go\n")
		if line, _ := out.ReadString('\n'); line != "done\n" {
			t.Fatalf("child: %q", line)
		}
	}
}

func attach(t *testing.T, dir string, p *ebpf.Program) {
	t.Helper()
	l, err := link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: ebpf.AttachCGroupSockOps, Program: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
}

// TestSpliceProgramSharesMaps loads the splice program, kfuncs stubbed,
// with a node's maps, and runs loopback connections through it in a child
// netns: it must pass the verifier, read the shared enrollment, count into
// the shared counters for each program level that hands a socket over,
// and each engine must leave the other's netns alone.
func TestSpliceProgramSharesMaps(t *testing.T) {
	o := stubbedNode(t)
	defer o.Close()

	root, err := cgroup.Root()
	if err != nil {
		t.Fatal(err)
	}
	outer := nodetest.NewCgroup(t, root)
	inner := nodetest.NewCgroup(t, outer)
	attach(t, outer, o.Splice) // as a node-level link would
	attach(t, inner, o.Splice)
	attach(t, inner, o.SockOps)

	cookie, connectOnce := connChildIn(t, inner)
	defer o.Enroll.Delete(cookie)

	connect := func(flags uint32) counters.Totals {
		t.Helper()
		pol := sbpf.AbiSsPolicy{Flags: flags, BusyPollUs: 50, RingKib: 64}
		if err := o.Enroll.Update(cookie, &pol, ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
		before, err := counters.Read(o.Counters)
		if err != nil {
			t.Fatal(err)
		}
		connectOnce()
		after, err := counters.Read(o.Counters)
		if err != nil {
			t.Fatal(err)
		}
		return counters.Totals{
			Paired:        after.Paired - before.Paired,
			SplicePaired:  after.SplicePaired - before.SplicePaired,
			SpliceRefused: after.SpliceRefused - before.SpliceRefused,
			PolicyRefused: after.PolicyRefused - before.PolicyRefused,
			NoPeer:        after.NoPeer - before.NoPeer,
		}
	}

	// Splice-enrolled: both ends handed over by both levels (the stub
	// answers 0 each time; the module answers 1 to the second call),
	// sockmap stays out.
	if d := connect(sbpf.PolicyEnabled | sbpf.PolicyLoopback | sbpf.PolicySplice); d != (counters.Totals{SplicePaired: 4}) {
		t.Errorf("splice-enrolled loopback connection: counters moved %+v, want splicePaired 4 only", d)
	}
	// Sockmap-enrolled: the splice program stays out.
	if d := connect(sbpf.PolicyEnabled | sbpf.PolicyLoopback); d != (counters.Totals{Paired: 2}) {
		t.Errorf("sockmap-enrolled loopback connection: counters moved %+v, want paired 2 only", d)
	}
	// Loopback not allowed: refused by policy, by both splice programs.
	if d := connect(sbpf.PolicyEnabled | sbpf.PolicySplice); d != (counters.Totals{PolicyRefused: 4}) {
		t.Errorf("splice-enrolled without loopback: counters moved %+v, want policyRefused 4 only", d)
	}
}

// An upgrade moves each pinned link to this build's program of the engine
// it runs; without this build's splice program a splice link keeps its own.
func TestUpgradeMovesLinksByEngine(t *testing.T) {
	o := stubbedNode(t)
	dir := o.Dir
	root, err := cgroup.Root()
	if err != nil {
		t.Fatal(err)
	}
	cg := nodetest.NewCgroup(t, root)
	sockmapPin := filepath.Join(dir, node.ContainersDir, "a")
	spliceLink := filepath.Join(dir, node.ContainersDir, "b")
	if err := cgroup.Attach(cg, o.SockOps, sockmapPin); err != nil {
		t.Fatal(err)
	}
	if err := cgroup.Attach(cg, o.Splice, spliceLink); err != nil {
		t.Fatal(err)
	}
	for pin, want := range map[string]bool{sockmapPin: false, spliceLink: true} {
		if got, err := node.LinkRunsSplice(pin); err != nil || got != want {
			t.Errorf("LinkRunsSplice(%s) = %v, %v; want %v", pin, got, err, want)
		}
	}
	oldSplice := progID(t, o.Splice)
	if err := o.PutMeta(node.MetaNode, node.Meta{Stamp: "old"}); err != nil {
		t.Fatal(err)
	}
	o.Close()

	o2, err := node.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Close()
	if got, want := linkProg(t, sockmapPin), progID(t, o2.SockOps); got != want {
		t.Errorf("sockmap link runs program %d, want the new sockops %d", got, want)
	}
	want := oldSplice
	if o2.Splice != nil {
		want = progID(t, o2.Splice)
	}
	if got := linkProg(t, spliceLink); got != want {
		t.Errorf("splice link runs program %d, want %d (new splice program loaded: %v)", got, want, o2.Splice != nil)
	}
	os.Remove(sockmapPin)
	os.Remove(spliceLink)
}

func linkProg(t *testing.T, pin string) ebpf.ProgramID {
	t.Helper()
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info.Program
}
