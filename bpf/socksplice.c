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

/* The key a socket is inserted under: the one its peer builds when
 * sending, the peer's netns and tuple. */
static __always_inline void peer_key(struct ss_pair_key *key, __u64 peerns,
				     const __u32 local[4], const __u32 remote[4],
				     __u16 lport, __u16 rport)
{
	key->netns = peerns;
	__builtin_memcpy(key->local, remote, sizeof(key->local));
	__builtin_memcpy(key->remote, local, sizeof(key->remote));
	key->lport = rport;
	key->rport = lport;
}

/* Every paired socket again, under its socket cookie, with no programs:
 * a second link keeps its psock, and the bytes queued in it for the
 * application, alive once unpair() has taken it out of pairs. The kernel
 * removes both links when the socket's file is closed. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, SS_PAIR_SLOTS);
	__type(key, __u64);
	__type(value, __u64);
} holds SEC(".maps");

static __always_inline void pair(struct bpf_sock_ops *skops)
{
	struct ss_pair_key key = {};
	struct flow f = {};
	__u64 cookie;
	long err;

	if (!resolve(skops, 0, &f))
		return;

	peer_key(&key, f.peerns, f.local, f.remote, f.lport, f.rport);
	/* NOEXIST: a socket seen by programs on two cgroup levels counts once. */
	err = bpf_sock_hash_update(skops, &pairs, &key, BPF_NOEXIST);
	if (err == 0) {
		count_ns(f.nc, paired);
		/* unpair() at TCP_CLOSE, where holds keeps the psock; without
		 * that link the socket stays in pairs until its file closes. */
		cookie = bpf_get_socket_cookie(skops);
		if (bpf_sock_hash_update(skops, &holds, &cookie, BPF_NOEXIST) == 0)
			bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
						  BPF_SOCK_OPS_STATE_CB_FLAG);
	} else if (err != -EEXIST) {
		count_ns(f.nc, insert_failures);
	}
}

/* unpair takes a paired socket out of pairs when it reaches TCP_CLOSE
 * (reset by its peer, or done closing). The kernel removes it only when
 * its file is closed; until then a new connection on the same 4-tuple (a
 * client reusing its port at once after a reset) would find this dead
 * socket under its key and have its messages redirected into it, not
 * into the new connection's socket. Its link in holds keeps what it has
 * not read yet. The state callback runs before the socket leaves the
 * established hash, so no newer socket of the tuple can hold the key
 * yet: the entry is this socket's. */
static __always_inline void unpair(struct bpf_sock_ops *skops)
{
	struct ss_local_key lk = {};
	struct ss_domain_key dk = {};
	struct ss_pair_key key = {};
	__u64 netns, peerns;

	if (skops->family != AF_INET && skops->family != AF_INET6)
		return;
	netns = bpf_get_netns_cookie(skops);
	load_addrs(skops->family, CTX(skops->local_ip4), CTX(skops->remote_ip4),
		   skops->local_ip6, skops->remote_ip6, lk.addr, dk.addr);
	peerns = peer_netns(netns, &lk, &dk);
	if (!peerns)
		return; /* the peer's container is gone: no one builds the key */
	peer_key(&key, peerns, lk.addr, dk.addr, skops->local_port,
		 bpf_ntohl(skops->remote_port));
	bpf_map_delete_elem(&pairs, &key);
}

SEC("sockops")
int socksplice_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		pair(skops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] == BPF_TCP_CLOSE)
			unpair(skops);
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
