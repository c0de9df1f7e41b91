// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package install

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

// The child role: an installer that names each step on stdout and waits
// for a line on stdin before going on, so the test can SIGKILL it at any
// step.
const childEnv = "SOCKSPLICE_INSTALL_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

func runChild() int {
	o := Defaults()
	o.ConfDir, o.BinDir, o.Source = os.Getenv("CONF_DIR"), os.Getenv("BIN_DIR"), os.Getenv("SOURCE")
	o.Logf = func(string, ...any) {}
	in := bufio.NewReader(os.Stdin)
	o.Step = func(step string) {
		fmt.Println(step)
		if _, err := in.ReadString('\n'); err != nil {
			os.Exit(3)
		}
	}
	if _, err := Install(o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("done")
	return 0
}

type killEnv struct {
	conf, bin, src                   string
	oldList, newList, oldBin, newBin []byte
}

// setup lays out a node whose primary changed since our last sync and
// whose binary is out of date: the installer has both to replace.
func setup(t *testing.T) killEnv {
	root := t.TempDir()
	e := killEnv{conf: filepath.Join(root, "net.d"), bin: filepath.Join(root, "bin"), src: filepath.Join(root, "new-socksplice")}
	for _, d := range []string{e.conf, e.bin} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.oldBin, e.newBin = make([]byte, 1<<20), make([]byte, 1<<20)
	rand.Read(e.oldBin)
	rand.Read(e.newBin)
	writeFile(t, filepath.Join(e.bin, "socksplice"), e.oldBin)
	writeFile(t, e.src, e.newBin)
	primary := filepath.Join(e.conf, "10-net.conflist")
	old := `{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"bridge","bridge":"old"}]}`
	d := Defaults()
	var err error
	if e.oldList, err = chain(primary, []byte(old), d.entry()); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(e.conf, DefaultConfName), e.oldList)
	neu := `{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"bridge","bridge":"new"}]}`
	writeFile(t, primary, []byte(neu))
	if e.newList, err = chain(primary, []byte(neu), d.entry()); err != nil {
		t.Fatal(err)
	}
	return e
}

// child starts the installer on e and runs it up to step stop (counted
// from 0), then SIGKILLs it; stop < 0 lets it finish. It returns the
// steps it named.
func (e killEnv) child(t *testing.T, stop int) []string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=1", "CONF_DIR="+e.conf, "BIN_DIR="+e.bin, "SOURCE="+e.src)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var steps []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if sc.Text() == "done" {
			break
		}
		steps = append(steps, sc.Text())
		if len(steps)-1 == stop {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			break
		}
		fmt.Fprintln(stdin, "go on")
	}
	err = cmd.Wait()
	if stop < 0 && err != nil {
		t.Fatalf("installer: %v\n%s", err, stderr.String())
	}
	return steps
}

// TestKilledMidWrite kills the installer right after each of its steps
// and checks what a runtime would then read: the old or the new
// complete conflist and binary, never a part, and no temp file among
// the configs libcni lists. The next installer run completes the job
// and removes the temp files.
func TestKilledMidWrite(t *testing.T) {
	all := setup(t).child(t, -1)
	want := []string{"binary:temp-created", "binary:temp-half-written", "binary:temp-written", "binary:renamed",
		"conflist:temp-created", "conflist:temp-half-written", "conflist:temp-written", "conflist:renamed"}
	if !slices.Equal(all, want) {
		t.Fatalf("the installer's steps are %v, want %v", all, want)
	}
	for i, step := range all {
		e := setup(t)
		e.child(t, i)
		own := filepath.Join(e.conf, DefaultConfName)
		files, err := libcni.ConfFiles(e.conf, ConfExtensions)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(files, []string{own, filepath.Join(e.conf, "10-net.conflist")}) {
			t.Errorf("killed after %s: libcni lists %v", step, files)
		}
		if _, err := libcni.ConfListFromFile(own); err != nil {
			t.Errorf("killed after %s: libcni cannot load our conflist: %v", step, err)
		}
		// Before its rename a file is the old one, from it on the new one.
		listWant, binWant := e.oldList, e.oldBin
		if i >= slices.Index(all, "binary:renamed") {
			binWant = e.newBin
		}
		if i >= slices.Index(all, "conflist:renamed") {
			listWant = e.newList
		}
		if !bytes.Equal(readFile(t, own), listWant) {
			t.Errorf("killed after %s: our conflist is neither what it was nor what it should become:\n%s", step, readFile(t, own))
		}
		if !bytes.Equal(readFile(t, filepath.Join(e.bin, "socksplice")), binWant) {
			t.Errorf("killed after %s: the binary is not the complete old or new one", step)
		}
		// The next run finishes and leaves nothing else behind.
		e.child(t, -1)
		if !bytes.Equal(readFile(t, own), e.newList) || !bytes.Equal(readFile(t, filepath.Join(e.bin, "socksplice")), e.newBin) {
			t.Errorf("killed after %s: the next run did not install the new files", step)
		}
		for _, d := range []string{e.conf, e.bin} {
			ents, _ := os.ReadDir(d)
			for _, f := range ents {
				if f.Name() != "socksplice" && f.Name() != DefaultConfName && f.Name() != "10-net.conflist" {
					t.Errorf("killed after %s: %s left in %s", step, f.Name(), d)
				}
			}
		}
	}
}
