// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package install

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// decode splits the manifest into its documents and decodes each
// strictly (an unknown or misspelt field fails) into its API type.
func decode(t *testing.T, m string) (*corev1.Namespace, *appsv1.DaemonSet) {
	t.Helper()
	var ns *corev1.Namespace
	var ds *appsv1.DaemonSet
	for _, doc := range strings.Split(m, "\n---\n") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		var obj any
		switch meta.Kind {
		case "Namespace":
			ns = &corev1.Namespace{}
			obj = ns
		case "DaemonSet":
			ds = &appsv1.DaemonSet{}
			obj = ds
		default:
			t.Fatalf("unexpected kind %q in:\n%s", meta.Kind, doc)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("strict decode of %s: %v", meta.Kind, err)
		}
	}
	if ds == nil {
		t.Fatal("no DaemonSet")
	}
	return ns, ds
}

func TestManifest(t *testing.T) {
	o := ManifestDefaults("registry.example/socksplice:v1.2.3")
	o.Namespace, o.Mode, o.UninstallOnExit = "net-accel", "sockmap", true
	m, err := Manifest(o)
	if err != nil {
		t.Fatal(err)
	}
	ns, ds := decode(t, m)
	if ns == nil || ns.Name != "net-accel" || ds.Namespace != "net-accel" {
		t.Errorf("namespace: %v, DaemonSet in %q; want both net-accel", ns, ds.Namespace)
	}
	if ds.APIVersion != "apps/v1" || ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType ||
		ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable.IntValue() != 1 {
		t.Errorf("update strategy %+v, want a rolling update, 1 node at a time", ds.Spec.UpdateStrategy)
	}
	sel, labels := ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("selector %v does not match the pod labels %v", sel, labels)
		}
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork || pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("hostNetwork %v, automountServiceAccountToken %v: want host network and no API token", pod.HostNetwork, pod.AutomountServiceAccountToken)
	}
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	type mount struct {
		path string
		ro   bool
	}
	mounts := func(c corev1.Container) map[string]mount {
		out := map[string]mount{}
		for _, m := range c.VolumeMounts {
			if hp, ok := hostPaths[m.Name]; ok {
				out[hp] = mount{m.MountPath, m.ReadOnly}
			} else if !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name }) {
				t.Errorf("container %s mounts undeclared volume %s", c.Name, m.Name)
			}
		}
		return out
	}
	if len(pod.InitContainers) != 1 || len(pod.Containers) != 1 {
		t.Fatalf("%d init containers, %d containers; want 1 and 1", len(pod.InitContainers), len(pod.Containers))
	}
	initC, agent := pod.InitContainers[0], pod.Containers[0]
	// The module loader reads the node's headers, read-only.
	im := mounts(initC)
	for _, p := range []string{"/lib/modules", "/usr/src"} {
		if im[p] != (mount{p, true}) {
			t.Errorf("init container: host %s mounted as %+v, want at the same path, read-only", p, im[p])
		}
	}
	// The agent writes the CNI dirs and reads the pins where the plugin
	// (on the host) puts them.
	am := mounts(agent)
	for host, want := range map[string]mount{
		"/opt/cni/bin": {"/host/opt/cni/bin", false}, "/etc/cni/net.d": {"/host/etc/cni/net.d", false}, "/sys/fs/bpf": {"/sys/fs/bpf", false},
	} {
		if am[host] != want {
			t.Errorf("agent: host %s mounted as %+v, want %+v", host, am[host], want)
		}
	}
	for _, c := range []corev1.Container{initC, agent} {
		if c.Image != o.Image {
			t.Errorf("container %s image %q, want %q", c.Name, c.Image, o.Image)
		}
		if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
			t.Errorf("container %s is not privileged (module load, bpf)", c.Name)
		}
	}
	args := strings.Join(append(agent.Command, agent.Args...), " ")
	for _, want := range []string{"socksplice agent", "--listen=:9965", "--cni-bin-dir=/host/opt/cni/bin", "--cni-conf-dir=/host/etc/cni/net.d",
		"--mode=sockmap", "--pin-dir=/sys/fs/bpf/socksplice", "--uninstall-on-exit"} {
		if !strings.Contains(args, want) {
			t.Errorf("agent command %q lacks %q", args, want)
		}
	}
	rp := agent.ReadinessProbe
	if rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/readyz" || rp.HTTPGet.Port.IntValue() != 9965 {
		t.Errorf("readiness probe %+v, want GET /readyz on 9965", rp)
	}
	if len(agent.Ports) != 1 || agent.Ports[0].ContainerPort != 9965 {
		t.Errorf("ports %+v, want 9965", agent.Ports)
	}

	// In kube-system: no Namespace object; without the flag, no uninstall.
	m, err = Manifest(ManifestDefaults("socksplice:dev"))
	if err != nil {
		t.Fatal(err)
	}
	ns, ds = decode(t, m)
	if ns != nil || ds.Namespace != "kube-system" || strings.Contains(m, "--uninstall-on-exit") {
		t.Errorf("default manifest: namespace object %v, DaemonSet in %q, uninstall flag %v", ns, ds.Namespace, strings.Contains(m, "--uninstall-on-exit"))
	}
}

func TestManifestRejects(t *testing.T) {
	for _, c := range []struct {
		set  func(*ManifestOptions)
		want string
	}{
		{func(o *ManifestOptions) { o.Namespace = "Kube_System" }, "--namespace"},
		{func(o *ManifestOptions) { o.Image = "" }, "--image"},
		{func(o *ManifestOptions) { o.Image = "x\n  hostPID: true" }, "--image"},
		{func(o *ManifestOptions) { o.Mode = "fast" }, "--mode"},
		{func(o *ManifestOptions) { o.Port = 0 }, "--port"},
		{func(o *ManifestOptions) { o.PinDir = "/tmp/pins" }, "--pin-dir"},
	} {
		o := ManifestDefaults("socksplice:dev")
		c.set(&o)
		if _, err := Manifest(o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want one naming %s", err, c.want)
		}
	}
}
