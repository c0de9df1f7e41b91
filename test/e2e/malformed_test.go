// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/test/testenv"
)

// TestMalformedConfigs feeds ADD bad configs: each gets a CNI error that
// names the field, and nothing is created (no pin dir, no program on the
// container's cgroup).
func TestMalformedConfigs(t *testing.T) {
	testenv.RequireRoot(t)
	pinDir := testenv.PinDir(t) // never created by a rejected ADD
	c := testenv.NewContainer(t, "bad")
	prev := map[string]any{
		"cniVersion": "1.1.0",
		"interfaces": []any{map[string]any{"name": "eth0", "sandbox": c.Netns}},
		"ips":        []any{map[string]any{"address": "10.219.0.2/24", "interface": 0}},
	}
	base := func(kv ...any) []byte {
		m := map[string]any{"cniVersion": "1.1.0", "name": "badnet", "type": "socksplice",
			"mode": "sockmap", "pinDir": pinDir, "prevResult": prev}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		b, _ := json.Marshal(m)
		return b
	}
	many := make([]int, 33)
	for i := range many {
		many[i] = 1000 + i
	}
	cases := []struct {
		name  string
		stdin []byte
		code  uint
		field string
	}{
		{"bad JSON", []byte(`{"cniVersion":"1.1.0","name":`), types.ErrDecodingFailure, "config"},
		{"not an object", []byte(`[1,2,3]`), types.ErrDecodingFailure, "config"},
		{"unknown mode", base("mode", "turbo"), types.ErrInvalidNetworkConfig, "mode"},
		{"negative busyPollUs", base("busyPollUs", -1), types.ErrInvalidNetworkConfig, "busyPollUs"},
		{"huge busyPollUs", base("busyPollUs", 1000000), types.ErrInvalidNetworkConfig, "busyPollUs"},
		{"busyPollUs not a number", base("busyPollUs", "fast"), types.ErrDecodingFailure, "busyPollUs"},
		{"ringKiB not a power of two", base("ringKiB", 24), types.ErrInvalidNetworkConfig, "ringKiB"},
		{"ringKiB too small", base("ringKiB", 2), types.ErrInvalidNetworkConfig, "ringKiB"},
		{"ringKiB too large", base("ringKiB", 8192), types.ErrInvalidNetworkConfig, "ringKiB"},
		{"port zero", base("ports", []int{0}), types.ErrInvalidNetworkConfig, "ports"},
		{"port out of range", base("ports", []int{70000}), types.ErrInvalidNetworkConfig, "ports"},
		{"duplicate port", base("ports", []int{80, 80}), types.ErrInvalidNetworkConfig, "ports"},
		{"empty ports", base("ports", []int{}), types.ErrInvalidNetworkConfig, "ports"},
		{"too many ports", base("ports", many), types.ErrInvalidNetworkConfig, "ports"},
		{"ports not a list", base("ports", "80"), types.ErrDecodingFailure, "ports"},
		{"loopback not a bool", base("loopback", "yes"), types.ErrDecodingFailure, "loopback"},
		{"missing prevResult", base("prevResult", nil), types.ErrInvalidNetworkConfig, "prevResult"},
		{"unparsable prevResult", base("prevResult", map[string]any{"cniVersion": "1.1.0", "ips": "x"}), types.ErrInvalidNetworkConfig, "prevResult"},
		{"unsupported old cniVersion", base("cniVersion", "0.2.0"), types.ErrIncompatibleCNIVersion, "CNI version"},
		{"unsupported new cniVersion", base("cniVersion", "2.0.0"), types.ErrIncompatibleCNIVersion, "CNI version"},
		{"relative pinDir", base("pinDir", "sys/fs/bpf/x"), types.ErrInvalidNetworkConfig, "pinDir"},
		{"pinDir with ..", base("pinDir", "/sys/fs/bpf/../x"), types.ErrInvalidNetworkConfig, "pinDir"},
		{"misspelt field", base("busyPollUS", 50), types.ErrInvalidNetworkConfig, "busyPollUS"},
		{"wrong type", base("type", "bridge"), types.ErrInvalidNetworkConfig, "type"},
		{"missing name", base("name", nil), types.ErrInvalidNetworkConfig, "name"},
		{"cgroupPath escaping", base("runtimeConfig", map[string]any{"cgroupPath": "/a/../../etc"}), types.ErrInvalidNetworkConfig, "cgroupPath"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := testenv.Invoke(t, "ADD", c, tc.stdin)
			var ce *types.Error
			if !errors.As(err, &ce) {
				t.Fatalf("want a CNI error, got %v", err)
			}
			text := ce.Msg + " " + ce.Details
			t.Logf("code %d: %s", ce.Code, strings.TrimSpace(text))
			if ce.Code != tc.code {
				t.Errorf("code %d, want %d", ce.Code, tc.code)
			}
			if !strings.Contains(strings.ToLower(text), strings.ToLower(tc.field)) {
				t.Errorf("error %q does not name %q", text, tc.field)
			}
			if _, err := os.Stat(pinDir); !os.IsNotExist(err) {
				t.Errorf("pin dir %s exists after a rejected ADD", pinDir)
			}
			if ids, _ := cgroup.AttachedIDs(c.Cgroup); len(ids) != 0 {
				t.Errorf("programs attached after a rejected ADD: %v", ids)
			}
		})
	}
	if len(cases) < 15 {
		t.Fatalf("only %d malformed cases", len(cases))
	}
}
