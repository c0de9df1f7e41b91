// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package cgroup finds the cgroup v2 directory whose sockets the sock_ops
// program must see, and attaches the program there through pinned links.
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/socksplice/socksplice/pkg/crashpoint"
)

// Root returns the mount point of the cgroup v2 hierarchy (on hybrid hosts
// such as this one it is /sys/fs/cgroup/unified, not /sys/fs/cgroup).
func Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	return rootFrom(f)
}

// rootFrom reads the cgroup2 mount point from a mount table in the format
// of /proc/PID/mountinfo.
func rootFrom(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts... - fstype source opts,
		// separated by single spaces: the kernel escapes only space, tab,
		// newline and backslash in paths, so a path may hold other white
		// space (strings.Fields would split it).
		fields := strings.Split(sc.Text(), " ")
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && i >= 6 && strings.HasPrefix(fields[4], "/") {
				return unmangle(fields[4]), nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no cgroup v2 hierarchy is mounted")
}

// unmangle undoes the kernel's escaping of a mountinfo path: space, tab,
// newline and backslash appear as \ooo (octal).
func unmangle(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// How tells where an attachment point came from.
type How string

const (
	FromRuntime How = "runtime cgroupPath"
	FromNetns   How = "processes in the netns"
	NodeLevel   How = "node-level (cgroup v2 root)"
)

// Resolve returns the cgroup directory for a container: the runtime's
// cgroupPath when it exists, else the deepest cgroup shared by the
// processes already in the netns, else the cgroup v2 root (node level: the
// enrollment map then selects the container). Podman, for one, runs ADD
// before the container's cgroup exists.
func Resolve(root, runtimePath, netnsPath string) (string, How, error) {
	if runtimePath != "" {
		p := filepath.Clean(runtimePath)
		if !strings.HasPrefix(p, root+"/") && p != root {
			p = filepath.Join(root, p)
		}
		// Never a directory outside the hierarchy ("/.." joined to the
		// root is its parent): conf refuses such paths, and this stays
		// safe without it.
		if p != root && !strings.HasPrefix(p, root+"/") {
			p = ""
		}
		if st, err := os.Stat(p); p != "" && err == nil && st.IsDir() {
			if p == root {
				return root, NodeLevel, nil
			}
			return p, FromRuntime, nil
		}
	}
	if netnsPath != "" {
		if rel := netnsCgroup(netnsPath); rel != "" && rel != "/" {
			p := filepath.Join(root, rel)
			if st, err := os.Stat(p); err == nil && st.IsDir() {
				return p, FromNetns, nil
			}
		}
	}
	return root, NodeLevel, nil
}

// netnsCgroup returns the deepest cgroup v2 path common to the processes
// living in the netns, "" if there are none.
func netnsCgroup(netnsPath string) string {
	var want syscall.Stat_t
	if err := syscall.Stat(netnsPath, &want); err != nil {
		return ""
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return ""
	}
	common := ""
	found := false
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", e.Name(), "ns/net"), &st) != nil ||
			st.Dev != want.Dev || st.Ino != want.Ino {
			continue
		}
		cg := procCgroup(e.Name())
		if cg == "" {
			continue
		}
		if !found {
			common, found = cg, true
		} else {
			common = commonAncestor(common, cg)
		}
	}
	return common
}

func procCgroup(pid string) string {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "cgroup"))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return rest
		}
	}
	return ""
}

func commonAncestor(a, b string) string {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	n := 0
	for n < len(as) && n < len(bs) && as[n] == bs[n] {
		n++
	}
	if r := strings.Join(as[:n], "/"); r != "" {
		return r
	}
	return "/"
}

// Attach attaches prog to the cgroup at dir as a sock_ops program and pins
// the link at pin. A link pinned there that is attached to dir is kept
// (ADD may be retried); one that is not (detached by hand, its cgroup
// removed, or another cgroup's) is replaced.
func Attach(dir string, prog *ebpf.Program, pin string) error {
	if _, err := os.Stat(pin); err == nil {
		id, err := ID(dir)
		if err != nil {
			return err
		}
		if at, err := LinkCgroup(pin); err == nil && at == id {
			return nil
		}
		if err := Detach(pin); err != nil {
			return fmt.Errorf("replacing link %s: %w", pin, err)
		}
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: ebpf.AttachCGroupSockOps, Program: prog})
	if err != nil {
		return fmt.Errorf("attaching sock_ops to %s: %w", dir, err)
	}
	defer l.Close()
	crashpoint.Done(crashpoint.CgroupAttach)
	if err := l.Pin(pin); err != nil {
		return fmt.Errorf("pinning link %s: %w", pin, err)
	}
	crashpoint.Done(crashpoint.CgroupPin)
	return nil
}

// Detach removes a pinned link; the kernel detaches it with the last
// reference. A missing pin is not an error, also on a read-only bpffs
// (where unlink says EROFS before it looks).
func Detach(pin string) error {
	if _, err := os.Lstat(pin); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	err := os.Remove(pin)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err == nil {
		crashpoint.Done(crashpoint.CgroupDetach)
	}
	return err
}

// ID returns the ID of the cgroup at dir: its inode number on cgroup2fs.
func ID(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	return st.Ino, nil
}

// LinkCgroup returns the ID of the cgroup the link pinned at pin is
// attached to; 0 once it is detached (by hand, or its cgroup was
// removed), when it runs nothing although the pin stays.
func LinkCgroup(pin string) (uint64, error) {
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return 0, err
	}
	c := info.Cgroup()
	if c == nil {
		return 0, fmt.Errorf("link %s is not a cgroup link", pin)
	}
	return c.CgroupId, nil
}

// AttachedIDs returns the IDs of the sock_ops programs attached directly to
// the cgroup at dir.
func AttachedIDs(dir string) ([]ebpf.ProgramID, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: ebpf.AttachCGroupSockOps})
	if err != nil {
		return nil, fmt.Errorf("querying sock_ops programs of %s: %w", dir, err)
	}
	var ids []ebpf.ProgramID
	for _, p := range res.Programs {
		ids = append(ids, p.ID)
	}
	return ids, nil
}
