// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package conf

// Fuzz targets (make fuzz; plain go test runs their corpora in
// testdata/fuzz). Each checks properties, not just the absence of a
// panic: an error is a CNI error naming its field, a config that parses
// is valid by every rule and parses again, unchanged, from what it says.

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// FuzzParse feeds Parse arbitrary bytes, as a runtime's stdin.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		name, pinDir := DelTarget(data) // DEL reads a config Parse rejects: never fails
		if err != nil {
			wantFieldError(t, data, err)
			return
		}
		wantValid(t, c)
		if name != c.Name || pinDir != c.PinDir {
			t.Errorf("DelTarget = %q, %q; Parse found name %q, pinDir %q", name, pinDir, c.Name, c.PinDir)
		}
		wantRoundTrip(t, c)
	})
}

// FuzzRuntimeConfig puts arbitrary JSON where runtimes inject
// runtimeConfig (cgroupPath, pod annotations).
func FuzzRuntimeConfig(f *testing.F) {
	f.Fuzz(func(t *testing.T, rc []byte) {
		if !json.Valid(rc) {
			return // the whole config would be invalid JSON: FuzzParse's case
		}
		data := []byte(`{"cniVersion":"1.1.0","name":"podnet","type":"socksplice","runtimeConfig":` + string(rc) + `}`)
		c, err := Parse(data)
		if err != nil {
			wantFieldError(t, data, err)
			if f := errField(err); f != "runtimeConfig" && !strings.HasPrefix(f, "runtimeConfig.") {
				t.Errorf("a bad runtimeConfig gave an error about %q: %v", f, err)
			}
			return
		}
		wantValid(t, c)
		wantRoundTrip(t, c)
	})
}

// errField is the field an error message starts with: "field: ...".
func errField(err error) string {
	f, _, _ := strings.Cut(err.Error(), ": ")
	return f
}

// wantFieldError fails t unless err is a CNI error with the code for its
// kind whose message starts with a field of the config (or "config" for
// the document as a whole), or names the unknown key found in data.
func wantFieldError(t *testing.T, data []byte, err error) {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is a %T, not a CNI error", err, err)
	}
	switch e.Code {
	case types.ErrIncompatibleCNIVersion:
		if !strings.HasPrefix(e.Msg, "cniVersion: ") {
			t.Errorf("code 1 error does not name cniVersion: %q", e.Msg)
		}
		return
	case types.ErrDecodingFailure, types.ErrInvalidNetworkConfig:
	default:
		t.Fatalf("error code %d (%q): want 1, 6 or 7", e.Code, e.Msg)
	}
	if rest, ok := strings.CutPrefix(e.Msg, "unknown field "); ok {
		var raw map[string]json.RawMessage
		json.Unmarshal(data, &raw)
		key := rest
		if i := strings.Index(rest, "; did you mean"); i >= 0 {
			key = rest[:i]
		}
		k, err := strconv.Unquote(key) // %q
		if err != nil || raw[k] == nil || allowedKeys[k] {
			t.Errorf("%q names no unknown key of the config", e.Msg)
		}
		return
	}
	field := errField(err)
	if field == e.Msg {
		t.Fatalf("error names no field: %q", e.Msg)
	}
	if !isField(field) {
		t.Errorf("error starts with %q, which is not a field of the config: %q", field, e.Msg)
	}
}

// isField reports whether path names the whole config ("config") or a key
// of it, or something inside one ("ports[2]", "runtimeConfig.cgroupPath").
// Keys may hold dots themselves ("cni.dev/valid-attachments").
func isField(path string) bool {
	if path == "config" {
		return true
	}
	for k := range allowedKeys {
		if path == k || strings.HasPrefix(path, k+".") || strings.HasPrefix(path, k+"[") {
			return true
		}
	}
	return false
}

// wantValid fails t unless c obeys every rule Parse enforces, with the
// defaults filled in.
func wantValid(t *testing.T, c *NetConf) {
	t.Helper()
	if c.Name == "" || c.Type != PluginType || !slices.Contains(SupportedVersions, c.CNIVersion) {
		t.Errorf("accepted name %q, type %q, cniVersion %q", c.Name, c.Type, c.CNIVersion)
	}
	if !slices.Contains(modes, c.Mode) {
		t.Errorf("accepted mode %q", c.Mode)
	}
	if m, ok := c.RuntimeConfig.PodAnnotations[ModeAnnotation]; ok && Mode(m) != c.Mode {
		t.Errorf("mode %q, but the pod annotation says %q", c.Mode, m)
	}
	if r := c.RingKiB; r < MinRingKiB || r > MaxRingKiB || r&(r-1) != 0 {
		t.Errorf("accepted ringKiB %d", r)
	}
	if c.BusyPollUs < 0 || c.BusyPollUs > MaxBusyPollUs {
		t.Errorf("accepted busyPollUs %d", c.BusyPollUs)
	}
	if len(c.Ports) > MaxPorts || len(c.PortSet()) != len(c.Ports) {
		t.Errorf("accepted ports %v (as a set %v)", c.Ports, c.PortSet())
	}
	for _, p := range c.Ports {
		if p < 1 || p > 65535 {
			t.Errorf("accepted port %d", p)
		}
	}
	if p := c.PinDir; !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" || strings.ContainsRune(p, 0) {
		t.Errorf("accepted pinDir %q", p)
	}
	if p := c.RuntimeConfig.CgroupPath; p != "" && (filepath.Clean(p) != p || hasDotDot(p) || strings.ContainsRune(p, 0)) {
		t.Errorf("accepted cgroupPath %q", p)
	}
}

// canonical is what c says, as a config: every field socksplice reads,
// prevResult as parsed.
func canonical(t *testing.T, c *NetConf) []byte {
	t.Helper()
	base := c.NetConf
	base.RawPrevResult, base.PrevResult = nil, nil
	b, err := json.Marshal(&base)
	if err != nil {
		t.Fatalf("marshalling the standard fields: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["mode"], m["busyPollUs"], m["ringKiB"], m["loopback"], m["pinDir"] = c.Mode, c.BusyPollUs, c.RingKiB, c.Loopback, c.PinDir
	if c.Ports != nil {
		m["ports"] = c.Ports
	}
	m["runtimeConfig"] = c.RuntimeConfig
	if c.PrevResult != nil {
		m["prevResult"] = c.PrevResult
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("marshalling the config: %v", err)
	}
	return out
}

// wantRoundTrip fails t unless what c says parses again into the same
// config: a config that parsed is valid as written back.
func wantRoundTrip(t *testing.T, c *NetConf) {
	t.Helper()
	b := canonical(t, c)
	c2, err := Parse(b)
	if err != nil {
		t.Fatalf("the parsed config, written back, does not parse: %v\n%s", err, b)
	}
	if b2 := canonical(t, c2); !bytes.Equal(b, b2) {
		t.Errorf("the parsed config changed on a second parse:\n%s\n%s", b, b2)
	}
}
