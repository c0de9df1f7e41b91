# socksplice: CNI chained plugin for same-host TCP acceleration.
#
#   make            build bin/socksplice (pure Go, no clang needed)
#   make generate   regenerate the BPF objects from bpf/*.c (needs clang)
#   make demo       run the example conflist end to end (root)
#   make test       unit and integration tests (root; integration tests
#                   create netns, bridges, cgroups and load BPF)

GO      ?= go
BIN     := bin
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.buildVersion=$(VERSION)

.PHONY: all build generate plugins demo test vet clean

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

generate:
	$(GO) generate ./bpf/

demo: build
	$(GO) build -o $(BIN)/socksplice-demo ./test/demo
	$(BIN)/socksplice-demo

vet:
	$(GO) vet ./...

test: vet
	$(GO) test -count=1 -timeout 20m ./...

clean:
	rm -rf $(BIN)
