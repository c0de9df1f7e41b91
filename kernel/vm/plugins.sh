#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build socksplice and the reference plugins it chains after into DIR, for
# a guest that runs them without a Go toolchain build of its own.
#
#   kernel/vm/plugins.sh DIR
set -euo pipefail
dir=$1
cd "$(dirname "$0")/../.."
CGO_ENABLED=0 go build -o "$dir/" ./plugin \
	github.com/containernetworking/plugins/plugins/main/bridge \
	github.com/containernetworking/plugins/plugins/ipam/host-local \
	github.com/containernetworking/plugins/plugins/main/loopback
mv "$dir/plugin" "$dir/socksplice"
