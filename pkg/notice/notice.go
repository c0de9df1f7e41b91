// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package notice tells the node's operator what the plugin decided, in the
// system log: runtimes show a plugin's stderr inconsistently (podman not
// at all), while every node keeps a system log.
package notice

import (
	"fmt"
	"log/syslog"
	"os"
	"strings"
)

// maxLine keeps a line within what /dev/kmsg takes in one write (1024
// bytes, prefix included).
const maxLine = 960

// Log writes one line tagged "socksplice" to syslog (/dev/log) where a
// daemon listens (journald, rsyslog), else to the kernel log (/dev/kmsg,
// read with dmesg), and returns which it used.
func Log(line string) (string, error) {
	line = strings.ReplaceAll(line, "\n", " ")
	if len(line) > maxLine {
		line = line[:maxLine-3] + "..."
	}
	if w, err := syslog.New(syslog.LOG_WARNING|syslog.LOG_DAEMON, "socksplice"); err == nil {
		defer w.Close()
		return "syslog", w.Warning(line)
	}
	f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		return "", fmt.Errorf("no syslog at /dev/log and no kernel log: %w", err)
	}
	defer f.Close()
	// <28> is facility daemon (3), severity warning (4).
	_, err = fmt.Fprintf(f, "<28>socksplice[%d]: %s\n", os.Getpid(), line)
	return "kernel log", err
}
