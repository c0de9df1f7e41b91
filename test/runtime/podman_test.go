// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package runtime

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/socksplice/socksplice/test/testenv"
)

// podman is a podman with private everything: containers.conf (CNI
// backend, runc, cgroupfs), CNI config and plugin directories, storage
// root, runroot and tmpdir, all under one temporary directory. The host's
// /etc/containers and /etc/cni are never read for networks nor written.
type podman struct {
	dir, conf, netDir string
	global            []string
}

// newPodman sets up a private podman whose CNI plugins are the ones
// testenv builds (socksplice, bridge, host-local, loopback). At cleanup
// every container is removed and whatever podman left mounted under its
// directory is unmounted.
func newPodman(t *testing.T) *podman {
	t.Helper()
	testenv.RequireRoot(t)
	for _, bin := range []string{"podman", "runc", "conmon", "nsenter", "ss"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("SKIP: needs %s (apt-get install podman runc): %v", bin, err)
		}
	}
	p := &podman{dir: t.TempDir()}
	p.netDir = filepath.Join(p.dir, "net.d")
	if err := os.Mkdir(p.netDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// runc in a container may not raise rlimits above the test's own hard
	// limits, which podman's defaults for root exceed.
	var nofile, nproc syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile)
	syscall.Getrlimit(6 /* RLIMIT_NPROC */, &nproc)
	p.conf = filepath.Join(p.dir, "containers.conf")
	conf := fmt.Sprintf(`# socksplice runtime test: private podman
[containers]
default_ulimits = ["nofile=%d:%d", "nproc=%d:%d"]

[engine]
runtime = "runc"              # crun refuses hybrid cgroup hosts
cgroup_manager = "cgroupfs"   # no systemd
events_logger = "file"
events_logfile_path = %q

[network]
network_backend = "cni"
network_config_dir = %q
cni_plugin_dirs = [%q]
`, min(nofile.Cur, 1<<16), min(nofile.Max, 1<<16), min(nproc.Cur, 1<<14), min(nproc.Max, 1<<14),
		filepath.Join(p.dir, "events.log"), p.netDir, testenv.BinDir(t))
	if err := os.WriteFile(p.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p.global = []string{
		"--root", filepath.Join(p.dir, "root"),
		"--runroot", filepath.Join(p.dir, "runroot"),
		"--tmpdir", filepath.Join(p.dir, "tmp"),
		"--storage-driver", "vfs",
		"--cgroup-manager", "cgroupfs",
	}
	if out, err := p.run("version", "--format", "{{.Client.Version}}"); err != nil {
		t.Skipf("SKIP: podman cannot start here: %v %s", err, out)
	} else {
		t.Logf("podman %s (CNI backend, runc, cgroupfs, private root under %s)", strings.TrimSpace(out), p.dir)
	}
	t.Cleanup(func() {
		if out, err := p.run("rm", "--all", "--force", "--time", "0"); err != nil {
			t.Errorf("podman rm --all: %v %s", err, out)
		}
		unmountUnder(t, p.dir)
	})
	return p
}

// cmd is a podman command with the private configuration.
func (p *podman) cmd(args ...string) *exec.Cmd {
	c := exec.Command("podman", append(append([]string{}, p.global...), args...)...)
	c.Env = append(os.Environ(), "CONTAINERS_CONF="+p.conf)
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return c
}

// run runs a podman command to its end and returns its combined output.
func (p *podman) run(args ...string) (string, error) {
	out, err := p.cmd(args...).CombinedOutput()
	return string(out), err
}

func (p *podman) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.run(args...)
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// addNetwork writes n's conflist where podman reads networks.
func (p *podman) addNetwork(t *testing.T, n *cniNet) {
	t.Helper()
	n.writeConflist(t, p.netDir, "1.0.0") // podman 4.3's libcni knows up to 1.0.0
}

// start runs a detached container on network net from rootfs, idle
// (sleep) until it is killed; it stops with SIGKILL (PID 1 ignores
// SIGTERM).
func (p *podman) start(t *testing.T, name, net, rootfs string, extra ...string) (string, error) {
	t.Helper()
	args := append([]string{}, extra...)
	args = append(args, "run", "--detach", "--name", name, "--network", net, "--stop-signal", "KILL",
		"--rootfs", rootfs, "/bin/sleep", "1000000")
	return p.run(args...)
}

// container is what podman inspect says about a running container.
type container struct {
	Name, ID, Netns, IP string
	PID, ConmonPID      int
}

func (p *podman) inspect(t *testing.T, name, net string) container {
	t.Helper()
	out := p.mustRun(t, "inspect", "--type", "container", name)
	var v []struct {
		ID    string `json:"Id"`
		State struct {
			Pid, ConmonPid int
		}
		NetworkSettings struct {
			SandboxKey string
			Networks   map[string]struct{ IPAddress string }
		}
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v) != 1 {
		t.Fatalf("podman inspect %s: %v\n%s", name, err, out)
	}
	c := container{Name: name, ID: v[0].ID, Netns: v[0].NetworkSettings.SandboxKey,
		IP: v[0].NetworkSettings.Networks[net].IPAddress, PID: v[0].State.Pid, ConmonPID: v[0].State.ConmonPid}
	if c.Netns == "" || c.IP == "" || c.PID == 0 {
		t.Fatalf("podman inspect %s: incomplete: %+v", name, c)
	}
	return c
}

func (p *podman) footprint(t *testing.T, n *cniNet, c container) footprint {
	t.Helper()
	return newFootprint(t, n, c.Name, c.ID, c.Netns, c.IP, c.PID, c.ConmonPID)
}

// exec returns a maker of "podman exec" commands that run the helper in
// container name with the environment it is given (testenv.ExchangeCmd).
func (p *podman) exec(name string) func(env []string) *exec.Cmd {
	return func(env []string) *exec.Cmd {
		args := []string{"exec"}
		for _, e := range env {
			args = append(args, "--env", e)
		}
		return p.cmd(append(args, name, helperPath)...)
	}
}

// exchange sends size bytes each way between a server in srv (port
// 8080) and a client in cli, and checks what carried them (see
// carriedBy).
func (p *podman) exchange(t *testing.T, n *cniNet, srv, cli container, size int64, seed uint64, want string) string {
	t.Helper()
	return carriedBy(t, n, size, want, func() (s, c testenv.XferResult, err error) {
		return testenv.ExchangeCmd(t, p.exec(srv.Name), p.exec(cli.Name),
			testenv.Xfer{Role: "server", Addr: "0.0.0.0:8080", Bytes: size, Seed: seed},
			testenv.Xfer{Role: "client", Addr: srv.IP + ":8080", Bytes: size, Seed: seed + 1})
	})
}

// TestPodman runs two podman containers on a CNI network chained with
// socksplice (mode sockmap): 64 MiB each way intact through the fast
// path, again after one container's restart (DEL and ADD), and nothing
// left once both are removed.
func TestPodman(t *testing.T) {
	p := newPodman(t)
	rootfs := busyboxRootfs(t)
	n := newCNINet(t, "sspodman", "10.251.1.0/24", map[string]any{"mode": "sockmap"})
	p.addNetwork(t, n)
	const size = 64 << 20
	var fps []footprint
	for _, name := range []string{"srv", "cli"} {
		if out, err := p.start(t, name, n.Name, rootfs); err != nil {
			t.Fatalf("podman run %s: %v\n%s", name, err, out)
		}
	}
	srv, cli := p.inspect(t, "srv", n.Name), p.inspect(t, "cli", n.Name)
	fps = append(fps, p.footprint(t, n, srv), p.footprint(t, n, cli))
	if got := readStatus(t, n.PinDir).attached(n.Name); len(got) != 2 {
		t.Fatalf("after two ADDs socksplice status lists %d attachments of %s: %v", len(got), n.Name, got)
	}
	first := p.exchange(t, n, srv, cli, size, 1, "sockmap")

	// restart: podman runs DEL, then ADD in a new netns.
	p.mustRun(t, "restart", "--time", "0", "srv")
	srv2 := p.inspect(t, "srv", n.Name)
	if srv2.Netns == srv.Netns {
		t.Fatalf("restart kept netns %s", srv.Netns)
	}
	old := fps[0]
	old.ContainerID = "" // restart keeps the container's ID, and its libcni cache entry
	if left := leftovers(t, n, old); !onlyNetworkWide(left) {
		t.Errorf("after restart, the old srv left: %v", left)
	}
	fps = append(fps, p.footprint(t, n, srv2))
	st := readStatus(t, n.PinDir)
	if got := st.attached(n.Name); len(got) != 2 || len(n.leases(t)) != 2 {
		t.Errorf("after restart: %d attachments (%v), leases %v; want 2 each", len(got), got, n.leases(t))
	}
	second := p.exchange(t, n, srv2, cli, size, 3, "sockmap")

	p.mustRun(t, "rm", "--force", "--time", "0", "srv", "cli")
	requireNoLeftovers(t, "after podman rm", n, fps...)
	if !t.Failed() {
		t.Logf("summary: %s; after restart: %s; leftovers found: none", first, second)
	}
}

// onlyNetworkWide reports whether left names only network-wide things
// that the live containers still hold (attachments, leases, ports), none
// of one footprint's own pieces.
func onlyNetworkWide(left []string) bool {
	for _, l := range left {
		if !strings.HasPrefix(l, "attachments in") && !strings.HasPrefix(l, "host-local leases") && !strings.HasPrefix(l, "ports on bridge") {
			return false
		}
	}
	return true
}

// unmountUnder lazily unmounts whatever is still mounted under dir
// (podman's shm and rootfs mounts of a container that did not go away),
// deepest first, so that the temporary directory can be removed.
func unmountUnder(t *testing.T, dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var mnts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			mnts = append(mnts, fields[4])
		}
	}
	for i := len(mnts) - 1; i >= 0; i-- {
		t.Errorf("podman left %s mounted", mnts[i])
		syscall.Unmount(mnts[i], syscall.MNT_DETACH)
	}
}
