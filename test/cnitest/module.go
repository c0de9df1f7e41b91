// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package cnitest

import (
	"os"
	"strconv"
	"strings"

	sbpf "github.com/socksplice/socksplice/bpf"
)

// ModuleStats reads the splice module's counters and live objects (its
// "stats" parameter), plus its reference count as "refcnt".
func ModuleStats() (map[string]int64, error) {
	b, err := os.ReadFile("/sys/module/" + sbpf.SpliceModule + "/parameters/stats")
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(l, " ")
		m[k], _ = strconv.ParseInt(v, 10, 64)
	}
	rc, err := os.ReadFile("/sys/module/" + sbpf.SpliceModule + "/refcnt")
	if err != nil {
		return nil, err
	}
	m["refcnt"], _ = strconv.ParseInt(strings.TrimSpace(string(rc)), 10, 64)
	return m, nil
}
