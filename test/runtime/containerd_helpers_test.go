// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package runtime

// A private containerd for the tests: its own config, root, state, socket
// and CNI directories, started as a child of the test and stopped at
// cleanup; ctr and crictl pointed at it; a busybox+boxtool rootfs and an
// OCI image tarball (the pod sandbox's pause image and the containers'
// image) assembled by hand, since no registry is reachable.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socksplice/socksplice/test/testenv"
)

// PauseImage is the CRI's default sandbox image name in containerd 1.6;
// BoxImage is the image of the pods' containers. Both hold boxtool and
// busybox.
const (
	PauseImage = "registry.k8s.io/pause:3.6"
	BoxImage   = "localhost/socksplice-box:test"
)

// runDir is containerd's runtime directory that its config cannot move.
const runDir = "/run/containerd"

// Containerd is a private containerd instance.
type Containerd struct {
	Dir     string // everything of this instance lives under it
	Sock    string // its gRPC socket
	ConfDir string // its CNI conf dir (the CRI's; ctr's through a mount namespace)
	BinDir  string // its CNI bin dir: socksplice, bridge, host-local, loopback
	// CNICache is libcni's cache dir as ctr's CNI calls see it
	// (/var/lib/cni in ctr's mount namespace): GC and DEL by hand use it.
	CNICache string
	cmd      *exec.Cmd
	log      *os.File
}

// RequireContainerd skips, with the reason, unless containerd, ctr, runc
// and unshare are installed (.ci/run installs them).
func RequireContainerd(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	for _, b := range []string{"containerd", "ctr", "runc", "unshare", "ss"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("SKIP: needs %s (apt-get install containerd runc util-linux iproute2): %v", b, err)
		}
	}
}

// StartContainerd writes conflist (a JSON conflist) into a private CNI
// conf dir and starts containerd with a private config. containerd, every
// container and pod it still runs and its shims are stopped at cleanup.
func StartContainerd(t *testing.T, conflist []byte) *Containerd {
	t.Helper()
	RequireContainerd(t)
	// containerd 1.6 keeps shim sockets, runc state and ctr's fifos under
	// /run/containerd whatever its config says; where the test makes that
	// directory, it removes it again (once empty).
	if _, err := os.Stat(runDir); os.IsNotExist(err) {
		t.Cleanup(func() { removeEmptyDirs(runDir) })
	}
	dir, err := os.MkdirTemp("", "ss-ctrd-") // short: socket paths have a length limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &Containerd{
		Dir:      dir,
		Sock:     filepath.Join(dir, "containerd.sock"),
		ConfDir:  filepath.Join(dir, "net.d"),
		BinDir:   testenv.BinDir(t),
		CNICache: filepath.Join(dir, "cni-cache"),
	}
	for _, d := range []string{c.ConfDir, c.CNICache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(c.ConfDir, "10-socksplice-test.conflist"), conflist, 0o644); err != nil {
		t.Fatal(err)
	}
	// restrict_oom_score_adj: runc here may not lower its oom_score_adj.
	// The native snapshotter needs nothing from the filesystem under dir.
	cfg := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  restrict_oom_score_adj = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.Sock, c.Sock+".ttrpc",
		filepath.Join(dir, "opt"), PauseImage, c.BinDir, c.ConfDir)
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if c.log, err = os.Create(filepath.Join(dir, "containerd.log")); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command("containerd", "--config", cfgPath, "--log-level", "info")
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting containerd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- c.cmd.Wait() }()
	t.Cleanup(func() { c.stop(t, exited) })
	// Ready when it answers on its socket; it exits at once when it
	// cannot run here.
	for i := 0; ; i++ {
		if _, err := c.Ctr("version"); err == nil {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Skipf("SKIP: containerd cannot start here: %v\n%s", err, c.Log())
		default:
		}
		if i == 300 {
			t.Fatalf("containerd did not answer on %s within 30 s\n%s", c.Sock, c.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return c
}

// Log is what containerd logged so far.
func (c *Containerd) Log() string {
	b, _ := os.ReadFile(c.log.Name())
	return string(b)
}

// stop removes what is left in every namespace (pods, tasks, containers,
// images), then stops containerd (SIGTERM, its PID) and the shims it
// started (found by our socket path in their command line, by PID).
func (c *Containerd) stop(t *testing.T, exited chan error) {
	c.Crictl("rmp", "-af")
	for _, ns := range []string{"default", "k8s.io"} {
		out, _ := c.Ctr("-n", ns, "tasks", "ls", "-q")
		for _, id := range strings.Fields(string(out)) {
			c.Ctr("-n", ns, "tasks", "kill", "-s", "SIGKILL", id)
			c.Ctr("-n", ns, "tasks", "rm", "-f", id)
		}
		out, _ = c.Ctr("-n", ns, "containers", "ls", "-q")
		for _, id := range strings.Fields(string(out)) {
			c.Ctr("-n", ns, "containers", "rm", id)
		}
		out, _ = c.Ctr("-n", ns, "images", "ls", "-q")
		for _, ref := range strings.Fields(string(out)) {
			c.Ctr("-n", ns, "images", "rm", "--sync", ref)
		}
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		c.cmd.Process.Kill()
		<-exited
	}
	for _, pid := range c.shims() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	c.log.Close()
}

// shims returns the PIDs of processes whose command line names this
// instance's socket: its shims.
func (c *Containerd) shims() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(b, []byte(c.Sock)) && !bytes.HasPrefix(b, []byte("ctr\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Ctr runs ctr against this instance and returns its combined output.
func (c *Containerd) Ctr(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "ctr", append([]string{"--address", c.Sock}, args...)...).CombinedOutput()
}

// MustCtr is Ctr that fails the test on error.
func (c *Containerd) MustCtr(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.Ctr(args...)
	if err != nil {
		t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Crictl runs crictl against this instance's CRI and returns its stdout
// (and its stderr in the error).
func (c *Containerd) Crictl(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ep := "unix://" + c.Sock
	argv := append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "60s"}, args...)
	cmd := exec.CommandContext(ctx, crictlPath(), argv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, stderr.Bytes())
	}
	return out, err
}

// MustCrictl is Crictl that fails the test on error.
func (c *Containerd) MustCrictl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.Crictl(args...)
	if err != nil {
		t.Fatalf("crictl %s: %v\n%s\ncontainerd: %s", strings.Join(args, " "), err, out, c.Log())
	}
	return strings.TrimSpace(string(out))
}

// crictlPath finds crictl on PATH or where `go install` put it.
func crictlPath() string {
	if p, err := exec.LookPath("crictl"); err == nil {
		return p
	}
	for _, d := range []string{os.Getenv("GOBIN"), filepath.Join(os.Getenv("HOME"), "go", "bin"), "/root/go/bin"} {
		if p := filepath.Join(d, "crictl"); d != "" && isExec(p) {
			return p
		}
	}
	return "crictl"
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode()&0o111 != 0
}

// RequireCrictl skips, with the reason, unless crictl is installed.
func RequireCrictl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath(crictlPath()); err != nil {
		t.Skipf("SKIP: needs crictl (go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0): %v", err)
	}
}

// CtrTask is a container started with `ctr run -d --cni --rootfs`; its
// stdout goes to a log file.
type CtrTask struct {
	ID  string // the container ID; CNI sees "default-" + ID
	Log string // its stdout and stderr
	out *bufio.Reader
}

// CNIID is the container ID ctr passes to CNI.
func (k *CtrTask) CNIID() string { return "default-" + k.ID }

// RunCtr starts `ctr run -d --cni --rootfs` of a fresh busyboxRootfs running argv with env. Detached, as a user runs a service: ctr
// then never runs DEL (in the foreground it does, when the task exits).
// ctr 1.6 reads its CNI config only from /etc/cni/net.d and /opt/cni/bin,
// and libcni caches in /var/lib/cni: it runs in a mount namespace of its
// own where those are bind mounts of this instance's directories, so the
// node's are neither used nor touched. The task and container are removed
// at cleanup if still there.
func (c *Containerd) RunCtr(t *testing.T, id string, env []string, argv ...string) *CtrTask {
	t.Helper()
	rootfs := busyboxRootfs(t)
	for _, d := range []string{"/etc/cni/net.d", "/opt/cni/bin", "/var/lib/cni"} {
		mountPoint(t, d)
	}
	k := &CtrTask{ID: id, Log: filepath.Join(t.TempDir(), id+".log")}
	args := []string{"--mount", "--propagation", "slave", "--", "sh", "-ec",
		`mount --bind "$1" /etc/cni/net.d; mount --bind "$2" /opt/cni/bin; mount --bind "$3" /var/lib/cni; shift 3; exec "$@"`,
		"sh", c.ConfDir, c.BinDir, c.CNICache,
		"ctr", "--address", c.Sock, "run", "-d", "--cni", "--log-uri", "file://" + k.Log, "--rootfs"}
	for _, e := range env {
		args = append(args, "--env", e)
	}
	args = append(append(args, rootfs, id), argv...)
	t.Cleanup(func() {
		c.Ctr("tasks", "rm", "-f", id)
		c.Ctr("containers", "rm", id)
	})
	if out, err := exec.Command("unshare", args...).CombinedOutput(); err != nil {
		t.Fatalf("ctr run %s: %v\n%s", id, err, out)
	}
	f, err := os.Open(k.Log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	k.out = bufio.NewReader(&follower{f: f, deadline: time.Now().Add(150 * time.Second)})
	return k
}

// follower reads a file that is still being written, as tail -f does,
// until its deadline.
type follower struct {
	f        *os.File
	deadline time.Time
}

func (r *follower) Read(p []byte) (int, error) {
	for {
		n, err := r.f.Read(p)
		if n > 0 || err != io.EOF || time.Now().After(r.deadline) {
			return n, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitReady reads the task's stdout up to a helper's "ready" line.
func (k *CtrTask) WaitReady(t *testing.T) {
	t.Helper()
	for {
		line, err := k.out.ReadString('\n')
		if testenv.IsReadyLine(line) {
			return
		}
		if err != nil {
			b, _ := os.ReadFile(k.Log)
			t.Fatalf("%s: no ready line: %v; its output: %s", k.ID, err, b)
		}
	}
}

// Report decodes the helper's report from the task's stdout into v.
func (k *CtrTask) Report(v any) error { return testenv.DecodeHelperReport(k.out, v) }

// mountPoint makes sure dir exists to bind over; what it had to create is
// removed at cleanup (when empty), so the node is left as it was.
func mountPoint(t *testing.T, dir string) {
	t.Helper()
	var created []string
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		created = append(created, d)
	}
	if len(created) == 0 {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, d := range created { // deepest first
			os.Remove(d)
		}
	})
}

// ImportImages builds an OCI image archive holding the box files once,
// named both PauseImage (entrypoint "boxtool pause") and BoxImage, and
// imports it into namespace ns with `ctr images import` (the CRI's
// namespace is k8s.io). The images go when containerd stops.
func (c *Containerd) ImportImages(t *testing.T, ns string) {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "images.tar")
	if err := writeOCIArchive(archive, busyboxRootfs(t), map[string][]string{
		PauseImage: {"/boxtool", "pause"},
		BoxImage:   {"/bin/sleep", "3600"},
	}); err != nil {
		t.Fatal(err)
	}
	c.MustCtr(t, "-n", ns, "images", "import", "--snapshotter", "native", "--all-platforms", archive)
}

// writeOCIArchive writes an OCI image layout tarball: one layer, the
// tree under root, and per name an image config (entrypoint) and
// manifest, named in index.json as containerd's import reads names.
func writeOCIArchive(path, root string, images map[string][]string) error {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link, _ := os.Readlink(p) // symlinks: busybox's applets
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name, _ = filepath.Rel(root, p)
		if err := tw.WriteHeader(h); err != nil || !fi.Mode().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil {
			_, err = tw.Write(b)
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}

	blobs := map[string][]byte{}
	type desc struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int               `json:"size"`
		Annotations map[string]string `json:"annotations,omitempty"`
		Platform    map[string]string `json:"platform,omitempty"`
	}
	add := func(mt string, b []byte) desc {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = b
		return desc{MediaType: mt, Digest: d, Size: len(b)}
	}
	layerDesc := add("application/vnd.oci.image.layer.v1.tar", layer.Bytes())
	var manifests []desc
	for name, entry := range images {
		cfg, _ := json.Marshal(map[string]any{
			"architecture": runtime.GOARCH, "os": "linux",
			"config": map[string]any{"Entrypoint": entry, "Env": []string{"PATH=/bin"}},
			"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDesc.Digest}},
		})
		cfgDesc := add("application/vnd.oci.image.config.v1+json", cfg)
		man, _ := json.Marshal(map[string]any{
			"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
			"config": cfgDesc, "layers": []desc{layerDesc},
		})
		md := add("application/vnd.oci.image.manifest.v1+json", man)
		md.Platform = map[string]string{"architecture": runtime.GOARCH, "os": "linux"}
		md.Annotations = map[string]string{"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name[strings.LastIndex(name, ":")+1:]}
		manifests = append(manifests, md)
	}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests})

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	aw := tar.NewWriter(f)
	put := func(name string, b []byte) error {
		if err := aw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := aw.Write(b)
		return err
	}
	if err := put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := put("index.json", index); err != nil {
		return err
	}
	for d, b := range blobs {
		if err := put("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), b); err != nil {
			return err
		}
	}
	return aw.Close()
}

// leaseOf returns the IP host-local leased to container ID id on n (a
// lease file holds the ID on its first line).
func leaseOf(t *testing.T, n *cniNet, id string) string {
	t.Helper()
	for _, ip := range n.leases(t) {
		b, _ := os.ReadFile(filepath.Join(n.DataDir, n.Name, ip))
		if owner, _, _ := strings.Cut(string(b), "\n"); strings.TrimSpace(owner) == id {
			return ip
		}
	}
	t.Fatalf("no lease for %s in %s", id, filepath.Join(n.DataDir, n.Name))
	return ""
}

// TCPSockets returns the lines of `ss -tanoe` (all TCP sockets of the
// host netns, timers and owners) that mention one of ports.
func TCPSockets(t *testing.T, ports ...int) []string {
	t.Helper()
	out, err := exec.Command("ss", "-Htanoep").CombinedOutput()
	if err != nil {
		t.Fatalf("ss -Htanoep: %v\n%s", err, out)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		for _, p := range ports {
			if strings.Contains(l, ":"+strconv.Itoa(p)+" ") {
				lines = append(lines, strings.Join(strings.Fields(l), " "))
				break
			}
		}
	}
	return lines
}

// removeEmptyDirs removes dir and the directories below it, deepest first,
// as long as they hold nothing else.
func removeEmptyDirs(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() {
			removeEmptyDirs(filepath.Join(dir, e.Name()))
		}
	}
	os.Remove(dir) // fails, as it should, where something is left
}
