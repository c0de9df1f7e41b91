// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package conf parses and validates the network configuration of the
// socksplice CNI chained plugin (the JSON a runtime writes to the plugin's
// stdin).
//
// The package is pure: it performs no I/O and no system calls, so every rule
// can be table-tested. All errors it returns are *types.Error values whose
// Msg starts with the JSON field at fault, ready to be printed by the CNI
// skeleton.
package conf

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/types/create"
	"github.com/containernetworking/cni/pkg/version"
)

// PluginType is the only accepted value of the "type" field.
const PluginType = "socksplice"

// Mode selects the acceleration mechanism.
type Mode string

const (
	// ModeAuto picks the best mechanism the kernel supports.
	ModeAuto Mode = "auto"
	// ModeSockmap redirects same-host TCP through a BPF sockmap.
	ModeSockmap Mode = "sockmap"
	// ModeSplice splices same-host TCP payloads between sockets.
	ModeSplice Mode = "splice"
	// ModeOff attaches nothing; the plugin passes prevResult through.
	ModeOff Mode = "off"
)

var modes = []Mode{ModeAuto, ModeSockmap, ModeSplice, ModeOff}

const (
	// DefaultPinDir is the bpffs directory where maps and links are pinned.
	DefaultPinDir = "/sys/fs/bpf/socksplice"
	// DefaultRingKiB is the per-direction ring capacity used when ringKiB
	// is omitted. Its pages are allocated only as the peer leaves bytes
	// unread, so the size is a bound, not a cost: 1 MiB lets a writer run
	// as far ahead of a reader as TCP's default buffers do.
	DefaultRingKiB = 1024
)

// MinRingKiB, MaxRingKiB, MaxBusyPollUs and MaxPorts come from the ABI
// header (limits_gen.go), where the module and the BPF programs read them.

// SupportedVersions lists the cniVersion values accepted. 0.3.x stays:
// flannel, Calico and Cilium still ship their conflists at 0.3.1 (it has
// ADD and DEL only; the CNI library refuses CHECK, GC and STATUS there).
var SupportedVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// RuntimeConfig holds the runtime-injected values socksplice uses. Runtimes
// may inject other capability arguments; those are accepted and ignored.
type RuntimeConfig struct {
	// CgroupPath is the pod's cgroup, absolute or relative to the cgroup v2
	// root.
	CgroupPath string `json:"cgroupPath,omitempty"`
	// PodAnnotations are the pod's annotations, passed by CRI runtimes
	// (containerd, CRI-O) when the plugin declares the capability
	// CapPodAnnotations. Only ModeAnnotation is read.
	PodAnnotations map[string]string `json:"io.kubernetes.cri.pod-annotations,omitempty"`
}

const (
	// CapPodAnnotations is the capability (and runtimeConfig key) under
	// which CRI runtimes pass a pod's annotations.
	CapPodAnnotations = "io.kubernetes.cri.pod-annotations"
	// ModeAnnotation, on a pod, overrides the network's mode for that pod:
	// "off" opts it out; auto, sockmap or splice choose its engine.
	ModeAnnotation = "socksplice.io/mode"
)

// NetConf is the socksplice plugin configuration.
//
// Note: json.Marshal of a *NetConf uses the MarshalJSON promoted from the
// embedded types.NetConf and therefore emits only the standard CNI fields.
type NetConf struct {
	types.NetConf

	Mode          Mode          `json:"mode,omitempty"`
	BusyPollUs    int           `json:"busyPollUs,omitempty"`
	RingKiB       int           `json:"ringKiB,omitempty"`
	Ports         []int         `json:"ports,omitempty"`
	Loopback      bool          `json:"loopback,omitempty"`
	PinDir        string        `json:"pinDir,omitempty"`
	RuntimeConfig RuntimeConfig `json:"runtimeConfig,omitempty"`
}

// allowedKeys are the top-level keys accepted in a plugin config: those of
// types.NetConf, those libcni or runtimes inject (args, runtimeConfig, the GC
// attachment lists) or copy from a conflist, and ours. Matching is exact;
// encoding/json alone would accept "busyPollUS" case-insensitively.
var allowedKeys = map[string]bool{
	// types.NetConf (types.PluginConf)
	"cniVersion":                true,
	"name":                      true,
	"type":                      true,
	"capabilities":              true,
	"ipam":                      true,
	"dns":                       true,
	"prevResult":                true,
	"cni.dev/valid-attachments": true,
	// injected by libcni / runtimes, or conflist-level keys
	"args":                true,
	"runtimeConfig":       true,
	"cni.dev/attachments": true,
	"cniVersions":         true,
	"disableCheck":        true,
	"disableGC":           true,
	// socksplice
	"mode":       true,
	"busyPollUs": true,
	"ringKiB":    true,
	"ports":      true,
	"loopback":   true,
	"pinDir":     true,
}

func decodeErr(format string, a ...any) *types.Error {
	return types.NewError(types.ErrDecodingFailure, fmt.Sprintf(format, a...), "")
}

func invalid(format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, a...), "")
}

// Parse decodes and validates a plugin config (the stdin of a CNI
// invocation), fills defaults (mode auto, ringKiB 1024, pinDir default), parses
// prevResult if present into conf.PrevResult, and returns a *types.Error on
// any problem.
func Parse(data []byte) (*NetConf, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, decodeErr("config: empty input; expected a JSON object")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, decodeErr("config: got a JSON %s; expected a JSON object", te.Value)
		}
		return nil, decodeErr("config: invalid JSON: %s", trimJSONPrefix(err))
	}
	if raw == nil {
		return nil, decodeErr("config: got JSON null; expected a JSON object")
	}

	// The version comes first: a config for an unsupported version may
	// legitimately fail every other rule.
	var cniVersion string
	if v, ok := raw["cniVersion"]; ok {
		if err := json.Unmarshal(v, &cniVersion); err != nil {
			return nil, decodeErr("cniVersion: got a JSON %s; expected a string", jsonValueKind(v))
		}
	}
	if !slices.Contains(SupportedVersions, cniVersion) {
		got := fmt.Sprintf("%q is not supported", cniVersion)
		if cniVersion == "" {
			got = "missing"
		}
		return nil, types.NewError(types.ErrIncompatibleCNIVersion,
			fmt.Sprintf("cniVersion: %s; supported versions are %s", got, strings.Join(SupportedVersions, ", ")), "")
	}

	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if allowedKeys[k] {
			continue
		}
		msg := fmt.Sprintf("unknown field %q", k)
		for a := range allowedKeys {
			if strings.EqualFold(a, k) {
				msg += fmt.Sprintf("; did you mean %q?", a)
				break
			}
		}
		return nil, invalid("%s", msg)
	}

	c := &NetConf{}
	if err := json.Unmarshal(data, c); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, decodeErr("%s: got a JSON %s; expected %s", fieldPath(te.Field), te.Value, goKindToJSON(te.Type))
		}
		return nil, decodeErr("config: %s", trimJSONPrefix(err))
	}

	if err := c.validate(raw); err != nil {
		return nil, err
	}

	if c.Mode == "" {
		c.Mode = ModeAuto
	}
	if m, ok := c.RuntimeConfig.PodAnnotations[ModeAnnotation]; ok {
		c.Mode = Mode(m)
	}
	if c.RingKiB == 0 {
		c.RingKiB = DefaultRingKiB
	}
	if c.PinDir == "" {
		c.PinDir = DefaultPinDir
	}

	if c.RawPrevResult != nil {
		if err := version.ParsePrevResult(&c.NetConf); err != nil {
			inner := err
			if u := errors.Unwrap(err); u != nil {
				inner = u
			}
			return nil, invalid("prevResult: cannot parse as a cniVersion %s result: %v", c.CNIVersion, inner)
		}
		if err := passOn(c); err != nil {
			return nil, invalid("prevResult: the plugins after socksplice could not parse it once passed on: %v (an ips or routes entry without its address?)", err)
		}
	}
	return c, nil
}

// passOn prints prevResult as ADD passes it on and parses that as the
// next plugin in the chain will. Zero values do not survive: an IP or a
// route without an address prints as "<nil>".
func passOn(c *NetConf) error {
	r, err := c.PrevResult.GetAsVersion(c.CNIVersion)
	if err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = create.Create(c.CNIVersion, b)
	return err
}

func (c *NetConf) validate(raw map[string]json.RawMessage) *types.Error {
	if c.Name == "" {
		return invalid("name: missing; must be a non-empty network name")
	}
	if c.Type != PluginType {
		if c.Type == "" {
			return invalid("type: missing; must be %q", PluginType)
		}
		return invalid("type: %q is not this plugin; must be %q", c.Type, PluginType)
	}

	if c.Mode != "" && !slices.Contains(modes, c.Mode) {
		return invalid("mode: %q is not one of auto, sockmap, splice, off", string(c.Mode))
	}
	// A pod's own typo must not pick an engine for it: its ADD fails and
	// says which annotation is wrong.
	if m, ok := c.RuntimeConfig.PodAnnotations[ModeAnnotation]; ok && !slices.Contains(modes, Mode(m)) {
		return invalid("runtimeConfig.%s: pod annotation %s=%q is not one of auto, sockmap, splice, off",
			CapPodAnnotations, ModeAnnotation, m)
	}

	switch {
	case c.BusyPollUs < 0:
		return invalid("busyPollUs: %d is negative; must be between 0 and %d", c.BusyPollUs, MaxBusyPollUs)
	case c.BusyPollUs > MaxBusyPollUs:
		return invalid("busyPollUs: %d is too large; must be between 0 and %d", c.BusyPollUs, MaxBusyPollUs)
	}

	if r := c.RingKiB; r != 0 {
		const want = "must be a power of two between %d and %d (0 or omitted selects %d)"
		switch {
		case r < 0:
			return invalid("ringKiB: %d is negative; "+want, r, MinRingKiB, MaxRingKiB, DefaultRingKiB)
		case r < MinRingKiB || r > MaxRingKiB:
			return invalid("ringKiB: %d is out of range; "+want, r, MinRingKiB, MaxRingKiB, DefaultRingKiB)
		case r&(r-1) != 0:
			return invalid("ringKiB: %d is not a power of two; "+want, r, MinRingKiB, MaxRingKiB, DefaultRingKiB)
		}
	}

	if err := validatePorts(c.Ports, raw["ports"]); err != nil {
		return err
	}

	if err := c.validPinDir(); err != nil {
		return err
	}

	if p := c.RuntimeConfig.CgroupPath; p != "" {
		switch {
		case strings.ContainsRune(p, 0):
			return invalid("runtimeConfig.cgroupPath: %q contains a NUL byte", p)
		case hasDotDot(p):
			return invalid("runtimeConfig.cgroupPath: %q must not contain \"..\" elements", p)
		case filepath.Clean(p) != p:
			return invalid("runtimeConfig.cgroupPath: %q is not a clean path; use %q", p, filepath.Clean(p))
		}
	}
	return nil
}

func (c *NetConf) validPinDir() *types.Error {
	if p := c.PinDir; p != "" {
		switch {
		case strings.ContainsRune(p, 0):
			return invalid("pinDir: %q contains a NUL byte", p)
		case !filepath.IsAbs(p):
			return invalid("pinDir: %q must be an absolute path", p)
		case hasDotDot(p):
			return invalid("pinDir: %q must not contain \"..\" elements", p)
		case filepath.Clean(p) != p:
			return invalid("pinDir: %q is not a clean path; use %q", p, filepath.Clean(p))
		case p == "/":
			return invalid("pinDir: %q is the filesystem root; use a dedicated directory on bpffs such as %q", p, DefaultPinDir)
		}
	}
	return nil
}

func validatePorts(ports []int, raw json.RawMessage) *types.Error {
	if len(ports) == 0 {
		// "ports": null is treated like an omitted field.
		if raw != nil && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			return invalid("ports: empty list; omit the field to pair all ports")
		}
		return nil
	}
	if len(ports) > MaxPorts {
		return invalid("ports: %d entries exceed the maximum of %d", len(ports), MaxPorts)
	}
	seen := make(map[int]int, len(ports))
	for i, p := range ports {
		if p < 1 || p > 65535 {
			return invalid("ports[%d]: %d is out of range; must be between 1 and 65535", i, p)
		}
		if j, dup := seen[p]; dup {
			return invalid("ports[%d]: %d is a duplicate of ports[%d]", i, p, j)
		}
		seen[p] = i
	}
	return nil
}

func hasDotDot(p string) bool {
	return slices.Contains(strings.Split(p, "/"), "..")
}

// fieldPath turns an encoding/json field path into the JSON key path the
// error names. Go 1.26 gives Go's names of the embedded types.NetConf in it;
// Go 1.27's encoding/json (built on json/v2) gives array indexes and escapes
// a key's "/" and "~" as a JSON pointer does ("cni.dev~1valid-attachments"):
// both name the same key here.
func fieldPath(f string) string {
	parts := strings.Split(f, ".")
	out := parts[:0]
	for _, p := range parts {
		if p == "" || p == "NetConf" || p == "PluginConf" || isIndex(p) {
			continue
		}
		out = append(out, strings.NewReplacer("~1", "/", "~0", "~").Replace(p))
	}
	if len(out) == 0 {
		return "config"
	}
	return strings.Join(out, ".")
}

// isIndex reports whether a field path element is an array index.
func isIndex(p string) bool {
	if p == "" {
		return false
	}
	for _, c := range p {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func goKindToJSON(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "another type"
}

func jsonValueKind(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "value"
	}
	switch v[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func trimJSONPrefix(err error) string {
	return strings.TrimPrefix(err.Error(), "json: ")
}

// ModeFrom says where Mode came from: "config", or the pod annotation that
// overrode it.
func (c *NetConf) ModeFrom() string {
	if _, ok := c.RuntimeConfig.PodAnnotations[ModeAnnotation]; ok {
		return "pod annotation " + ModeAnnotation
	}
	return "config"
}

// DelTarget reads, from a config that Parse rejects, what DEL needs to
// undo an earlier ADD: the network name ("" if unreadable) and the pin
// directory (DefaultPinDir unless the config names a valid one). DEL must
// not stop the chain over a config that stopped parsing (a typo added
// since ADD), so this never fails.
func DelTarget(data []byte) (name, pinDir string) {
	pinDir = DefaultPinDir
	var raw map[string]json.RawMessage
	if json.Unmarshal(data, &raw) != nil {
		return "", pinDir
	}
	_ = json.Unmarshal(raw["name"], &name)
	var p string
	if json.Unmarshal(raw["pinDir"], &p) == nil && p != "" {
		if (&NetConf{PinDir: p}).validPinDir() == nil {
			pinDir = p
		}
	}
	return name, pinDir
}

// RequirePrevResult returns a *types.Error when the config has no prevResult;
// ADD and CHECK of a chained plugin need one.
func (c *NetConf) RequirePrevResult() error {
	if c.PrevResult == nil {
		return invalid("prevResult: missing; socksplice is a chained plugin and must follow a plugin that returns a result (e.g. bridge or ptp)")
	}
	return nil
}

// Domain returns the isolation-domain id of this network: the first 8 bytes
// (big endian) of sha256("socksplice-domain\x00" + Name). It is never 0.
func (c *NetConf) Domain() uint64 {
	sum := sha256.Sum256([]byte("socksplice-domain\x00" + c.Name))
	d := binary.BigEndian.Uint64(sum[:8])
	if d == 0 {
		d = 1
	}
	return d
}

// PortSet returns the validated ports as []uint16 sorted ascending, or nil
// if there is no allowlist (all ports are paired). Entries that Parse would
// reject (out of range, duplicates) are dropped.
func (c *NetConf) PortSet() []uint16 {
	if len(c.Ports) == 0 {
		return nil
	}
	out := make([]uint16, 0, len(c.Ports))
	for _, p := range c.Ports {
		if p >= 1 && p <= 65535 {
			out = append(out, uint16(p))
		}
	}
	if len(out) == 0 {
		return nil
	}
	slices.Sort(out)
	return slices.Compact(out)
}
