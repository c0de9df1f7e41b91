// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package install puts socksplice on a node: it copies the plugin binary
// into the CNI bin dir, writes a conflist that is the node's primary
// config with socksplice appended (sorting first, so runtimes read it
// instead), keeps it in sync while the primary changes, and removes it on
// uninstall. It also holds the Kubernetes manifests that run it as a
// DaemonSet. Every file it writes is replaced atomically: a runtime
// never reads half a binary or half a conflist.
package install

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/socksplice/socksplice/conf"
)

// Defaults: where containerd, CRI-O and cnitool users keep CNI plugins
// and configs, and a conflist name that sorts before the usual 10-*, 87-*.
const (
	DefaultBinDir   = "/opt/cni/bin"
	DefaultConfDir  = "/etc/cni/net.d"
	DefaultConfName = "00-socksplice.conflist"
)

// Options says where to install and what our conflist entry holds.
type Options struct {
	BinDir   string // the node's CNI bin dir; "" leaves the binary alone
	ConfDir  string // the node's CNI conf dir
	ConfName string // our conflist's file name; must sort before the primary's
	Source   string // the binary to install; "" is the running executable

	Mode          string         // the plugin's mode
	PinDir        string         // the plugin's pinDir (and what Purge removes)
	PluginOptions map[string]any // other plugin fields: ports, busyPollUs, ...

	UninstallOnExit bool // Run uninstalls when its context ends
	Purge           bool // uninstall also removes the binary and the pins

	Debounce time.Duration                 // quiet time before a resync (default 200ms)
	Logf     func(format string, a ...any) // progress (default: stderr)

	// Step, if set, is called after each step that changes a file (a test
	// hook: the kill tests stop the installer there).
	Step func(step string)
}

// Defaults returns the options of a stock node.
func Defaults() Options {
	return Options{
		BinDir: DefaultBinDir, ConfDir: DefaultConfDir, ConfName: DefaultConfName,
		Mode: string(conf.ModeAuto), PinDir: conf.DefaultPinDir,
	}
}

// RegisterFlags binds o to the installer's flags in fs (shared by
// "socksplice install", "uninstall" and the agent), with o's values as
// defaults.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.BinDir, "cni-bin-dir", o.BinDir, "the node's CNI plugin directory (\"\" leaves the binary alone)")
	fs.StringVar(&o.ConfDir, "cni-conf-dir", o.ConfDir, "the node's CNI config directory")
	fs.StringVar(&o.ConfName, "conf-name", o.ConfName, "our conflist's name (must sort before the primary config)")
	fs.StringVar(&o.Mode, "mode", o.Mode, "the plugin's mode: auto, sockmap, splice or off")
	fs.StringVar(&o.PinDir, "pin-dir", o.PinDir, "the plugin's pinDir (bpffs)")
	fs.Func("plugin-options", `other plugin fields as a JSON object, e.g. '{"ports":[5432],"busyPollUs":50}'`, func(s string) error {
		o.PluginOptions = nil
		return json.Unmarshal([]byte(s), &o.PluginOptions)
	})
	fs.BoolVar(&o.UninstallOnExit, "uninstall-on-exit", o.UninstallOnExit, "remove our conflist when stopped (set it before deleting the DaemonSet)")
	fs.BoolVar(&o.Purge, "purge", o.Purge, "uninstall also removes the binary and the pins under --pin-dir")
}

func (o *Options) fill() {
	if o.Logf == nil {
		o.Logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, "socksplice install: "+f+"\n", a...) }
	}
	if o.Step == nil {
		o.Step = func(string) {}
	}
	if o.Debounce == 0 {
		o.Debounce = 200 * time.Millisecond
	}
}

// Install validates o, then installs the binary and syncs our conflist once.
func Install(o Options) (State, error) {
	o.fill()
	return o.install()
}

func (o *Options) install() (State, error) {
	if err := o.validate(); err != nil {
		return State{}, err
	}
	if err := os.MkdirAll(o.ConfDir, 0o755); err != nil {
		return State{}, err
	}
	// A killed installer leaves its temp files: remove them first.
	if err := removeTemps(o.ConfDir, o.ConfName); err != nil {
		return State{}, err
	}
	if o.BinDir != "" {
		if err := o.copyBinary(); err != nil {
			return State{}, fmt.Errorf("installing the binary: %w", err)
		}
	}
	st, err := o.sync()
	if err == nil {
		o.Logf("%s", st)
	}
	return st, err
}

// Run installs, keeps our conflist in sync with the primary until ctx
// ends, then uninstalls if o.UninstallOnExit. onState, if not nil, gets
// every state a sync reaches (the agent's readiness and metrics).
func Run(ctx context.Context, o Options, onState func(State)) error {
	o.fill()
	if onState == nil {
		onState = func(State) {}
	}
	st, err := o.install()
	if err != nil {
		return err
	}
	onState(st)
	werr := o.watch(ctx, st, onState)
	if o.UninstallOnExit {
		if err := Uninstall(o); err != nil {
			return errors.Join(werr, err)
		}
	}
	return werr
}

// Uninstall removes our conflist, and with o.Purge also the binary and
// the pins. The conflist goes first: a chain must never name a plugin
// that is gone.
func Uninstall(o Options) error {
	o.fill()
	if err := o.removeOwn(); err != nil {
		return err
	}
	if err := removeTemps(o.ConfDir, o.ConfName); err != nil {
		return err
	}
	o.Logf("removed %s", filepath.Join(o.ConfDir, o.ConfName))
	if !o.Purge {
		return nil
	}
	if o.BinDir != "" {
		if err := removeTemps(o.BinDir, PluginType); err != nil {
			return err
		}
		bin := filepath.Join(o.BinDir, PluginType)
		if err := os.Remove(bin); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		o.Logf("removed %s", bin)
	}
	if o.PinDir != "" {
		if err := os.RemoveAll(o.PinDir); err != nil {
			return err
		}
		o.Logf("removed %s", o.PinDir)
	}
	return nil
}

func (o *Options) removeOwn() error {
	err := os.Remove(filepath.Join(o.ConfDir, o.ConfName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// copyBinary installs the plugin into o.BinDir, unless it is there already.
func (o *Options) copyBinary() error {
	src := o.Source
	if src == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		src = exe
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.BinDir, 0o755); err != nil {
		return err
	}
	if err := removeTemps(o.BinDir, PluginType); err != nil {
		return err
	}
	dst := filepath.Join(o.BinDir, PluginType)
	if have, err := os.ReadFile(dst); err == nil && bytes.Equal(have, data) {
		return nil
	}
	if err := o.writeAtomic(dst, data, 0o755, "binary"); err != nil {
		return err
	}
	o.Logf("installed %s (%d bytes)", dst, len(data))
	return nil
}

// writeAtomic replaces path with data through a synced temp file in the
// same directory and a rename. The temp file is named ".NAME<digits>", an
// extension no runtime reads.
func (o *Options) writeAtomic(path string, data []byte, perm os.FileMode, what string) error {
	f, err := renameio.NewPendingFile(path, renameio.WithTempDir(filepath.Dir(path)), renameio.WithStaticPermissions(perm))
	if err != nil {
		return err
	}
	defer f.Cleanup()
	o.Step(what + ":temp-created")
	half := len(data) / 2
	if _, err := f.Write(data[:half]); err != nil {
		return err
	}
	o.Step(what + ":temp-half-written")
	if _, err := f.Write(data[half:]); err != nil {
		return err
	}
	o.Step(what + ":temp-written")
	if err := f.CloseAtomicallyReplace(); err != nil {
		return err
	}
	o.Step(what + ":renamed")
	return nil
}

// isTemp tells whether name is one of writeAtomic's temp files for target.
func isTemp(name, target string) bool {
	rest, ok := strings.CutPrefix(name, "."+target)
	if !ok || rest == "" {
		return false
	}
	return strings.Trim(rest, "-0123456789") == ""
}

func removeTemps(dir, target string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if isTemp(e.Name(), target) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}
