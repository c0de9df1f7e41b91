# socksplice: CNI chained plugin for same-host TCP acceleration.
#
#   make            build bin/socksplice (pure Go, no clang needed)
#   make generate   regenerate every generated file (BPF objects, Go from
#                   the ABI header; needs clang)
#   make demo       run the example conflist end to end (root)
#   make test       unit, integration and semantics tests (root; they create
#                   netns, bridges, cgroups and load BPF)
#   make semantics  print the socket-semantics matrix
#   make fuzz       every fuzz target for FUZZTIME each (default 20s; CI
#                   runs it): config, prevResult, CNI_ARGS, runtimeConfig,
#                   cgroup paths
#   make soak       the long tests at full length (root; the host's part
#                   takes about 20 min, the test-kernel guest's, for the
#                   splice engine, may take up to 2 hours under
#                   emulation): streams past 4 GiB, 10 000 short
#                   connections, the tenants' minute of churn, 10 min of
#                   storm rounds, the splice soak
#   make vm-test    the suites inside a QEMU guest: KERNEL=test (default,
#                   the patched test kernel; DEBUG=1: lockdep/KASAN),
#                   KERNEL=debian-new (Debian's newest stock kernel, module
#                   by DKMS), debian-6.12 / debian-6.1 (fallback smoke);
#                   PKGS="test/e2e" for a subset; SOAK=1 for the full
#                   lengths of the long tests, SOAK=10m also sets the
#                   splice soak's length, default 2m)
#   make bench      every path side by side: results/bench/bench.{json,md}
#                   and PNG charts, and the cost to flows it does not pair
#                   (root; about 11 min; BENCH_ARGS=-overhead: that alone)
#   make bench-quick  a short subset (CI smoke: fails only if a path
#                   cannot run at all)
#   make vm-bench   the benchmark inside the test kernel under QEMU
#   make vm-bench-sockperf  its sockperf mode in the guest: ping-pong and
#                   throughput on plain TCP, sockmap, splice (busy-poll 0,
#                   10, 50 us) and AF_UNIX, loopback, veth+bridge and
#                   netkit, CPU per request: results/bench-vm/sockperf.*
#                   (about an hour; BENCH_ARGS="-duration 1s" and the
#                   -sockperf-* flags shorten it)
#   make vm-bench-profile  the sockperf mode (BENCH_ARGS: its -sockperf-*
#                   flags) under perf record in the guest: a flat profile
#                   per path, workload and end: results/bench-vm/profile/
#   make vm-bench-compare  the splice module of the working tree against
#                   the one at BASE (default 6962f62, before issue 14's
#                   hardening), alternated in one test-kernel guest:
#                   sockperf ping-pong 1 KiB and 64 B with busy-poll 0
#                   and 50 us, and a 64 KiB-write stream; per workload
#                   each module's median and the ratio new/old, unload
#                   waits: results/bench-compare/compare.{json,md}
#                   (BENCH_ARGS: -rounds, -workloads, -duration, ...)
#   make install  bin/socksplice into $(DESTDIR)$(CNI_BIN_DIR) (default
#                   /opt/cni/bin); INSTALL_CONFLIST=1 also installs the
#                   example conflist (make install-conflist: into
#                   $(CNI_CONF_DIR), default /etc/cni/net.d)
#   make uninstall  removes the conflists first, then the binary
#   make dkms-deb   the socksplice-dkms package for nodes: bin/dkms/
#                   (built in a debootstrapped trixie root; root)

GO      ?= go
BIN     := bin
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.buildVersion=$(VERSION)

.PHONY: install install-conflist uninstall all build generate plugins demo test semantics fuzz soak vet kernel vm-test bench bench-quick vm-bench vm-bench-sockperf vm-bench-profile vm-bench-compare dkms-deb clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/socksplice ./plugin

# The reference plugins, for running a conflist by hand (CNI_PATH=bin/cni).
plugins: build
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/cni/ \
		github.com/containernetworking/plugins/plugins/main/bridge \
		github.com/containernetworking/plugins/plugins/ipam/host-local \
		github.com/containernetworking/plugins/plugins/main/loopback
	cp $(BIN)/socksplice $(BIN)/cni/socksplice

# Every generated file: the BPF objects and their Go (bpf/, kernel/testmod/,
# test/hardening/),
# and the Go constants taken from the ABI header (bpf/, conf/). In order:
# conf reads bpf's ABI object.
generate:
	$(GO) generate ./bpf/
	$(GO) generate ./conf/
	$(GO) generate ./kernel/testmod/
	$(GO) generate ./test/hardening/

demo: build
	$(GO) build -o $(BIN)/socksplice-demo ./test/demo
	$(BIN)/socksplice-demo

vet:
	$(GO) vet ./...

# Packages run one at a time: the integration and semantics suites measure
# timing-sensitive socket behaviour on a 2-core machine.
# The runtime tests (test/runtime) run last and verbose, into
# results/runtime.log, so that what each proved (its summary line: bytes,
# counters, leftovers) shows in the output.
test: vet
	$(GO) test -count=1 -p 1 -timeout 30m $$($(GO) list ./... | grep -v '/test/runtime$$')
	@mkdir -p results
	@$(GO) test -count=1 -v -timeout 15m ./test/runtime/ > results/runtime.log 2>&1; \
		status=$$?; \
		grep -E 'summary:|^(--- |ok|FAIL|panic)' results/runtime.log; exit $$status

# The socket-semantics matrix (plain TCP vs each engine, two topologies),
# written to results/semantics.{md,json}.
semantics:
	@mkdir -p results
	@$(GO) test -count=1 -v -timeout 20m -run TestSemantics ./test/semantics/ > results/semantics.log 2>&1; \
		status=$$?; \
		grep -E 'NEW GAP|STALE GAP|fails on plain TCP|auto on this node' results/semantics.log; \
		cat results/semantics.md; tail -1 results/semantics.log; exit $$status

# The fuzz targets, PACKAGE:NAME, each run for FUZZTIME (go test fuzzes one
# target at a time). A failure leaves its input in the package's
# testdata/fuzz/NAME/: fix the bug and commit the input with the fix.
# Minimizing a new input is bounded to 5 s (go's default, a minute, would
# spend a short run shrinking one input FuzzCNIArgs found interesting).
# Fuzzing runs on FUZZ_TOOLCHAIN, which the go command takes from the module
# proxy: go 1.26's fuzz coordinator can fail a run whose time is up with a
# bare "context deadline exceeded" and no input when its workers are slow
# to stop (go.dev/issue/75804, fixed in 1.27; it failed CI once, on a
# loaded machine). The code under test is the same; only the tool changes.
FUZZ_TOOLCHAIN ?= go1.27.3
FUZZ_TARGETS := conf:FuzzParse conf:FuzzRuntimeConfig plugin:FuzzPrevResult plugin:FuzzCNIArgs \
	pkg/cgroup:FuzzResolve pkg/cgroup:FuzzCommonAncestor pkg/cgroup:FuzzMountinfo
FUZZTIME ?= 20s
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz: $${t#*:} (./$${t%%:*}) for $(FUZZTIME)"; \
		out=$$(GOTOOLCHAIN=$(FUZZ_TOOLCHAIN) $(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./$${t%%:*}/ 2>&1); \
		status=$$?; \
		printf '%s\n' "$$out" | awk '/^fuzz: elapsed/ { last = $$0; next } { print } END { print last }'; \
		[ $$status -eq 0 ] || exit 1; \
	done

# The long tests at their full lengths (SOCKSPLICE_SOAK=1; CI runs short
# versions): on the host the sockmap engine's (SOAK_TESTS), in a guest
# running KERNEL the splice engine's (SOAK_VM_TESTS, with the splice soak
# at 10 min unless SOAK says otherwise). Each test prints a summary line.
SOAK_TESTS    ?= TestLongStream|TestShortConns|TestTenantChurn|TestStorm
SOAK_VM_TESTS ?= TestLongStream|TestShortConns|TestTenantChurn|TestSpliceSoak
soak:
	@mkdir -p results
	@SOCKSPLICE_SOAK=1 $(GO) test -count=1 -p 1 -v -timeout 60m -run '$(SOAK_TESTS)' ./test/e2e/ > results/soak.log 2>&1; \
		status=$$?; \
		grep -E 'summary:|^(--- |ok|FAIL|panic)' results/soak.log; exit $$status
	VM_TIMEOUT=7200 SOCKSPLICE_TEST_TIMEOUT=110m \
		$(MAKE) --no-print-directory vm-test PKGS=test/e2e RUN='$(SOAK_VM_TESTS)' SOAK=$(or $(SOAK),1)

# The test kernel (Debian linux-source-6.12 + kernel/patches), cached by
# hash under ~/.cache/socksplice; DEBUG=1 adds lockdep, KASAN, DEBUG_NET.
kernel:
	DEBUG=$(DEBUG) kernel/build.sh

# The suites inside a QEMU (TCG) guest running KERNEL (kernel/vm/prepare.sh).
# PKGS picks packages, RUN a -test.run pattern, SOAK=1 the long tests' full
# lengths (a duration: also the splice soak's).
KERNEL ?= test
vm-test:
	KERNEL=$(KERNEL) DEBUG=$(DEBUG) SOCKSPLICE_SOAK=$(SOAK) SOCKSPLICE_TEST_RUN='$(RUN)' kernel/vm/test.sh $(PKGS)

# The benchmark (test/bench): BENCH_ARGS passes flags, e.g. "-runs 9".
bench: build
	$(GO) build -o $(BIN)/socksplice-bench ./test/bench
	$(BIN)/socksplice-bench $(BENCH_ARGS)

bench-quick: build
	$(GO) build -o $(BIN)/socksplice-bench ./test/bench
	$(BIN)/socksplice-bench -quick $(BENCH_ARGS)

vm-bench:
	KERNEL=$(KERNEL) kernel/vm/bench.sh $(BENCH_ARGS)

# The sockperf mode (test/bench/sockperf.go) in the same guest; the same
# as make vm-bench BENCH_ARGS="-sockperf ...", with a longer time limit.
vm-bench-sockperf:
	KERNEL=$(KERNEL) VM_TIMEOUT=$${VM_TIMEOUT:-10800} kernel/vm/bench.sh -sockperf $(BENCH_ARGS)

# The sockperf mode under perf record in the guest, a flat profile per
# path, topology, workload and end: results/bench-vm/profile/ (the host
# needs perf: apt-get install linux-perf).
vm-bench-profile:
	KERNEL=$(KERNEL) VM_PROFILE=1 VM_TIMEOUT=$${VM_TIMEOUT:-10800} kernel/vm/bench.sh $(BENCH_ARGS)

# The module side by side with the one at BASE, in one guest
# (kernel/vm/bench-compare.sh; test/bench/compare.go).
BASE ?= 6962f62
vm-bench-compare:
	KERNEL=$(KERNEL) BASE=$(BASE) kernel/vm/bench-compare.sh $(BENCH_ARGS)

# The module's DKMS package, versioned from git (kernel/dkms/build-deb.sh).
dkms-deb:
	kernel/dkms/build-deb.sh $(BIN)/dkms

# Node install by hand (a DaemonSet does this on Kubernetes: socksplice
# manifest). Each file is written beside its destination and renamed over
# it, so a runtime running ADD meanwhile never executes or reads half a
# file.
DESTDIR      ?=
CNI_BIN_DIR  ?= /opt/cni/bin
CNI_CONF_DIR ?= /etc/cni/net.d
EXAMPLE_CONFLIST := 50-socksplice.conflist

install: build
	install -d $(DESTDIR)$(CNI_BIN_DIR)
	install -m 0755 $(BIN)/socksplice $(DESTDIR)$(CNI_BIN_DIR)/.socksplice.new
	mv -f $(DESTDIR)$(CNI_BIN_DIR)/.socksplice.new $(DESTDIR)$(CNI_BIN_DIR)/socksplice
ifeq ($(INSTALL_CONFLIST),1)
	$(MAKE) --no-print-directory install-conflist
endif

install-conflist:
	install -d $(DESTDIR)$(CNI_CONF_DIR)
	install -m 0644 conf/example.conflist $(DESTDIR)$(CNI_CONF_DIR)/.$(EXAMPLE_CONFLIST).new
	mv -f $(DESTDIR)$(CNI_CONF_DIR)/.$(EXAMPLE_CONFLIST).new $(DESTDIR)$(CNI_CONF_DIR)/$(EXAMPLE_CONFLIST)

# The conflists go first (ours and the one socksplice install writes): a
# chain must never name a plugin that is gone. Pins stay: socksplice
# uninstall --purge removes them once no container uses them.
uninstall:
	rm -f $(DESTDIR)$(CNI_CONF_DIR)/$(EXAMPLE_CONFLIST) $(DESTDIR)$(CNI_CONF_DIR)/00-socksplice.conflist
	rm -f $(DESTDIR)$(CNI_BIN_DIR)/socksplice

clean:
	rm -rf $(BIN)
