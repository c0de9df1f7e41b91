//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/* Copyright 2026 The socksplice Authors */
/*
 * A sock_ops program that hands bpf_sock_splice_pair whatever keys the
 * test put in the "forged" map for the socket's local port (host order),
 * to show what the module does with keys it could have computed itself
 * (issue 14, item 8). It also prepares the listeners whose port is in
 * "listeners". Sockets of ports in neither map are left alone.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <socksplice/abi.h>

extern int bpf_sock_splice_pair(struct bpf_sock_ops *skops,
				struct bpf_sock_splice_args *args, __u32 args__sz) __ksym;
extern int bpf_sock_splice_listen(struct bpf_sock_ops *skops) __ksym;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);	/* local port, host order */
	__type(value, struct bpf_sock_splice_args);
} forged SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);	/* listener port, host order */
	__type(value, __u32);
} listeners SEC(".maps");

/* local port -> the kfunc's return value + 1000 (0 means not called). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __s32);
} results SEC(".maps");

SEC("sockops")
int forge_sockops(struct bpf_sock_ops *skops)
{
	__u32 port = skops->local_port;
	struct bpf_sock_splice_args args, *a;
	__s32 rc;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		if (bpf_map_lookup_elem(&listeners, &port)) {
			rc = bpf_sock_splice_listen(skops) + 1000;
			bpf_map_update_elem(&results, &port, &rc, BPF_ANY);
		}
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		a = bpf_map_lookup_elem(&forged, &port);
		if (!a)
			break;
		__builtin_memcpy(&args, a, sizeof(args));
		rc = bpf_sock_splice_pair(skops, &args, sizeof(args)) + 1000;
		bpf_map_update_elem(&results, &port, &rc, BPF_ANY);
		break;
	}
	return 1;
}

char _license[] SEC("license") = "GPL";
