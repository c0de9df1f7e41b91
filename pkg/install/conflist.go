// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package install

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containernetworking/cni/libcni"

	"github.com/socksplice/socksplice/conf"
)

// ConfExtensions are the config files libcni-based runtimes (containerd,
// CRI-O, cnitool) read from a conf dir, the first by lexical name winning.
var ConfExtensions = []string{".conf", ".conflist", ".json"}

// PluginType is the CNI type of our plugin, and the name of its binary.
const PluginType = "socksplice"

// State is what one sync found and did.
type State struct {
	Primary string // the primary config's path; "" if the dir has none
	Written bool   // our conflist was (re)written by this sync
	Chained bool   // our conflist exists and chains the primary
	Reason  string // why it is not chained ("" when it is)
}

func (s State) String() string {
	switch {
	case s.Chained:
		return fmt.Sprintf("chained after %s", s.Primary)
	case s.Primary == "":
		return "not chained: " + s.Reason
	default:
		return fmt.Sprintf("not chained (primary %s): %s", s.Primary, s.Reason)
	}
}

// primary returns the config file a runtime would load from dir, leaving
// out our own: the first by lexical name, as libcni.ConfFiles sorts them.
func primary(dir, own string) (string, error) {
	files, err := libcni.ConfFiles(dir, ConfExtensions)
	if err != nil {
		return "", err
	}
	for _, f := range files {
		if filepath.Base(f) != own {
			return f, nil
		}
	}
	return "", nil
}

// errSkip marks a primary we leave alone on purpose (not a failure).
type errSkip struct{ why string }

func (e errSkip) Error() string { return e.why }

// chain returns the conflist that is the primary (file name and bytes)
// with entry appended: same network name, cniVersion and list options.
// A single-plugin .conf/.json becomes a list with that plugin first.
func chain(name string, data []byte, entry map[string]any) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	var plugins []json.RawMessage
	if raw, ok := top["plugins"]; ok {
		if err := json.Unmarshal(raw, &plugins); err != nil {
			return nil, fmt.Errorf("plugins: %v", err)
		}
	} else if strings.HasSuffix(name, ".conflist") {
		return nil, errors.New("a .conflist without plugins")
	} else {
		// A single plugin config becomes the list's only plugin, as
		// libcni.ConfListFromConf converts it for the runtimes.
		plugins = []json.RawMessage{data}
		top = map[string]json.RawMessage{"name": top["name"], "cniVersion": top["cniVersion"]}
	}
	var netName, version string
	if err := json.Unmarshal(top["name"], &netName); err != nil || netName == "" {
		return nil, errors.New("name: missing or not a string")
	}
	if err := json.Unmarshal(top["cniVersion"], &version); err != nil {
		return nil, errors.New("cniVersion: missing or not a string")
	}
	if len(plugins) == 0 {
		return nil, errors.New("plugins: empty")
	}
	for i, p := range plugins {
		var t struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(p, &t); err != nil || t.Type == "" {
			return nil, fmt.Errorf("plugins[%d]: no type", i)
		}
		if t.Type == PluginType {
			return nil, errSkip{"the primary already chains socksplice (plugins[" + fmt.Sprint(i) + "]); left as is"}
		}
	}
	if !slices.Contains(conf.SupportedVersions, version) {
		return nil, errSkip{fmt.Sprintf("its cniVersion %q is not one socksplice supports (%s); chaining would fail every ADD",
			version, strings.Join(conf.SupportedVersions, ", "))}
	}
	e, err := json.Marshal(entry)
	if err != nil {
		return nil, err
	}
	// "type" first, where a reader looks for it (Marshal sorts the rest).
	if t, ok := entry["type"].(string); ok {
		rest := map[string]any{}
		for k, v := range entry {
			if k != "type" {
				rest[k] = v
			}
		}
		r, err := json.Marshal(rest)
		if err != nil {
			return nil, err
		}
		e = []byte(fmt.Sprintf(`{"type":%q`, t))
		if len(r) > 2 {
			e = append(e, ',')
		}
		e = append(e, r[1:]...)
	}
	b, err := json.Marshal(append(plugins, e))
	if err != nil {
		return nil, err
	}
	top["plugins"] = b
	out, err := json.MarshalIndent(top, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// sync makes our conflist in o.ConfDir match the primary there: written
// when it differs, removed when there is no primary to chain (a chain
// must never point at nothing or at a config the runtime would not use).
func (o *Options) sync() (State, error) {
	own := filepath.Join(o.ConfDir, o.ConfName)
	p, err := primary(o.ConfDir, o.ConfName)
	if err != nil {
		return State{}, err
	}
	st := State{Primary: p}
	if p == "" {
		st.Reason = "no primary config in " + o.ConfDir
		return st, o.removeOwn()
	}
	if filepath.Base(p) < o.ConfName {
		st.Reason = fmt.Sprintf("%s sorts before %s, so the runtime would never read ours; choose a --conf-name that sorts first", filepath.Base(p), o.ConfName)
		return st, o.removeOwn()
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return st, err
	}
	want, err := chain(p, data, o.entry())
	var skip errSkip
	if errors.As(err, &skip) {
		st.Reason = skip.why
		return st, o.removeOwn()
	}
	if err != nil {
		// Perhaps caught half-written by its own installer: keep ours as
		// it is (the last good chain) and retry on the next event.
		st.Reason = fmt.Sprintf("cannot parse the primary: %v", err)
		_, statErr := os.Stat(own)
		st.Chained = statErr == nil
		return st, nil
	}
	st.Chained = true
	if have, err := os.ReadFile(own); err == nil && bytes.Equal(have, want) {
		return st, nil
	}
	if err := o.writeAtomic(own, want, 0o644, "conflist"); err != nil {
		return st, err
	}
	st.Written = true
	return st, nil
}

// entry is our plugin's element of the conflist.
func (o *Options) entry() map[string]any {
	e := map[string]any{}
	for k, v := range o.PluginOptions {
		e[k] = v
	}
	e["type"] = PluginType
	e["mode"] = o.Mode
	e["pinDir"] = o.PinDir
	// cgroupPath: attach at the pod's cgroup where the runtime passes it;
	// pod annotations: the per-pod mode override (socksplice.io/mode).
	e["capabilities"] = map[string]bool{"cgroupPath": true, "io.kubernetes.cri.pod-annotations": true}
	return e
}

// validate checks the plugin options as the plugin itself will, before
// anything on the node changes.
func (o *Options) validate() error {
	if o.ConfDir == "" {
		return errors.New("--cni-conf-dir: must not be empty")
	}
	if !filepath.IsAbs(o.ConfDir) || (o.BinDir != "" && !filepath.IsAbs(o.BinDir)) {
		return fmt.Errorf("--cni-conf-dir %q, --cni-bin-dir %q: must be absolute paths", o.ConfDir, o.BinDir)
	}
	if o.ConfName != filepath.Base(o.ConfName) || !strings.HasSuffix(o.ConfName, ".conflist") {
		return fmt.Errorf("--conf-name %q: must be a file name ending in .conflist", o.ConfName)
	}
	for _, k := range []string{"type", "mode", "pinDir", "capabilities", "name", "cniVersion"} {
		if _, ok := o.PluginOptions[k]; ok {
			return fmt.Errorf("--plugin-options: %q is set by the installer (use its own flag where there is one)", k)
		}
	}
	e := o.entry()
	delete(e, "capabilities")
	e["name"], e["cniVersion"] = "install-check", conf.SupportedVersions[len(conf.SupportedVersions)-1]
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := conf.Parse(b); err != nil {
		return fmt.Errorf("plugin options: %v", err)
	}
	return nil
}
