// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package conf

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types040 "github.com/containernetworking/cni/pkg/types/040"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// bridgePrev040 is what the bridge plugin returns for cniVersion 0.4.0.
const bridgePrev040 = `{
  "cniVersion": "0.4.0",
  "interfaces": [
    {"name": "cni0", "mac": "0a:58:0a:f4:00:01"},
    {"name": "veth1234", "mac": "9e:1f:7a:00:00:01"},
    {"name": "eth0", "mac": "0a:58:0a:f4:00:05", "sandbox": "/var/run/netns/test"}
  ],
  "ips": [{"version": "4", "interface": 2, "address": "10.244.0.5/24", "gateway": "10.244.0.1"}],
  "routes": [{"dst": "0.0.0.0/0"}],
  "dns": {}
}`

// bridgePrev1 is what the bridge plugin returns for cniVersion 1.x.
func bridgePrev1(v string) string {
	return `{
  "cniVersion": "` + v + `",
  "interfaces": [
    {"name": "cni0", "mac": "0a:58:0a:f4:00:01"},
    {"name": "veth1234", "mac": "9e:1f:7a:00:00:01"},
    {"name": "eth0", "mac": "0a:58:0a:f4:00:05", "sandbox": "/var/run/netns/test"}
  ],
  "ips": [{"interface": 2, "address": "10.244.0.5/24", "gateway": "10.244.0.1"}],
  "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.0.1"}],
  "dns": {}
}`
}

// cfg builds a 1.0.0 config from the minimal valid one plus extra top-level
// members (a JSON fragment such as `"mode": "off"`).
func cfg(extra string) string {
	s := `{"cniVersion": "1.0.0", "name": "podnet", "type": "socksplice"`
	if extra != "" {
		s += ", " + extra
	}
	return s + "}"
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		check func(t *testing.T, c *NetConf)
	}{
		{
			// flannel, Calico and Cilium ship 0.3.1 conflists
			name: "0.3.1 with bridge prevResult",
			in:   `{"cniVersion":"0.3.1","name":"podnet","type":"socksplice","prevResult":` + strings.Replace(bridgePrev040, "0.4.0", "0.3.1", 1) + `}`,
			check: func(t *testing.T, c *NetConf) {
				r, ok := c.PrevResult.(*types040.Result)
				if !ok || r.CNIVersion != "0.3.1" || len(r.IPs) != 1 {
					t.Fatalf("PrevResult is %T %+v, want a 0.3.1 result with one IP", c.PrevResult, c.PrevResult)
				}
			},
		},
		{
			name: "0.4.0 with bridge prevResult",
			in:   `{"cniVersion":"0.4.0","name":"podnet","type":"socksplice","prevResult":` + bridgePrev040 + `}`,
			check: func(t *testing.T, c *NetConf) {
				r, ok := c.PrevResult.(*types040.Result)
				if !ok {
					t.Fatalf("PrevResult is %T, want *types040.Result", c.PrevResult)
				}
				if len(r.IPs) != 1 || r.IPs[0].Address.String() != "10.244.0.5/24" {
					t.Errorf("IPs = %v", r.IPs)
				}
				if err := c.RequirePrevResult(); err != nil {
					t.Errorf("RequirePrevResult: %v", err)
				}
			},
		},
		{
			name: "1.0.0 with bridge prevResult",
			in:   `{"cniVersion":"1.0.0","name":"podnet","type":"socksplice","prevResult":` + bridgePrev1("1.0.0") + `}`,
			check: func(t *testing.T, c *NetConf) {
				r, ok := c.PrevResult.(*types100.Result)
				if !ok {
					t.Fatalf("PrevResult is %T, want *types100.Result", c.PrevResult)
				}
				if len(r.Interfaces) != 3 || r.Interfaces[2].Sandbox == "" {
					t.Errorf("Interfaces = %v", r.Interfaces)
				}
				if err := c.RequirePrevResult(); err != nil {
					t.Errorf("RequirePrevResult: %v", err)
				}
			},
		},
		{
			name: "1.1.0 with bridge prevResult",
			in:   `{"cniVersion":"1.1.0","name":"podnet","type":"socksplice","prevResult":` + bridgePrev1("1.1.0") + `}`,
			check: func(t *testing.T, c *NetConf) {
				r, ok := c.PrevResult.(*types100.Result)
				if !ok {
					t.Fatalf("PrevResult is %T, want *types100.Result", c.PrevResult)
				}
				if r.Version() != "1.1.0" {
					t.Errorf("result version %q", r.Version())
				}
			},
		},
		{
			name: "defaults filled",
			in:   cfg(""),
			check: func(t *testing.T, c *NetConf) {
				if c.Mode != ModeAuto || c.RingKiB != DefaultRingKiB || c.PinDir != DefaultPinDir {
					t.Errorf("defaults: mode %q ringKiB %d pinDir %q", c.Mode, c.RingKiB, c.PinDir)
				}
				if c.BusyPollUs != 0 || c.Loopback || c.Ports != nil || c.RuntimeConfig.CgroupPath != "" {
					t.Errorf("unexpected non-zero fields: %+v", c)
				}
				if c.PrevResult != nil {
					t.Errorf("PrevResult = %v, want nil", c.PrevResult)
				}
				if c.Name != "podnet" || c.Type != "socksplice" || c.CNIVersion != "1.0.0" {
					t.Errorf("NetConf = %+v", c.NetConf)
				}
			},
		},
		{
			name:  "empty mode means auto",
			in:    cfg(`"mode": ""`),
			check: func(t *testing.T, c *NetConf) { expectEq(t, c.Mode, ModeAuto) },
		},
		{
			name:  "ringKiB 0 means default",
			in:    cfg(`"ringKiB": 0`),
			check: func(t *testing.T, c *NetConf) { expectEq(t, c.RingKiB, DefaultRingKiB) },
		},
		{
			name: "all fields set",
			in: cfg(`"mode": "splice", "busyPollUs": 1000, "ringKiB": 4096, "ports": [443, 80, 8080],
				"loopback": true, "pinDir": "/run/bpf/ss", "runtimeConfig": {"cgroupPath": "/kubepods/pod1"}`),
			check: func(t *testing.T, c *NetConf) {
				expectEq(t, c.Mode, ModeSplice)
				expectEq(t, c.BusyPollUs, 1000)
				expectEq(t, c.RingKiB, 4096)
				expectEq(t, c.Loopback, true)
				expectEq(t, c.PinDir, "/run/bpf/ss")
				expectEq(t, c.RuntimeConfig.CgroupPath, "/kubepods/pod1")
				if !slices.Equal(c.Ports, []int{443, 80, 8080}) {
					t.Errorf("Ports = %v", c.Ports)
				}
			},
		},
		{name: "mode sockmap", in: cfg(`"mode": "sockmap"`), check: func(t *testing.T, c *NetConf) { expectEq(t, c.Mode, ModeSockmap) }},
		{name: "mode off", in: cfg(`"mode": "off"`), check: func(t *testing.T, c *NetConf) { expectEq(t, c.Mode, ModeOff) }},
		{name: "ringKiB min", in: cfg(`"ringKiB": 4`), check: func(t *testing.T, c *NetConf) { expectEq(t, c.RingKiB, 4) }},
		{name: "ports null is omitted", in: cfg(`"ports": null`), check: func(t *testing.T, c *NetConf) { expectEq(t, c.PortSet() == nil, true) }},
		{
			name: "32 ports",
			in:   cfg(`"ports": [` + portList(32) + `]`),
			check: func(t *testing.T, c *NetConf) {
				expectEq(t, len(c.PortSet()), 32)
			},
		},
		{name: "port bounds", in: cfg(`"ports": [1, 65535]`), check: func(t *testing.T, c *NetConf) { expectEq(t, len(c.Ports), 2) }},
		{
			name: "cgroupPath absolute v1/unified",
			in:   cfg(`"runtimeConfig": {"cgroupPath": "/sys/fs/cgroup/unified/foo"}`),
			check: func(t *testing.T, c *NetConf) {
				expectEq(t, c.RuntimeConfig.CgroupPath, "/sys/fs/cgroup/unified/foo")
			},
		},
		{
			name:  "cgroupPath relative",
			in:    cfg(`"runtimeConfig": {"cgroupPath": "kubepods.slice/pod1"}`),
			check: func(t *testing.T, c *NetConf) { expectEq(t, c.RuntimeConfig.CgroupPath, "kubepods.slice/pod1") },
		},
		{
			name: "other runtimeConfig keys ignored",
			in:   cfg(`"runtimeConfig": {"portMappings": [{"hostPort": 80}], "bandwidth": {"ingressRate": 1}, "cgroupPath": "/a"}`),
			check: func(t *testing.T, c *NetConf) {
				expectEq(t, c.RuntimeConfig.CgroupPath, "/a")
			},
		},
		{
			name: "standard and injected keys allowed",
			in: cfg(`"capabilities": {"cgroupPath": true}, "ipam": {}, "dns": {"nameservers": ["10.0.0.10"]},
				"args": {"cni": {"x": 1}}, "cniVersions": ["1.0.0"], "disableCheck": false, "disableGC": false,
				"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}],
				"cni.dev/attachments": [{"containerID": "c1", "ifname": "eth0"}]`),
			check: func(t *testing.T, c *NetConf) {
				expectEq(t, c.Capabilities["cgroupPath"], true)
				expectEq(t, len(c.ValidAttachments), 1)
				expectEq(t, c.DNS.Nameservers[0], "10.0.0.10")
			},
		},
		{
			name:  "prevResult null is absent",
			in:    cfg(`"prevResult": null`),
			check: func(t *testing.T, c *NetConf) { expectEq(t, c.PrevResult == nil, true) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestParseInvalid(t *testing.T) {
	const (
		decode  = types.ErrDecodingFailure
		version = types.ErrIncompatibleCNIVersion
		inval   = types.ErrInvalidNetworkConfig
	)
	tests := []struct {
		name  string
		in    string
		code  uint
		field string   // Msg must start with this
		also  []string // Msg must also contain these
	}{
		// whole-document decoding
		{"empty input", ``, decode, "config:", nil},
		{"whitespace input", " \n\t", decode, "config:", nil},
		{"not an object", `[1, 2]`, decode, "config:", []string{"object"}},
		{"string document", `"socksplice"`, decode, "config:", nil},
		{"null document", `null`, decode, "config:", nil},
		{"truncated", `{"cniVersion": "1.0.0", "name": `, decode, "config:", nil},
		{"trailing garbage", cfg("") + ` x`, decode, "config:", nil},
		{"two objects", cfg("") + cfg(""), decode, "config:", nil},

		// wrong JSON types
		{"busyPollUs string", cfg(`"busyPollUs": "fast"`), decode, "busyPollUs:", []string{"integer"}},
		{"busyPollUs float", cfg(`"busyPollUs": 1.5`), decode, "busyPollUs:", nil},
		{"ringKiB bool", cfg(`"ringKiB": true`), decode, "ringKiB:", nil},
		{"ports not array", cfg(`"ports": 80`), decode, "ports:", nil},
		{"ports element string", cfg(`"ports": ["http"]`), decode, "ports:", nil},
		{"ports overflow", cfg(`"ports": [100000000000000000000]`), decode, "ports:", nil},
		{"loopback string", cfg(`"loopback": "yes"`), decode, "loopback:", nil},
		{"mode number", cfg(`"mode": 1`), decode, "mode:", nil},
		{"pinDir number", cfg(`"pinDir": 1`), decode, "pinDir:", nil},
		{"name number", `{"cniVersion":"1.0.0","name":5,"type":"socksplice"}`, decode, "name:", nil},
		{"cniVersion number", `{"cniVersion":1,"name":"n","type":"socksplice"}`, decode, "cniVersion:", nil},
		{"runtimeConfig string", cfg(`"runtimeConfig": "x"`), decode, "runtimeConfig:", nil},
		{"cgroupPath number", cfg(`"runtimeConfig": {"cgroupPath": 7}`), decode, "runtimeConfig.cgroupPath:", nil},
		{"prevResult array", cfg(`"prevResult": []`), decode, "prevResult:", nil},

		// cniVersion
		{"cniVersion missing", `{"name":"n","type":"socksplice"}`, version, "cniVersion:", []string{"0.4.0", "1.0.0", "1.1.0"}},
		{"cniVersion 0.2.0", `{"cniVersion":"0.2.0","name":"n","type":"socksplice"}`, version, "cniVersion:", []string{`"0.2.0"`, "0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"}},
		{"cniVersion 2.0.0", `{"cniVersion":"2.0.0","name":"n","type":"socksplice"}`, version, "cniVersion:", nil},

		// unknown fields
		{"typo busyPollUS", cfg(`"busyPollUS": 10`), inval, `unknown field "busyPollUS"`, []string{`did you mean "busyPollUs"`}},
		{"unknown field", cfg(`"turbo": true`), inval, `unknown field "turbo"`, nil},
		{"typo Mode", cfg(`"Mode": "off"`), inval, `unknown field "Mode"`, nil},

		// name and type
		{"name missing", `{"cniVersion":"1.0.0","type":"socksplice"}`, inval, "name:", nil},
		{"name empty", `{"cniVersion":"1.0.0","name":"","type":"socksplice"}`, inval, "name:", nil},
		{"type missing", `{"cniVersion":"1.0.0","name":"n"}`, inval, "type:", []string{"socksplice"}},
		{"type wrong", `{"cniVersion":"1.0.0","name":"n","type":"bridge"}`, inval, "type:", []string{`"bridge"`}},

		// mode
		{"mode unknown", cfg(`"mode": "fast"`), inval, "mode:", []string{`"fast"`}},
		{"mode wrong case", cfg(`"mode": "Auto"`), inval, "mode:", nil},

		// busyPollUs
		{"busyPollUs negative", cfg(`"busyPollUs": -5`), inval, "busyPollUs: -5 is negative; must be between 0 and 1000", nil},
		{"busyPollUs too large", cfg(`"busyPollUs": 1001`), inval, "busyPollUs:", []string{"1001", "1000"}},

		// ringKiB
		{"ringKiB negative", cfg(`"ringKiB": -16`), inval, "ringKiB:", nil},
		{"ringKiB below min", cfg(`"ringKiB": 2`), inval, "ringKiB:", []string{"between 4 and 4096"}},
		{"ringKiB above max", cfg(`"ringKiB": 8192`), inval, "ringKiB:", nil},
		{"ringKiB not power of two", cfg(`"ringKiB": 24`), inval, "ringKiB:", []string{"power of two"}},

		// ports
		{"ports empty list", cfg(`"ports": []`), inval, "ports:", []string{"omit the field to pair all ports"}},
		{"port zero", cfg(`"ports": [0]`), inval, "ports[0]:", []string{"1 and 65535"}},
		{"port negative", cfg(`"ports": [80, -1]`), inval, "ports[1]:", nil},
		{"port too large", cfg(`"ports": [65536]`), inval, "ports[0]:", nil},
		{"port duplicate", cfg(`"ports": [80, 443, 80]`), inval, "ports[2]:", []string{"duplicate", "ports[0]"}},
		{"too many ports", cfg(`"ports": [` + portList(33) + `]`), inval, "ports:", []string{"33", "32"}},

		// pinDir
		{"pinDir relative", cfg(`"pinDir": "sys/fs/bpf/x"`), inval, "pinDir:", []string{"absolute"}},
		{"pinDir root", cfg(`"pinDir": "/"`), inval, "pinDir:", []string{"root"}},
		{"pinDir unclean", cfg(`"pinDir": "/sys/fs/bpf//x/"`), inval, "pinDir:", []string{`"/sys/fs/bpf/x"`}},
		{"pinDir dot", cfg(`"pinDir": "/sys/fs/bpf/./x"`), inval, "pinDir:", nil},
		{"pinDir dotdot", cfg(`"pinDir": "/sys/fs/bpf/../../etc"`), inval, "pinDir:", []string{".."}},
		{"pinDir NUL", cfg(`"pinDir": "/sys/fs/bpf/a\u0000b"`), inval, "pinDir:", nil},

		// runtimeConfig.cgroupPath
		{"cgroupPath dotdot", cfg(`"runtimeConfig": {"cgroupPath": "/kubepods/../../etc"}`), inval, "runtimeConfig.cgroupPath:", []string{".."}},
		{"cgroupPath relative dotdot", cfg(`"runtimeConfig": {"cgroupPath": "../x"}`), inval, "runtimeConfig.cgroupPath:", nil},
		{"cgroupPath unclean", cfg(`"runtimeConfig": {"cgroupPath": "/kubepods//pod1/"}`), inval, "runtimeConfig.cgroupPath:", []string{"clean"}},

		// pod annotation
		{"mode annotation typo", cfg(`"runtimeConfig": {"io.kubernetes.cri.pod-annotations": {"socksplice.io/mode": "of"}}`), inval,
			"runtimeConfig.io.kubernetes.cri.pod-annotations:", []string{"socksplice.io/mode", `"of"`}},
		{"annotations not strings", cfg(`"runtimeConfig": {"io.kubernetes.cri.pod-annotations": {"socksplice.io/mode": 1}}`), decode, "runtimeConfig", nil},

		// prevResult
		{"prevResult bad address", cfg(`"prevResult": {"cniVersion":"1.0.0","ips":[{"address":"not-an-ip"}]}`), inval, "prevResult:", nil},
		{"prevResult bad interfaces", cfg(`"prevResult": {"interfaces": "eth0"}`), inval, "prevResult:", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want error", c)
			}
			if c != nil {
				t.Errorf("Parse returned a config alongside error %v", err)
			}
			var te *types.Error
			if !errors.As(err, &te) {
				t.Fatalf("error %v is %T, want *types.Error", err, err)
			}
			if te.Code != tt.code {
				t.Errorf("Code = %d, want %d (msg %q)", te.Code, tt.code, te.Msg)
			}
			if !strings.HasPrefix(te.Msg, tt.field) {
				t.Errorf("Msg = %q, want prefix %q", te.Msg, tt.field)
			}
			for _, s := range tt.also {
				if !strings.Contains(te.Msg, s) {
					t.Errorf("Msg = %q, want it to contain %q", te.Msg, s)
				}
			}
		})
	}
}

// TestModeAnnotation: a pod's annotation overrides the network's mode for
// that pod; other annotations change nothing.
func TestModeAnnotation(t *testing.T) {
	ann := func(kv string) string {
		return cfg(`"mode": "sockmap", "runtimeConfig": {"io.kubernetes.cri.pod-annotations": {` + kv + `}}`)
	}
	for _, tt := range []struct {
		in, from string
		want     Mode
	}{
		{cfg(`"mode": "sockmap"`), "config", ModeSockmap},
		{ann(`"socksplice.io/mode": "off"`), "pod annotation socksplice.io/mode", ModeOff},
		{ann(`"socksplice.io/mode": "auto"`), "pod annotation socksplice.io/mode", ModeAuto},
		{ann(`"other.io/mode": "off"`), "config", ModeSockmap},
		{ann(``), "config", ModeSockmap},
	} {
		c, err := Parse([]byte(tt.in))
		if err != nil {
			t.Fatalf("Parse(%s): %v", tt.in, err)
		}
		if c.Mode != tt.want || c.ModeFrom() != tt.from {
			t.Errorf("Parse(%s): mode %q from %q, want %q from %q", tt.in, c.Mode, c.ModeFrom(), tt.want, tt.from)
		}
	}
}

// TestDelTarget: from configs Parse rejects, DEL still learns the network
// and a valid pin directory, and falls back to the default otherwise.
func TestDelTarget(t *testing.T) {
	for _, tt := range []struct{ in, name, pinDir string }{
		{cfg(`"mdoe": "sockmap", "pinDir": "/sys/fs/bpf/x"`), "podnet", "/sys/fs/bpf/x"},
		{cfg(`"mode": "turbo"`), "podnet", DefaultPinDir},
		{cfg(`"pinDir": "relative/x"`), "podnet", DefaultPinDir},
		{cfg(`"pinDir": 7`), "podnet", DefaultPinDir},
		{`{"cniVersion": "1.0.0", "name": 5, "pinDir": "/sys/fs/bpf/y"}`, "", "/sys/fs/bpf/y"},
		{`{"cniVersion": "1.0.0", "name": `, "", DefaultPinDir},
		{`[1]`, "", DefaultPinDir},
		{``, "", DefaultPinDir},
	} {
		if _, err := Parse([]byte(tt.in)); err == nil {
			t.Fatalf("Parse(%s) succeeded; the case must be a config Parse rejects", tt.in)
		}
		name, pinDir := DelTarget([]byte(tt.in))
		if name != tt.name || pinDir != tt.pinDir {
			t.Errorf("DelTarget(%s) = %q, %q; want %q, %q", tt.in, name, pinDir, tt.name, tt.pinDir)
		}
	}
}

func TestRequirePrevResult(t *testing.T) {
	c, err := Parse([]byte(cfg("")))
	if err != nil {
		t.Fatal(err)
	}
	err = c.RequirePrevResult()
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("RequirePrevResult() = %v (%T), want *types.Error", err, err)
	}
	if te.Code != types.ErrInvalidNetworkConfig || !strings.Contains(te.Msg, "prevResult") {
		t.Errorf("got code %d msg %q", te.Code, te.Msg)
	}
}

func TestDomain(t *testing.T) {
	a := &NetConf{NetConf: types.NetConf{Name: "podnet"}}
	a2 := &NetConf{NetConf: types.NetConf{Name: "podnet", CNIVersion: "0.4.0"}}
	b := &NetConf{NetConf: types.NetConf{Name: "podnet2"}}

	if a.Domain() != a.Domain() || a.Domain() != a2.Domain() {
		t.Errorf("Domain not stable: %x %x", a.Domain(), a2.Domain())
	}
	if a.Domain() == b.Domain() {
		t.Errorf("Domain(%q) == Domain(%q) == %x", a.Name, b.Name, a.Domain())
	}
	// Pin the derivation so that nodes running different builds agree:
	// printf 'socksplice-domain\0podnet' | sha256sum | cut -c1-16
	if got, want := a.Domain(), uint64(0x517622793ce0af44); got != want {
		t.Errorf("Domain(podnet) = %#x, want %#x", got, want)
	}
	seen := map[uint64]string{}
	for i := range 1000 {
		n := &NetConf{NetConf: types.NetConf{Name: fmt.Sprintf("net-%d", i)}}
		d := n.Domain()
		if d == 0 {
			t.Fatalf("Domain(%q) = 0", n.Name)
		}
		if prev, ok := seen[d]; ok {
			t.Fatalf("Domain(%q) == Domain(%q)", n.Name, prev)
		}
		seen[d] = n.Name
	}
	if (&NetConf{}).Domain() == 0 {
		t.Error("Domain of empty name is 0")
	}
}

func TestPortSet(t *testing.T) {
	tests := []struct {
		name  string
		ports []int
		want  []uint16
	}{
		{"nil", nil, nil},
		{"empty", []int{}, nil},
		{"single", []int{80}, []uint16{80}},
		{"sorted", []int{8080, 80, 443, 1, 65535}, []uint16{1, 80, 443, 8080, 65535}},
		{"invalid dropped", []int{0, 70000, 22, 22, -1}, []uint16{22}},
		{"all invalid", []int{0}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &NetConf{Ports: tt.ports}
			got := c.PortSet()
			if !slices.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("PortSet(%v) = %#v, want %#v", tt.ports, got, tt.want)
			}
		})
	}
	// Through Parse: order of the config does not matter, the input is kept.
	c, err := Parse([]byte(cfg(`"ports": [9000, 22, 443]`)))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.PortSet(); !slices.Equal(got, []uint16{22, 443, 9000}) {
		t.Errorf("PortSet = %v", got)
	}
	if !slices.Equal(c.Ports, []int{9000, 22, 443}) {
		t.Errorf("Ports modified: %v", c.Ports)
	}
}

func TestSupportedVersions(t *testing.T) {
	if !slices.Equal(SupportedVersions, []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}) {
		t.Errorf("SupportedVersions = %v", SupportedVersions)
	}
}

func portList(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprint(10000 + i)
	}
	return strings.Join(s, ", ")
}

func expectEq[T comparable](t *testing.T, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("got %v, want %v", got, want)
	}
}

// The field path of a type error as each encoding/json gives it: Go 1.26
// with the embedded struct's Go name, Go 1.27 (json/v2 underneath) with
// array indexes and a JSON pointer's escapes. Both name the config's key.
func TestFieldPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                             "config",
		"NetConf":                      "config",
		"ports":                        "ports",
		"ports.0":                      "ports",
		"NetConf.cniVersion":           "cniVersion",
		"cni.dev/valid-attachments":    "cni.dev/valid-attachments",
		"cni.dev~1valid-attachments":   "cni.dev/valid-attachments",
		"runtimeConfig.a~0b":           "runtimeConfig.a~b",
		"runtimeConfig.podAnnotations": "runtimeConfig.podAnnotations",
	} {
		if got := fieldPath(in); got != want {
			t.Errorf("fieldPath(%q) = %q, want %q", in, got, want)
		}
	}
}
