//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/* socksplice splice engine: hand the two ends of a same-host flow to the
 * socksplice kernel module, which pairs them and moves their payload from
 * then on (bpf_sock_splice_pair, at ESTABLISHED), and prepare the listeners
 * of enrolled netns so that accepted sockets can be spliced too
 * (bpf_sock_splice_listen, at listen()).
 *
 * Which flows qualify, and who the peer is, is decided exactly as for the
 * sockmap engine (resolve() in common.h). The module matches the two ends
 * by {netns, tuple}. The plugin loads this object with socksplice.o's maps,
 * so enrollment, addresses and counters are one set for both engines.
 */
#include "common.h"

/* The ABI version this object was built with. A read-only global, so the
 * verifier folds it into a constant; tests load a copy that claims another
 * version to see the module refuse it. */
volatile const __u32 ss_abi_version = SS_ABI_VERSION;

/* 0: the socket is now pending or paired; 1: it already was; <0: refused,
 * it stays plain TCP. */
extern int bpf_sock_splice_pair(struct bpf_sock_ops *skops,
				struct bpf_sock_splice_args *args, __u32 args__sz) __ksym;
/* Prepares a listener so that its accepted sockets can be spliced: 0, 1
 * when it already was, <0 when it cannot be. */
extern int bpf_sock_splice_listen(struct bpf_sock_ops *skops) __ksym;

static __always_inline void splice_pair(struct bpf_sock_ops *skops)
{
	struct bpf_sock_splice_args args = {};
	struct flow f = {};
	struct ss_policy *pol;
	int err;

	pol = resolve(skops, SS_POLICY_SPLICE, &f);
	if (!pol)
		return;

	args.abi_version = ss_abi_version;
	args.self_netns = f.netns;
	args.peer_netns = f.peerns;
	__builtin_memcpy(args.local_ip, f.local, sizeof(args.local_ip));
	__builtin_memcpy(args.remote_ip, f.remote, sizeof(args.remote_ip));
	args.local_port = f.lport;
	args.remote_port = f.rport;
	args.busy_poll_us = pol->busy_poll_us;
	args.ring_kib = pol->ring_kib;

	/* 1: already handed over by a program on another cgroup level (the
	 * node-level link and the container's both run). */
	err = bpf_sock_splice_pair(skops, &args, sizeof(args));
	/* The netns counts both engines' pairings as paired. */
	if (err == 0) {
		count(splice_paired, 1);
		if (f.nc)
			__sync_fetch_and_add(&f.nc->paired, 1);
	} else if (err == -EPROTO) {
		count_ns(f.nc, splice_abi_mismatch);
	} else if (err < 0) {
		count_ns(f.nc, splice_refused);
	}
}

static __always_inline void splice_listen(struct bpf_sock_ops *skops)
{
	struct ss_ns_counters *nc;
	__u64 netns;

	if (skops->family != AF_INET && skops->family != AF_INET6)
		return;
	/* Which accepted sockets will qualify is not known yet (ports,
	 * peers): enrollment alone decides. */
	netns = bpf_get_netns_cookie(skops);
	if (!enrolled(netns, SS_POLICY_SPLICE))
		return;
	nc = ns_counters_of(netns);
	/* An MPTCP listener's subflow: its proto is MPTCP's, which the
	 * module cannot prepare (it would refuse, -EOPNOTSUPP), and what it
	 * accepts is either a subflow or a fallback socket that MPTCP hands
	 * out through its own accept. */
	if (is_mptcp_subflow(skops)) {
		count_ns(nc, mptcp);
		return;
	}
	if (bpf_sock_splice_listen(skops) < 0)
		count_ns(nc, splice_listen_fail);
}

SEC("sockops")
int socksplice_splice(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		splice_listen(skops);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		splice_pair(skops);
		break;
	}
	return 1;
}

char _license[] SEC("license") = "GPL";
