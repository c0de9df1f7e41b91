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
 * unenrolled peer, other network) stays plain TCP.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define EEXIST 17

#define MAX_PORTS 32
#define MAX_CPUS 1024 /* counter slots; larger CPU ids share slots (atomic adds) */

#define CTX(x) (*(volatile typeof(x) *)&(x))

#define POL_ENABLED 1
#define POL_LOOPBACK 2

/* Only the fields we read; CO-RE relocates them against the running kernel. */
struct tcp_sock {
	__u32 write_seq;
	__u32 snd_nxt;
	__u32 data_segs_out;
} __attribute__((preserve_access_index));

struct pair_key {
	__u64 netns;      /* netns cookie of the socket that looks this key up */
	__u32 local[4];   /* that socket's local address, IPv6 or v4-mapped */
	__u32 remote[4];
	__u16 lport;      /* host order */
	__u16 rport;
	__u32 pad;
};

struct policy {
	__u32 flags;
	__u32 busy_poll_us; /* splice engine only */
	__u32 ring_kib;     /* splice engine only */
	__u16 nports;
	__u16 pad;
	__u16 ports[MAX_PORTS];
};

struct local_key {
	__u64 netns;
	__u32 addr[4];
};

struct domain_key {
	__u64 domain;
	__u32 addr[4];
};

enum counter {
	C_PAIRED,          /* sockets inserted into the pair map */
	C_REDIRECT_MSGS,   /* messages moved to the peer */
	C_REDIRECT_BYTES,
	C_LOOKUP_MISS,     /* sender paired but its peer was not in the map */
	C_TCP_MSGS,        /* messages kept on TCP because TCP already carried payload */
	C_NO_PEER,         /* enrolled socket whose peer is not an enrolled endpoint */
	C_POLICY,          /* enrolled socket refused by port/loopback policy */
	C_INSERT_FAIL,     /* map insert failed (full, or already present) */
	C_MAX,
};

struct slot {
	__u64 v[C_MAX]; /* 64 bytes: one cache line per CPU */
};

struct slot counters[MAX_CPUS];

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 131072);
	__type(key, struct pair_key);
	__type(value, __u64);
} pairs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* netns cookie */
	__type(value, struct policy);
} enroll SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct local_key);
	__type(value, __u64); /* domain */
} local_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct domain_key);
	__type(value, __u64); /* netns cookie */
} domain_addrs SEC(".maps");

static __always_inline void count(enum counter c, __u64 n)
{
	__u32 cpu = bpf_get_smp_processor_id() & (MAX_CPUS - 1);

	__sync_fetch_and_add(&counters[cpu].v[c], n);
}

static __always_inline void v4_mapped(__u32 a[4], __u32 ip4)
{
	a[0] = 0;
	a[1] = 0;
	a[2] = bpf_htonl(0xffff);
	a[3] = ip4;
}

/* Both families' fields are read unconditionally (volatile, so they stay
 * outside the branch): clang would otherwise merge the two branches' loads
 * into one load through a computed ctx pointer, which the verifier rejects. */
static __always_inline void load_addrs(__u32 family, __u32 l4, __u32 r4,
				       __u32 *l6, __u32 *r6, __u32 l[4], __u32 r[4])
{
	__u32 l60 = CTX(l6[0]), l61 = CTX(l6[1]), l62 = CTX(l6[2]), l63 = CTX(l6[3]);
	__u32 r60 = CTX(r6[0]), r61 = CTX(r6[1]), r62 = CTX(r6[2]), r63 = CTX(r6[3]);

	if (family == AF_INET) {
		v4_mapped(l, l4);
		v4_mapped(r, r4);
		return;
	}
	l[0] = l60; l[1] = l61; l[2] = l62; l[3] = l63;
	r[0] = r60; r[1] = r61; r[2] = r62; r[3] = r63;
}

static __always_inline int is_loopback(const __u32 a[4])
{
	if (a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff))
		return (bpf_ntohl(a[3]) >> 24) == 127;
	return a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == bpf_htonl(1);
}

static __always_inline int port_allowed(const struct policy *pol, __u16 a, __u16 b)
{
	__u32 n = pol->nports;

	if (n == 0)
		return 1;
	for (int i = 0; i < MAX_PORTS; i++) {
		if (i >= n)
			break;
		if (pol->ports[i] == a || pol->ports[i] == b)
			return 1;
	}
	return 0;
}

static __always_inline void pair(struct bpf_sock_ops *skops)
{
	struct local_key lk = {};
	struct domain_key dk = {};
	struct pair_key key = {};
	struct policy *pol;
	__u64 netns, peerns, *v;
	__u16 lport, rport;
	long err;

	if (skops->family != AF_INET && skops->family != AF_INET6)
		return;
	netns = bpf_get_netns_cookie(skops);
	pol = bpf_map_lookup_elem(&enroll, &netns);
	if (!pol || !(pol->flags & POL_ENABLED))
		return;
	/* Payload already moved by TCP (TCP Fast Open, data on the final
	 * handshake ACK): redirecting later data could overtake it. */
	if (skops->data_segs_in != 0 || skops->data_segs_out != 0) {
		count(C_POLICY, 1);
		return;
	}

	lport = skops->local_port;
	rport = bpf_ntohl(skops->remote_port);
	load_addrs(skops->family, CTX(skops->local_ip4), CTX(skops->remote_ip4),
		   skops->local_ip6, skops->remote_ip6, lk.addr, dk.addr);
	if (!port_allowed(pol, lport, rport)) {
		count(C_POLICY, 1);
		return;
	}

	if (is_loopback(lk.addr) || is_loopback(dk.addr)) {
		/* Loopback never leaves the netns: the peer is in this one. */
		peerns = netns;
	} else {
		lk.netns = netns;
		v = bpf_map_lookup_elem(&local_addrs, &lk);
		if (!v) {
			count(C_NO_PEER, 1);
			return;
		}
		dk.domain = *v;
		v = bpf_map_lookup_elem(&domain_addrs, &dk);
		if (!v) {
			count(C_NO_PEER, 1);
			return;
		}
		peerns = *v;
	}
	if (peerns == netns && !(pol->flags & POL_LOOPBACK)) {
		count(C_POLICY, 1);
		return;
	}

	/* Insert under the key the peer will build: its netns, its tuple. */
	key.netns = peerns;
	__builtin_memcpy(key.local, dk.addr, sizeof(key.local));
	__builtin_memcpy(key.remote, lk.addr, sizeof(key.remote));
	key.lport = rport;
	key.rport = lport;
	/* NOEXIST: a socket seen by programs on two cgroup levels counts once. */
	err = bpf_sock_hash_update(skops, &pairs, &key, BPF_NOEXIST);
	if (err == 0)
		count(C_PAIRED, 1);
	else if (err != -EEXIST)
		count(C_INSERT_FAIL, 1);
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
	struct pair_key key = {};
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
		count(C_TCP_MSGS, 1);
		return SK_PASS;
	}

	key.netns = bpf_get_netns_cookie(msg);
	load_addrs(msg->family, CTX(msg->local_ip4), CTX(msg->remote_ip4),
		   msg->local_ip6, msg->remote_ip6, key.local, key.remote);
	key.lport = msg->local_port;
	key.rport = bpf_ntohl(msg->remote_port);

	if (bpf_msg_redirect_hash(msg, &pairs, &key, BPF_F_INGRESS) != SK_PASS) {
		count(C_LOOKUP_MISS, 1);
		return SK_PASS; /* no peer: plain TCP */
	}
	count(C_REDIRECT_MSGS, 1);
	count(C_REDIRECT_BYTES, msg->size);
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
