// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package runtime

// What an operator sees: "socksplice status PINDIR".

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/socksplice/socksplice/test/testenv"
)

// status is the part of "socksplice status" the tests read.
type status struct {
	Meta struct {
		SelfTest *struct {
			Engine string `json:"engine"`
			Reason string `json:"reason"`
		} `json:"selfTest"`
	} `json:"meta"`
	Attachments []struct {
		Network, ContainerID, IfName string
		NetnsCookie                  uint64
		Engine                       string
	} `json:"attachments"`
	Counters map[string]uint64 `json:"counters"`
}

// readStatus runs the plugin binary's status command on pinDir. Before
// the first ADD nothing is loaded there: a zero status.
func readStatus(t *testing.T, pinDir string) status {
	t.Helper()
	var s status
	out, err := exec.Command(testenv.PluginBinary(t), "status", pinDir).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && strings.Contains(string(ee.Stderr), "not loaded") {
			return s
		}
		t.Fatalf("socksplice status %s: %v", pinDir, err)
	}
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("socksplice status: %v\n%s", err, out)
	}
	return s
}

// attached lists the network's attachments as container IDs.
func (s status) attached(network string) []string {
	var ids []string
	for _, a := range s.Attachments {
		if a.Network == network {
			ids = append(ids, a.ContainerID)
		}
	}
	return ids
}

// delta is s's counters minus before's.
func (s status) delta(before status) map[string]uint64 {
	d := map[string]uint64{}
	for k, v := range s.Counters {
		d[k] = v - before.Counters[k]
	}
	return d
}
