// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package testenv

// Raw socket descriptors and the kernel log, for tests that drive the
// kernel below Go's poller (blocking syscalls from several threads) and
// must see what the kernel said meanwhile.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PinThread locks the calling goroutine to its OS thread and that thread
// to cpu, for two ends that must run side by side (a busy-polling reader
// and its peer): the scheduler would otherwise now and then put both on
// one CPU, where a spin cannot find the peer's answer. restore gives the
// thread its CPUs back and unlocks it; a goroutine that ends without
// calling it takes the pinned thread with it (Go ends a locked thread).
func PinThread(cpu int) (restore func(), err error) {
	runtime.LockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("pinning to CPU %d: %w", cpu, err)
	}
	return func() {
		unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	}, nil
}

// ConnFD is c's own descriptor, as Go keeps it (nonblocking), for
// syscalls beside Go's; it stays c's.
func ConnFD(t T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// RawFD takes a TCP connection away from Go's poller: it returns a
// blocking descriptor of the same socket and closes c (the socket lives
// on in the descriptor). The descriptor is closed at cleanup unless the
// test closed it first: FD.Close closes it once, so a number the kernel
// reused meanwhile is never closed by mistake.
func RawFD(t T, c *net.TCPConn) *FD {
	t.Helper()
	f, err := c.File()
	if err != nil {
		t.Fatalf("conn.File: %v", err)
	}
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	f.Close()
	c.Close()
	if err != nil {
		t.Fatalf("dup: %v", err)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		t.Fatalf("blocking mode: %v", err)
	}
	r := &FD{fd: fd}
	t.Cleanup(func() { r.Close() })
	return r
}

// FD is a raw socket descriptor that is closed once.
type FD struct {
	mu     sync.Mutex
	fd     int
	closed bool
}

// Int is the descriptor's number (valid until Close).
func (f *FD) Int() int { return f.fd }

// Close closes the descriptor once.
func (f *FD) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	return unix.Close(f.fd)
}

// Disconnect is connect(fd, {AF_UNSPEC}): TCP's disconnect (RST to an
// established peer), the socket stays open. x/sys/unix has no
// AF_UNSPEC sockaddr, so the call is raw.
func Disconnect(fd int) error {
	var sa [16]byte // struct sockaddr, sa_family = AF_UNSPEC (0)
	_, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa[0])), uintptr(len(sa)))
	if e != 0 {
		return e
	}
	return nil
}

// SetTimeouts sets SO_RCVTIMEO and SO_SNDTIMEO (nanoseconds), so that no
// blocking call on fd outlives them by much.
func SetTimeouts(fd int, rcv, snd int64) error {
	tv := unix.NsecToTimeval(rcv)
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	tv = unix.NsecToTimeval(snd)
	return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
}

// RetryEINTR calls f again while it fails with EINTR, as an application's
// syscall wrappers do: the Go runtime preempts threads with signals, and a
// socket with SO_RCVTIMEO or SO_SNDTIMEO (SetTimeouts) returns EINTR
// instead of restarting the call.
func RetryEINTR[T any](f func() (T, error)) (T, error) {
	for {
		v, err := f()
		if err != unix.EINTR {
			return v, err
		}
	}
}

// KernelSplat matches kernel log lines that mean the kernel met a bug.
var KernelSplat = regexp.MustCompile(`KASAN|BUG:|WARNING:|Oops|general protection|lockdep|possible circular|refcount_t|UBSAN|list_add corruption|list_del corruption|stack-protector|soft lockup|hung_task|rcu_sched self-detected|rcu: INFO`)

// KernelLog reads what the kernel logs from its start on.
type KernelLog struct {
	mu sync.Mutex
	fd int
}

// WatchKernelLog starts reading the kernel log at its current end. At
// cleanup (which, registered first, runs after the test's other
// cleanups) it fails the test on every new line KernelSplat matches.
// Without /dev/kmsg the test fails: it could not see a crash.
func WatchKernelLog(t T) *KernelLog {
	t.Helper()
	fd, err := openKernelLog()
	if err != nil {
		t.Fatalf("%v (the test must see the kernel log)", err)
	}
	k := &KernelLog{fd: fd}
	t.Cleanup(func() {
		k.Check(t, "at the end of the test")
		k.mu.Lock()
		unix.Close(k.fd)
		k.fd = -1
		k.mu.Unlock()
	})
	return k
}

// Lines returns the new kernel log lines KernelSplat matches, with up to 40
// lines after each (the report and its first frames).
func (k *KernelLog) Lines() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var bad []string
	after := 0
	readKernelLog(k.fd, func(msg string) {
		if KernelSplat.MatchString(msg) {
			bad = append(bad, msg)
			after = 40
		} else if after > 0 && len(bad) < 400 {
			bad = append(bad, "    "+msg)
			after--
		}
	})
	return bad
}

// openKernelLog opens /dev/kmsg at its current end.
func openKernelLog() (int, error) {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("/dev/kmsg: %w", err)
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("/dev/kmsg: %w", err)
	}
	return fd, nil
}

// readKernelLog calls each with the message of every record logged since
// the last read of fd (none once fd is closed, -1).
func readKernelLog(fd int, each func(msg string)) {
	buf := make([]byte, 8192)
	for fd >= 0 {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, syscall.EPIPE) { // overwritten records: keep reading
			continue
		}
		if err != nil || n <= 0 {
			return
		}
		if _, msg, ok := strings.Cut(string(buf[:n]), ";"); ok {
			each(strings.TrimSpace(msg))
		}
	}
}

// KernelTail is what the kernel log gains from the moment it was opened,
// for tests that look for their own lines there (the plugin's notices).
type KernelTail struct{ fd int }

// TailKernelLog opens the kernel log at its end; it is closed at cleanup.
func TailKernelLog(t T) *KernelTail {
	t.Helper()
	fd, err := openKernelLog()
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &KernelTail{fd: fd}
}

// Messages returns the messages logged since the last call that contain
// substr.
func (k *KernelTail) Messages(substr string) []string {
	var out []string
	readKernelLog(k.fd, func(msg string) {
		if strings.Contains(msg, substr) {
			out = append(out, msg)
		}
	})
	return out
}

// HasSyslog reports whether a syslog daemon listens on /dev/log: then the
// plugin's notices go there, not to the kernel log.
func HasSyslog() bool {
	fi, err := os.Stat("/dev/log")
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

// Check fails the test with every new splat line since the last check.
func (k *KernelLog) Check(t T, when string) bool {
	t.Helper()
	bad := k.Lines()
	if len(bad) == 0 {
		return true
	}
	if len(bad) > 120 {
		bad = append(bad[:120], "... (more)")
	}
	t.Errorf("the kernel logged a problem %s:\n%s", when, strings.Join(bad, "\n"))
	return false
}
