// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package install

import (
	_ "embed"
	"fmt"
	"regexp"
	"strings"
	"text/template"

	"github.com/socksplice/socksplice/conf"
)

//go:embed manifests/daemonset.yaml
var daemonSetYAML string

var daemonSet = template.Must(template.New("daemonset.yaml").Parse(daemonSetYAML))

// ManifestOptions fill the manifest's blanks.
type ManifestOptions struct {
	Image           string // the image with the binary, make, gcc and the module source
	Namespace       string
	Mode            string // the plugin's mode on every node
	PinDir          string
	Port            int  // the agent's /metrics and /readyz port
	UninstallOnExit bool // agents remove their conflist when stopped
}

// DefaultPort is the agent's HTTP port.
const DefaultPort = 9965

// ManifestDefaults returns the defaults for an image.
func ManifestDefaults(image string) ManifestOptions {
	return ManifestOptions{Image: image, Namespace: "kube-system", Mode: string(conf.ModeAuto), PinDir: conf.DefaultPinDir, Port: DefaultPort}
}

// A DNS-1123 label, as Kubernetes wants a namespace name.
var label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// Manifest renders the Kubernetes objects that run socksplice on every
// node (a Namespace unless it is kube-system, and the DaemonSet), as
// multi-document YAML for kubectl apply -f.
func Manifest(o ManifestOptions) (string, error) {
	switch {
	case !label.MatchString(o.Namespace):
		return "", fmt.Errorf("--namespace %q: must be a DNS-1123 label (lower case letters, digits and '-', at most 63)", o.Namespace)
	case o.Image == "" || strings.ContainsAny(o.Image, " \t\n\"'{}"):
		return "", fmt.Errorf("--image %q: must be an image reference", o.Image)
	case o.Port < 1 || o.Port > 65535:
		return "", fmt.Errorf("--port %d: must be 1..65535", o.Port)
	case !validMode(o.Mode):
		return "", fmt.Errorf("--mode %q: must be auto, sockmap, splice or off", o.Mode)
	case !strings.HasPrefix(o.PinDir, "/sys/fs/bpf/"):
		return "", fmt.Errorf("--pin-dir %q: must be under /sys/fs/bpf/ (the DaemonSet mounts that)", o.PinDir)
	}
	var b strings.Builder
	if err := daemonSet.Execute(&b, o); err != nil {
		return "", err
	}
	return b.String(), nil
}

func validMode(m string) bool {
	switch conf.Mode(m) {
	case conf.ModeAuto, conf.ModeSockmap, conf.ModeSplice, conf.ModeOff:
		return true
	}
	return false
}
