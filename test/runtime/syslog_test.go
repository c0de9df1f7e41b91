// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package runtime

// The system log as the plugin reaches it: syslog through /dev/log where
// a syslog daemon listens, otherwise the kernel log (/dev/kmsg).

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// kmsgReader reads the kernel log from where it was opened on.
type kmsgReader struct{ fd int }

// watchKmsg opens the kernel log at its end; closed at cleanup.
func watchKmsg(t *testing.T) *kmsgReader {
	t.Helper()
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("/dev/kmsg: %v", err)
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		unix.Close(fd)
		t.Fatalf("/dev/kmsg: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &kmsgReader{fd: fd}
}

// lines returns the new records' messages that contain substr.
func (k *kmsgReader) lines(substr string) []string {
	var out []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(k.fd, buf)
		if errors.Is(err, syscall.EPIPE) { // overwritten records
			continue
		}
		if err != nil || n <= 0 {
			return out
		}
		if _, msg, ok := strings.Cut(string(buf[:n]), ";"); ok && strings.Contains(msg, substr) {
			out = append(out, strings.TrimSpace(msg))
		}
	}
}

// hasSyslog reports whether a syslog daemon listens on /dev/log (then the
// plugin's lines go there, not to the kernel log).
func hasSyslog() bool {
	fi, err := os.Stat("/dev/log")
	return err == nil && fi.Mode()&os.ModeSocket != 0
}
