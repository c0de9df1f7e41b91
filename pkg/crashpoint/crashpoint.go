// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

// Package crashpoint names the steps after which a plugin command has
// changed the node (a pin, a map entry, an attachment, a cgroup), so that
// a test can kill the plugin with SIGKILL right after any one of them, as
// a runtime's timeout or the OOM killer would, and check that the next
// command recovers (test/e2e, TestFault*). Outside such a test it costs
// one environment lookup per process.
package crashpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The test's controls, read from the plugin's environment once.
const (
	// EnvKillAt is "STEP" or "STEP#N": the process kills itself with
	// SIGKILL right after the Nth time (default 1) it completes STEP.
	EnvKillAt = "SOCKSPLICE_TEST_KILL_AT"
	// EnvTrace names a file to which each completed step is appended as
	// a line "STEP#N", before any kill.
	EnvTrace = "SOCKSPLICE_TEST_STEPS"
)

// Step names one side effect.
type Step string

// The steps, by the package that takes them. TestFaultKilledPlugin's
// clean runs log the order in which ADD and DEL reach them.
const (
	PinDirCreate Step = "pindir.create" // bpffs: the pin directory made

	NodeDirs        Step = "node.dirs" // node: maps/, progs/, links/, containers/ made
	NodeMaps        Step = "node.maps" // node: the BPF objects' maps created and pinned
	NodeMapAttach   Step = "node.map.attachments"
	NodeMapMeta     Step = "node.map.meta"
	NodeMapRetired  Step = "node.map.retired"
	NodeMapRetiring Step = "node.map.retiring"
	NodeProgPin     Step = "node.prog.pin" // node: one program pinned (sockops, msg)
	NodeSkMsg       Step = "node.skmsg"    // node: sk_msg attached to the pair map
	NodeStamp       Step = "node.stamp"    // node: the stamp written (install complete)

	SelfTestCgroup   Step = "selftest.cgroup"   // its cgroup made
	SelfTestAttach   Step = "selftest.attach"   // sock_ops attached to it (an fd link)
	SelfTestChild    Step = "selftest.child"    // the child started in its own netns
	SelfTestMark     Step = "selftest.mark"     // the marker names the child's netns
	SelfTestEnroll   Step = "selftest.enroll"   // the child's netns enrolled
	SelfTestUnenroll Step = "selftest.unenroll" // ... and no longer
	SelfTestUnmark   Step = "selftest.unmark"   // the marker cleared
	SelfTestRmCgroup Step = "selftest.rmcgroup" // its cgroup removed

	EngineVerdict Step = "engine.verdict" // a self-test verdict cached in meta
	EngineNotice  Step = "engine.notice"  // a decision remembered as told

	CountersStart     Step = "counters.start"     // a netns got its counters entry
	CountersJournal   Step = "counters.journal"   // its network's new retired sum journaled
	CountersRetire    Step = "counters.retire"    // ... and written
	CountersDrop      Step = "counters.drop"      // its entry deleted
	CountersUnjournal Step = "counters.unjournal" // the journal's entry deleted

	EnrollRecord     Step = "enroll.record"     // the attachment record stored
	EnrollPolicy     Step = "enroll.policy"     // the netns enrolled with its policy
	EnrollLocalAddr  Step = "enroll.localaddr"  // one address registered to the netns
	EnrollDomainAddr Step = "enroll.domainaddr" // one address registered in the domain
	CgroupAttach     Step = "cgroup.attach"     // sock_ops attached (link not pinned yet)
	CgroupPin        Step = "cgroup.pin"        // the link pinned
	EnrollFlags      Step = "enroll.flags"      // the record updated with its link

	CgroupDetach   Step = "cgroup.detach"   // a link's pin removed
	EnrollUnlocal  Step = "enroll.unlocal"  // one address unregistered from the netns
	EnrollUndomain Step = "enroll.undomain" // ... and from the domain
	EnrollUnpolicy Step = "enroll.unpolicy" // the netns unenrolled
	EnrollUnrecord Step = "enroll.unrecord" // the attachment record deleted
)

// Steps lists every step, for tests that check each was reached.
var Steps = []Step{
	PinDirCreate,
	NodeDirs, NodeMaps, NodeMapAttach, NodeMapMeta, NodeMapRetired, NodeMapRetiring, NodeProgPin, NodeSkMsg, NodeStamp,
	SelfTestCgroup, SelfTestAttach, SelfTestChild, SelfTestMark, SelfTestEnroll, SelfTestUnenroll, SelfTestUnmark, SelfTestRmCgroup,
	EngineVerdict, EngineNotice,
	CountersStart, CountersJournal, CountersRetire, CountersDrop, CountersUnjournal,
	EnrollRecord, EnrollPolicy, EnrollLocalAddr, EnrollDomainAddr, CgroupAttach, CgroupPin, EnrollFlags,
	CgroupDetach, EnrollUnlocal, EnrollUndomain, EnrollUnpolicy, EnrollUnrecord,
}

var (
	once     sync.Once
	mu       sync.Mutex
	killStep Step
	killN    = 1
	trace    string
	seen     = map[Step]int{}
)

func setup() {
	trace = os.Getenv(EnvTrace)
	at := os.Getenv(EnvKillAt)
	if at == "" {
		return
	}
	s, n, ok := strings.Cut(at, "#")
	killStep = Step(s)
	if ok {
		if v, err := strconv.Atoi(n); err == nil && v > 0 {
			killN = v
		}
	}
}

// Done says step s was completed. Under a test's EnvTrace it is logged;
// at the test's EnvKillAt the process dies there, with no deferred
// function or cleanup of its own running.
func Done(s Step) {
	once.Do(setup)
	if trace == "" && killStep == "" {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	seen[s]++
	n := seen[s]
	if trace != "" {
		if f, err := os.OpenFile(trace, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			fmt.Fprintf(f, "%s#%d\n", s, n)
			f.Close()
		}
	}
	if s == killStep && n == killN {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		for { // SIGKILL is on its way; nothing else may run
			time.Sleep(time.Hour)
		}
	}
}
