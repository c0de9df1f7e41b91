//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/* A sock_ops program that calls the test module's kfunc at ESTABLISHED. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern __u64 socksplice_testmod_add(__u64 a, __u64 b) __ksym;

__u64 result;
__u64 calls;

SEC("sockops")
int testmod_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB ||
	    skops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
		result = socksplice_testmod_add(40, 2);
		__sync_fetch_and_add(&calls, 1);
	}
	return 1;
}

char _license[] SEC("license") = "GPL";
