// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

// Fuzz targets for what the runtime hands the plugin besides the config
// (conf has those): prevResult and the CNI_* environment, through the
// CNI skeleton the plugin runs under, up to the attachment ADD would
// record. Run by make fuzz; plain go test runs their corpora.

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/socksplice/socksplice/conf"
	"github.com/socksplice/socksplice/pkg/enroll"
)

// addArgs is what a runtime passes to ADD besides stdin.
func addArgs(stdin []byte) *skel.CmdArgs {
	return &skel.CmdArgs{ContainerID: "c1", Netns: "/var/run/netns/c1", IfName: "eth0", StdinData: stdin}
}

// FuzzPrevResult feeds the plugin's ADD parsing an arbitrary prevResult
// under each supported cniVersion (v picks it).
func FuzzPrevResult(f *testing.F) {
	f.Fuzz(func(t *testing.T, v byte, prevJSON []byte) {
		if !json.Valid(prevJSON) {
			return // the config would be invalid JSON: conf's FuzzParse
		}
		ver := conf.SupportedVersions[int(v)%len(conf.SupportedVersions)]
		stdin := []byte(`{"cniVersion":"` + ver + `","name":"podnet","type":"socksplice","prevResult":` + string(prevJSON) + `}`)
		c, prev, err := parse(addArgs(stdin), true)
		if err != nil {
			var e *types.Error
			if !errors.As(err, &e) || !strings.HasPrefix(e.Msg, "prevResult") {
				t.Fatalf("a bad prevResult gave %T %v: want a CNI error naming prevResult", err, err)
			}
			return
		}
		// What ADD enrolls: the container's addresses, as many as a
		// record holds (more must fail here, before anything is made).
		addrs := containerAddrs(prev)
		if len(addrs) > enroll.MaxAddrs {
			t.Errorf("ADD accepted %d container addresses; a record holds %d", len(addrs), enroll.MaxAddrs)
		}
		for _, a := range addrs {
			if !a.IsValid() || a != a.Unmap() {
				t.Errorf("container address %v is invalid or v4-mapped", a)
			}
		}
		// What ADD prints is prevResult unchanged: the next plugin in
		// the chain parses it, as the same result.
		out, err := c.PrevResult.GetAsVersion(c.CNIVersion)
		if err != nil {
			t.Fatalf("ADD cannot print the prevResult it accepted as %s: %v", c.CNIVersion, err)
		}
		printed, err := json.Marshal(out)
		if err != nil {
			t.Fatalf("ADD cannot print the prevResult it accepted: %v", err)
		}
		c2, prev2, err := parse(addArgs([]byte(`{"cniVersion":"`+ver+`","name":"podnet","type":"socksplice","prevResult":`+string(printed)+`}`)), true)
		if err != nil {
			t.Fatalf("the prevResult ADD prints does not parse again: %v\n%s", err, printed)
		}
		if again, _ := json.Marshal(c2.PrevResult); string(again) != string(printed) {
			t.Errorf("the printed prevResult changed when parsed again:\n%s\n%s", printed, again)
		}
		if a2 := containerAddrs(prev2); !reflect.DeepEqual(a2, addrs) {
			t.Errorf("container addresses %v, after a round trip %v", addrs, a2)
		}
	})
}

// FuzzCNIArgs runs the CNI skeleton as the plugin does, with arbitrary
// CNI_CONTAINERID, CNI_IFNAME, CNI_ARGS and network name, up to the
// attachment ADD would record. Either the invocation fails with a CNI
// error, or the attachment names the container and interface as given,
// its identity survives the record (DEL and GC find it by it), and
// CNI_ARGS, which socksplice does not read, changes nothing.
func FuzzCNIArgs(f *testing.F) {
	f.Fuzz(func(t *testing.T, containerID, ifName, cniArgs, network string) {
		for _, s := range []string{containerID, ifName, cniArgs, network} {
			if strings.ContainsRune(s, 0) {
				return // no environment can carry a NUL
			}
		}
		nameJSON, _ := json.Marshal(network)
		stdin := []byte(`{"cniVersion":"1.1.0","name":` + string(nameJSON) + `,"type":"socksplice",` +
			`"prevResult":{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/var/run/netns/c1"}],"ips":[{"interface":0,"address":"10.1.0.2/24"}]}}`)
		var got *enroll.Attachment
		add := func(args *skel.CmdArgs) error {
			c, prev, err := parse(args, true)
			if err != nil {
				return err
			}
			a := attachment(c, args, prev)
			got = &a
			// The same invocation without CNI_ARGS.
			noArgs := *args
			noArgs.Args = ""
			c2, prev2, err := parse(&noArgs, true)
			if err != nil {
				t.Errorf("ADD fails without CNI_ARGS %q but not with it: %v", args.Args, err)
			} else if a2 := attachment(c2, &noArgs, prev2); !reflect.DeepEqual(a, a2) {
				t.Errorf("CNI_ARGS %q changed the attachment:\n%+v\n%+v", args.Args, a, a2)
			}
			return nil
		}
		err := runSkel(t, map[string]string{
			"CNI_COMMAND": "ADD", "CNI_CONTAINERID": containerID, "CNI_NETNS": "/var/run/netns/c1",
			"CNI_IFNAME": ifName, "CNI_ARGS": cniArgs, "CNI_PATH": "/opt/cni/bin",
		}, stdin, add)
		if err != nil {
			if err.Code == 0 || err.Msg == "" {
				t.Errorf("failed with an empty CNI error: %+v", err)
			}
			if got != nil {
				t.Errorf("ADD failed (%v) after the attachment was made", err)
			}
			return
		}
		if got == nil {
			t.Fatal("ADD succeeded without reaching the plugin")
		}
		if got.ContainerID != containerID || got.IfName != ifName || got.Network != network {
			t.Errorf("attachment %q/%q/%q, the runtime passed %q/%q/%q",
				got.Network, got.ContainerID, got.IfName, network, containerID, ifName)
		}
		if want := []netip.Addr{netip.MustParseAddr("10.1.0.2")}; !reflect.DeepEqual(got.Addrs, want) {
			t.Errorf("attachment addresses %v, want %v", got.Addrs, want)
		}
		var r enroll.Record
		r.SetIdent(got.Network, got.ContainerID, got.IfName)
		n, cid, ifn, ok := r.Identity(enroll.RecordKey(got.Network, got.ContainerID, got.IfName))
		if !ok || n != network || cid != containerID || ifn != ifName {
			t.Errorf("the record gives back %q/%q/%q (ok %v): GC and DEL could not find the attachment by its identity",
				n, cid, ifn, ok)
		}
	})
}

// runSkel runs the CNI skeleton in this process, as main does, with env
// as the environment and stdin as the config; funcs gets the ADD.
func runSkel(t *testing.T, env map[string]string, stdin []byte, add func(*skel.CmdArgs) error) *types.Error {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		w.Write(stdin)
		w.Close()
	}()
	defer r.Close()
	old := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = old }()
	return skel.PluginMainFuncsWithError(skel.CNIFuncs{Add: add}, version.PluginSupports(conf.SupportedVersions...), "")
}
