// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package runtime

// Proof that removing containers left nothing: what each container put on
// the host is recorded while it runs (footprint), and after removal each
// piece is looked for again.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// libcniCache is libcni's default cache directory (podman 4.3 and
// cnitool use it): one result file per attachment, removed by DEL.
const libcniCache = "/var/lib/cni"

// footprint is what one container attachment put on the host.
type footprint struct {
	Name        string // for messages
	ContainerID string // as the runtime passes it to CNI
	Netns       string // path
	netnsIno    uint64
	IP          string
	HostVeth    string
	// OwnNetns: the test made the netns and removes it at cleanup (CNI
	// DEL leaves a runtime's netns alone), so it is not a leftover.
	OwnNetns bool
	procs    map[int]string // pid -> its start time (so a reused pid is not a leftover)
}

// newFootprint records a container's netns, address, host veth (the
// bridge port whose peer is its eth0) and processes.
func newFootprint(t *testing.T, n *cniNet, name, containerID, netns, ip string, pids ...int) footprint {
	t.Helper()
	f := footprint{Name: name, ContainerID: containerID, Netns: netns, IP: ip, procs: map[int]string{}}
	var st syscall.Stat_t
	if err := syscall.Stat(netns, &st); err != nil {
		t.Fatalf("%s: netns %s: %v", name, netns, err)
	}
	f.netnsIno = st.Ino
	f.HostVeth = hostVeth(t, n, netns)
	for _, pid := range pids {
		if pid > 0 {
			f.procs[pid], _ = procStart(pid)
		}
	}
	return f
}

// hostVeth finds the bridge port whose peer is eth0 in netns.
func hostVeth(t *testing.T, n *cniNet, netns string) string {
	t.Helper()
	// nsenter keeps the host's /sys, so ask netlink from inside the netns.
	out, err := exec.Command("nsenter", "--net="+netns, "ip", "-j", "link", "show", "eth0").Output()
	if err != nil {
		t.Fatalf("eth0 in %s: %v", netns, err)
	}
	var eth0 []struct {
		LinkIndex int `json:"link_index"`
	}
	if err := json.Unmarshal(out, &eth0); err != nil || len(eth0) != 1 {
		t.Fatalf("eth0 in %s: %v %s", netns, err, out)
	}
	peer := strconv.Itoa(eth0[0].LinkIndex)
	for _, p := range n.ports(t) {
		if b, err := os.ReadFile(filepath.Join("/sys/class/net", p, "ifindex")); err == nil && strings.TrimSpace(string(b)) == peer {
			return p
		}
	}
	t.Fatalf("no port of %s has ifindex %s (eth0's peer in %s)", n.Bridge, peer, netns)
	return ""
}

// procStart returns field 22 of /proc/PID/stat, the start time (empty
// once the process is gone), and its state (field 3).
func procStart(pid int) (start, state string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		if f := strings.Fields(s[i+1:]); len(f) > 19 {
			return f[19], f[0]
		}
	}
	return "", ""
}

// awaitExit gives a process that is on its way out (podman's conmon runs
// the container's cleanup after "podman rm" returned) a bounded while to
// exit; one still there afterwards is a leftover.
func awaitExit(pid int, start string) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return // gone
	}
	defer unix.Close(fd)
	if now, _ := procStart(pid); now != start {
		return // the pid was reused
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	unix.Poll(fds, 30_000) // readable once it exited
}

// leftovers lists what is still there of the footprints and of the
// network: attachments in socksplice status, netns (by path, and by
// inode in any process), host veths, bridge ports, host-local leases,
// host sockets with the containers' addresses, processes, libcni cache
// entries. Empty means nothing was left.
func leftovers(t *testing.T, n *cniNet, fps ...footprint) []string {
	t.Helper()
	var left []string
	if ids := readStatus(t, n.PinDir).attached(n.Name); len(ids) > 0 {
		left = append(left, fmt.Sprintf("attachments in socksplice status: %v", ids))
	}
	if l := n.leases(t); len(l) > 0 {
		left = append(left, fmt.Sprintf("host-local leases: %v", l))
	}
	if p := n.ports(t); len(p) > 0 {
		left = append(left, fmt.Sprintf("ports on bridge %s: %v", n.Bridge, p))
	}
	inos := map[uint64]string{}
	for _, f := range fps {
		if _, err := os.Lstat(f.Netns); err == nil && !f.OwnNetns {
			left = append(left, fmt.Sprintf("%s: netns %s", f.Name, f.Netns))
		}
		inos[f.netnsIno] = f.Name
		if f.HostVeth != "" {
			if _, err := os.Stat(filepath.Join("/sys/class/net", f.HostVeth)); err == nil {
				left = append(left, fmt.Sprintf("%s: link %s", f.Name, f.HostVeth))
			}
		}
		for pid, start := range f.procs {
			if start != "" {
				awaitExit(pid, start)
			}
			if now, state := procStart(pid); start != "" && now == start && state != "Z" {
				// A zombie holds nothing but its pid: podman's
				// conmon double-forks, so init reaps it, when it gets
				// to it.
				stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
				left = append(left, fmt.Sprintf("%s: process %s", f.Name, stat))
			}
		}
		if f.ContainerID == "" {
			// the ID lives on (a restarted container): not this
			// footprint's alone
		} else if m, _ := filepath.Glob(filepath.Join(libcniCache, "results", n.Name+"-"+f.ContainerID+"-*")); len(m) > 0 {
			left = append(left, fmt.Sprintf("%s: libcni cache %v", f.Name, m))
		}
		if f.IP != "" {
			out, _ := exec.Command("ss", "-Htanp", "src", f.IP, "or", "dst", f.IP).Output()
			if s := strings.TrimSpace(string(out)); s != "" {
				left = append(left, fmt.Sprintf("%s: host sockets of %s: %s", f.Name, f.IP, s))
			}
		}
	}
	left = append(left, netnsHolders(inos)...)
	return left
}

// netnsHolders lists processes still in one of the netns (by inode).
func netnsHolders(inos map[uint64]string) []string {
	var left []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			continue
		}
		var ino uint64
		if _, err := fmt.Sscanf(l, "net:[%d]", &ino); err != nil {
			continue
		}
		if name, ok := inos[ino]; ok {
			left = append(left, fmt.Sprintf("%s: process %d still in its netns", name, pid))
		}
	}
	return left
}

// requireNoLeftovers fails with everything leftovers found, and logs the
// figure otherwise.
func requireNoLeftovers(t *testing.T, when string, n *cniNet, fps ...footprint) {
	t.Helper()
	if left := leftovers(t, n, fps...); len(left) > 0 {
		t.Errorf("%s: leftovers:\n  %s", when, strings.Join(left, "\n  "))
		return
	}
	t.Logf("%s: leftovers found: none (attachments, leases, bridge ports, netns, links, processes, host sockets, libcni cache)", when)
}
