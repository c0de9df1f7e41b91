//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/* socksplice: pair same-host TCP sockets at ESTABLISHED (sock_ops) and
 * redirect their payload to the peer's receive queue (sk_msg).
 *
 * Keying. Each paired socket is inserted into the SOCKHASH under the key its
 * *peer* computes when sending: {peer's netns cookie, peer's local tuple}.
 * The sender therefore builds its lookup key from its own context alone
 * (bpf_get_netns_cookie + its tuple): one map lookup per message, and the
 * netns cookie (unique, never reused) keeps two containers, or two tenants
 * with identical addresses, from ever matching each other.
 *
 * Who the peer is gets decided once, at ESTABLISHED, from maps the plugin
 * fills at ADD: the socket's own address must belong to its netns in some
 * network (isolation domain), and the remote address must belong to an
 * enrolled netns of that same domain. Anything else (NAT, host network,
 * unenrolled peer, other network) stays plain TCP. That decision, resolve()
 * in common.h, is shared with the splice engine (splice.c).
 */
#include "common.h"

/* The netns cookie of the sockmap self-test while it runs, else 0 (the
 * plugin sets it): its messages count apart from the containers'. Its own
 * data section, pinned as "selftest" so that a later plugin run finds it;
 * read once per message, a load from a line nothing writes meanwhile, not
 * a map lookup. */
__u64 selftest_netns SEC(".data.selftest") = 0;

/* Sockets the pair map holds. A build-time knob: the upgrade tests build a
 * plugin whose map differs only in this (test/testenv/variant.go), as a
 * release that resized the map would. */
#ifndef SS_PAIR_SLOTS
#define SS_PAIR_SLOTS 131072
#endif

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, SS_PAIR_SLOTS);
	__type(key, struct ss_pair_key);
	__type(value, __u64);
} pairs SEC(".maps");

static __always_inline void pair(struct bpf_sock_ops *skops)
{
	struct ss_pair_key key = {};
	struct flow f = {};
	long err;

	if (!resolve(skops, 0, &f))
		return;

	/* Insert under the key the peer will build: its netns, its tuple. */
	key.netns = f.peerns;
	__builtin_memcpy(key.local, f.remote, sizeof(key.local));
	__builtin_memcpy(key.remote, f.local, sizeof(key.remote));
	key.lport = f.rport;
	key.rport = f.lport;
	/* NOEXIST: a socket seen by programs on two cgroup levels counts once. */
	err = bpf_sock_hash_update(skops, &pairs, &key, BPF_NOEXIST);
	if (err == 0)
		count_ns(f.nc, paired);
	else if (err != -EEXIST)
		count_ns(f.nc, insert_failures);
}

SEC("sockops")
int socksplice_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		pair(skops);
		break;
	}
	return 1;
}

SEC("sk_msg")
int socksplice_msg(struct sk_msg_md *msg)
{
	struct ss_pair_key key = {};
	struct bpf_sock *sk = msg->sk;
	struct tcp_sock *tp;

	if (!sk)
		return SK_PASS;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return SK_PASS;
	/* Once TCP has carried payload (the peer was not paired yet, or has
	 * gone), this direction stays on TCP for good: redirected bytes would
	 * overtake bytes still queued at the peer. Stateless: the counters of
	 * the socket itself tell. */
	if (tp->data_segs_out != 0 || tp->write_seq != tp->snd_nxt) {
		count(tcp_msgs, 1);
		return SK_PASS;
	}

	key.netns = bpf_get_netns_cookie(msg);
	load_addrs(msg->family, CTX(msg->local_ip4), CTX(msg->remote_ip4),
		   msg->local_ip6, msg->remote_ip6, key.local, key.remote);
	key.lport = msg->local_port;
	key.rport = bpf_ntohl(msg->remote_port);

	if (bpf_msg_redirect_hash(msg, &pairs, &key, BPF_F_INGRESS) != SK_PASS) {
		count(lookup_miss, 1);
		return SK_PASS; /* no peer: plain TCP */
	}
	if (key.netns == selftest_netns) {
		count(selftest_redirect_msgs, 1);
		count(selftest_redirect_bytes, msg->size);
		return SK_PASS;
	}
	count(redirect_msgs, 1);
	count(redirect_bytes, msg->size);
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
