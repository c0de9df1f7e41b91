// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package testenv

// Plugin builds whose BPF objects differ from this tree's, for the upgrade
// tests: the other release an upgrade installs, or a downgrade goes back
// from. A variant is this tree's plugin with bpf/'s objects compiled again
// from the same sources by the same bpf2go command (bpf/gen.go's), plus
// a few C flags, and embedded with go build -overlay: nothing but the
// objects differs, as between two releases, and no second object is
// committed.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
)

// Variants are the builds the upgrade tests install, by name, with the C
// flags that make them: "program" changes every program's code (BPF ISA
// v3 instead of bpf2go's v1: other instructions, other program tags, the
// same maps), "layout" changes a map's layout (the pair map resized, which
// the node must replace rather than reuse).
var Variants = map[string][]string{
	"program": {"-mcpu=v3"},
	"layout":  {"-DSS_PAIR_SLOTS=65536"},
}

// VariantsEnv names a directory holding prebuilt variants as
// DIR/NAME/socksplice (BuildVariants' layout): the VM's guest, which has
// no toolchain, gets them from the host (kernel/vm/test.sh).
const VariantsEnv = "SOCKSPLICE_CNI_VARIANTS"

var (
	variantMu    sync.Mutex
	variantBuilt = map[string]string{}
)

// PluginVariant returns the path of the variant build name (see Variants),
// built once per binary (or prebuilt, VariantsEnv). It skips when the
// build cannot compile BPF (no clang or llvm-strip).
func PluginVariant(t T, name string) string {
	t.Helper()
	if _, ok := Variants[name]; !ok {
		t.Fatalf("no plugin variant %q", name)
	}
	if dir := os.Getenv(VariantsEnv); dir != "" {
		return filepath.Join(dir, name, "socksplice")
	}
	variantMu.Lock()
	defer variantMu.Unlock()
	if p, ok := variantBuilt[name]; ok {
		return p
	}
	for _, tool := range []string{"clang", "llvm-strip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: building a plugin with other BPF objects needs %s (make generate's toolchain): %v", tool, err)
		}
	}
	dir := filepath.Join(BinDir(t), "variant-"+name)
	if err := BuildVariant(filepath.Join(dir, "socksplice"), Variants[name]...); err != nil {
		t.Fatalf("building plugin variant %s: %v", name, err)
	}
	variantBuilt[name] = filepath.Join(dir, "socksplice")
	return variantBuilt[name]
}

// BuildVariants builds every variant into dir/NAME/socksplice.
func BuildVariants(dir string) error {
	names := make([]string, 0, len(Variants))
	for n := range Variants {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := BuildVariant(filepath.Join(dir, n, "socksplice"), Variants[n]...); err != nil {
			return fmt.Errorf("variant %s: %w", n, err)
		}
	}
	return nil
}

// BuildVariant builds the plugin into out with bpf/'s sockmap and splice
// objects compiled with cflags added to bpf/gen.go's.
func BuildVariant(out string, cflags ...string) error {
	root := moduleRoot()
	bpfDir := filepath.Join(root, "bpf")
	gens, err := bpf2goCommands(filepath.Join(bpfDir, "gen.go"))
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "socksplice-variant-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	replace := map[string]string{}
	for _, stem := range []string{"Socksplice", "Splice"} {
		args, ok := gens[stem]
		if !ok {
			return fmt.Errorf("bpf/gen.go has no bpf2go command for %s", stem)
		}
		// Options go before bpf2go's two positional arguments.
		args = append([]string{"-output-dir", work}, withCflags(args, cflags)...)
		cmd := exec.Command("go", append([]string{"tool", "bpf2go"}, args...)...)
		cmd.Dir = bpfDir
		cmd.Env = append(os.Environ(), "GOPACKAGE=bpf")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("bpf2go %s: %v\n%s", stem, err, b)
		}
		obj := strings.ToLower(stem) + "_bpfel.o"
		replace[filepath.Join(bpfDir, obj)] = filepath.Join(work, obj)
	}
	overlay, err := json.Marshal(map[string]any{"Replace": replace})
	if err != nil {
		return err
	}
	ov := filepath.Join(work, "overlay.json")
	if err := os.WriteFile(ov, overlay, 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-overlay", ov, "-o", out, "./plugin")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, b)
	}
	return nil
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// bpf2goCommands returns the arguments of each bpf2go command in a
// go:generate file, by the identifier it generates (its stem).
func bpf2goCommands(genFile string) (map[string][]string, error) {
	f, err := os.Open(genFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "//go:generate go tool bpf2go ")
		if !ok {
			continue
		}
		args, err := splitQuoted(rest)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", genFile, err)
		}
		if len(args) < 2 {
			return nil, fmt.Errorf("%s: bpf2go command without stem and source: %q", genFile, rest)
		}
		out[args[len(args)-2]] = args
	}
	return out, sc.Err()
}

// withCflags appends extra to the value of args' -cflags.
func withCflags(args, extra []string) []string {
	out := append([]string(nil), args...)
	for i := 0; i+1 < len(out); i++ {
		if out[i] == "-cflags" {
			out[i+1] += " " + strings.Join(extra, " ")
			return out
		}
	}
	return append([]string{"-cflags", strings.Join(extra, " ")}, out...)
}

// splitQuoted splits a go:generate line into words as go generate does:
// at spaces, except inside double quotes.
func splitQuoted(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			inWord = true
		case r == ' ' && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// PluginDir makes a node's CNI plugin directory, removed at cleanup: the
// reference plugins BinDir built, and socksplice installed from bin by
// InstallPlugin.
func PluginDir(t T, bin string) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if err := os.Symlink(filepath.Join(BinDir(t), p), filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	InstallPlugin(t, dir, bin)
	return dir
}

// InstallPlugin installs the socksplice binary bin into the plugin
// directory dir the way a release installs itself on a node: bin's own
// "socksplice install" (pkg/install: a synced temp file renamed over the
// old binary, so that an ADD running meanwhile executes one whole binary
// or the other). It chains no conflist: its config directory is empty.
func InstallPlugin(t T, dir, bin string) {
	t.Helper()
	out, err := exec.Command(bin, "install", "--cni-bin-dir="+dir, "--cni-conf-dir="+t.TempDir()).CombinedOutput()
	if err != nil {
		t.Fatalf("%s install --cni-bin-dir=%s: %v\n%s", bin, dir, err, out)
	}
}
