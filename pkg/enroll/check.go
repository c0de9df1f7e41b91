// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package enroll

import (
	"fmt"
	"os"

	sbpf "github.com/socksplice/socksplice/bpf"
	"github.com/socksplice/socksplice/pkg/cgroup"
	"github.com/socksplice/socksplice/pkg/engine"
	"github.com/socksplice/socksplice/pkg/node"
)

// Check verifies the attachment against what ADD recorded: the record, the
// netns, the enrollment and policy, the addresses and the link, which must
// run the recorded engine's program. The engine is the recorded one, never
// decided again: auto may pick another one by now (the splice module was
// loaded since), and the container keeps its engine until it is added
// again. A record of engine off only needs its netns unchanged.
func Check(o *node.Objects, a Attachment) error {
	key := RecordKey(a.Network, a.ContainerID, a.IfName)
	rec, ok, err := getRecord(o, key)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("container %s (%s) is not enrolled", a.ContainerID, a.IfName)
	}
	cookie, err := NetnsCookie(a.Netns)
	if err != nil {
		return err
	}
	if cookie != rec.Netns {
		return fmt.Errorf("container %s: netns changed since ADD (cookie %d, recorded %d)", a.ContainerID, cookie, rec.Netns)
	}
	eng := rec.Engine()
	if eng == engine.Off {
		return nil
	}
	var pol sbpf.AbiSsPolicy
	if err := o.Enroll.Lookup(cookie, &pol); err != nil {
		return fmt.Errorf("container %s: netns not in the enrollment map: %w", a.ContainerID, err)
	}
	splice := eng == engine.Splice
	if want := policyValue(a.Policy, splice); pol != want {
		return fmt.Errorf("container %s: enrolled policy differs from the config", a.ContainerID)
	}
	for _, ad := range a.Addrs {
		var owner uint64
		dk := sbpf.AbiSsDomainKey{Domain: a.Domain, Addr: addrWords(ad)}
		if err := o.DomainAddrs.Lookup(&dk, &owner); err != nil || owner != cookie {
			return fmt.Errorf("container %s: address %s is not registered to it", a.ContainerID, ad)
		}
	}
	pin := linkPin(o, a.Network, a.ContainerID, a.IfName)
	switch legacy := legacyLinkPin(o, a.Network, a.ContainerID, a.IfName); {
	case rec.Flags&RecordNodeLink != 0:
		pin = nodeLinkPin(o, splice)
	case !exists(pin) && exists(legacy):
		pin = legacy
	}
	if !exists(pin) {
		return fmt.Errorf("container %s: sock_ops link %s is missing", a.ContainerID, pin)
	}
	if at, err := cgroup.LinkCgroup(pin); err != nil {
		return fmt.Errorf("container %s: sock_ops link %s: %w", a.ContainerID, pin, err)
	} else if at == 0 {
		return fmt.Errorf("container %s: sock_ops link %s is detached (by hand, or its cgroup was removed): ADD again attaches it", a.ContainerID, pin)
	}
	runs, err := node.LinkRunsSplice(pin)
	if err != nil {
		return fmt.Errorf("container %s: sock_ops link %s: %w", a.ContainerID, pin, err)
	}
	if runs != splice {
		return fmt.Errorf("container %s: sock_ops link %s runs the other engine's program", a.ContainerID, pin)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
