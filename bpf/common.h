//go:build ignore

/* SPDX-License-Identifier: GPL-2.0 */
/* What both sock_ops engines share: the policy and address maps the plugin
 * fills at ADD, the counters, and the decision, once per connection at
 * ESTABLISHED, whether a flow may be paired and with which netns.
 *
 * socksplice.c (sockmap engine) and splice.c (splice engine) are two BPF
 * objects. The plugin loads splice.o with socksplice.o's maps, .bss
 * included, so both must lay .bss out identically: the counters below are
 * the only zero-initialised global either file may define.
 */
#ifndef SOCKSPLICE_COMMON_H
#define SOCKSPLICE_COMMON_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include <socksplice/abi.h>

#define AF_INET 2
#define AF_INET6 10
#define EEXIST 17
#define EPROTO 71

#define CTX(x) (*(volatile typeof(x) *)&(x))

/* Only the fields we read; CO-RE relocates them against the running kernel. */
struct tcp_sock {
	__u32 write_seq;
	__u32 snd_nxt;
	__u32 data_segs_out;
	/* Absent without CONFIG_MPTCP. A bool in mainline; declared a
	 * bitfield so that BPF_CORE_READ_BITFIELD reads a bool and a
	 * one-bit field alike. */
	__u8 is_mptcp:1;
} __attribute__((preserve_access_index));

union ss_slot counters[SS_MAX_CPUS];

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* netns cookie */
	__type(value, struct ss_policy);
} enroll SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ss_local_key);
	__type(value, __u64); /* domain */
} local_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ss_domain_key);
	__type(value, __u64); /* netns cookie */
} domain_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384); /* as enroll: one entry per enrolled netns */
	__type(key, __u64); /* netns cookie */
	__type(value, struct ss_ns_counters);
} ns_counters SEC(".maps");

/* count(field, n) adds n to a field of struct ss_counters in this CPU's slot. */
#define count(field, n)							\
	__sync_fetch_and_add(&counters[bpf_get_smp_processor_id() &	\
				       (SS_MAX_CPUS - 1)].c.field, (n))

/* count_ns(nc, field) counts one for the node and, where the plugin made
 * an entry for it, for the socket's netns (nc, NULL when there is none). */
#define count_ns(nc, field)						\
	do {								\
		count(field, 1);					\
		if (nc)							\
			__sync_fetch_and_add(&(nc)->field, 1);		\
	} while (0)

/* ns_counters_of returns the netns's counters; called only once a socket's
 * enrollment was found, so that a netns nobody enrolled costs nothing. */
static __always_inline struct ss_ns_counters *ns_counters_of(__u64 netns)
{
	return bpf_map_lookup_elem(&ns_counters, &netns);
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

static __always_inline int port_allowed(const struct ss_policy *pol, __u16 a, __u16 b)
{
	__u32 n = pol->nports;

	if (n == 0)
		return 1;
	for (int i = 0; i < SS_MAX_PORTS; i++) {
		if (i >= n)
			break;
		if (pol->ports[i] == a || pol->ports[i] == b)
			return 1;
	}
	return 0;
}

/* enrolled returns the policy of a netns enrolled for engine (0 for
 * sockmap, SS_POLICY_SPLICE for splice), or NULL. Each engine leaves the other's
 * netns alone: both programs can see one socket (a node-level link and a
 * container link of the other engine). */
static __always_inline struct ss_policy *enrolled(__u64 netns, __u32 engine)
{
	struct ss_policy *pol = bpf_map_lookup_elem(&enroll, &netns);

	if (!pol || !(pol->flags & SS_POLICY_ENABLED) || (pol->flags & SS_POLICY_SPLICE) != engine)
		return NULL;
	return pol;
}

/* is_mptcp_subflow tells whether the socket is a TCP subflow of an MPTCP
 * socket. The application reads through the MPTCP socket, which reassembles
 * what its subflows receive: a subflow's payload must stay on its TCP
 * queue, so it is never paired. On a kernel without MPTCP the field is
 * absent and the check folds to 0 (the object loads there too). */
static __always_inline int is_mptcp_subflow(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk;
	struct tcp_sock *tp;

	if (!bpf_core_field_exists(struct tcp_sock, is_mptcp))
		return 0;
	sk = skops->sk;
	if (!sk)
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	return BPF_CORE_READ_BITFIELD(tp, is_mptcp);
}

/* peer_netns returns the netns cookie of the socket at the other end of a
 * flow from lk->addr to dk->addr in netns, or 0 if there is none:
 * loopback never leaves the netns; otherwise the remote address's owner
 * in the network (domain) of the local address. It fills in the keys'
 * netns and domain. */
static __always_inline __u64 peer_netns(__u64 netns, struct ss_local_key *lk,
					struct ss_domain_key *dk)
{
	__u64 *v;

	if (is_loopback(lk->addr) || is_loopback(dk->addr))
		return netns;
	lk->netns = netns;
	v = bpf_map_lookup_elem(&local_addrs, lk);
	if (!v)
		return 0;
	dk->domain = *v;
	v = bpf_map_lookup_elem(&domain_addrs, dk);
	return v ? *v : 0;
}

/* A flow as this socket sees it, and the netns of the socket at its other end. */
struct flow {
	struct ss_ns_counters *nc; /* this socket's netns's counters, or NULL */
	__u64 netns;     /* this socket's netns cookie */
	__u64 peerns;    /* the peer socket's netns cookie */
	__u32 local[4];  /* IPv6 or v4-mapped, network order */
	__u32 remote[4];
	__u16 lport;     /* host order */
	__u16 rport;
};

/* resolve decides at ESTABLISHED whether engine may pair this socket, and
 * with which netns. It returns the socket's policy with f filled in, or
 * NULL when the flow stays plain TCP (counted once, by the first reason
 * that applies, unless the socket's netns is not enrolled for engine at
 * all). */
static __always_inline struct ss_policy *resolve(struct bpf_sock_ops *skops, __u32 engine,
					      struct flow *f)
{
	struct ss_local_key lk = {};
	struct ss_domain_key dk = {};
	struct ss_ns_counters *nc;
	struct ss_policy *pol;
	__u64 netns, peerns;
	__u16 lport, rport;

	if (skops->family != AF_INET && skops->family != AF_INET6)
		return NULL;
	netns = bpf_get_netns_cookie(skops);
	pol = enrolled(netns, engine);
	if (!pol)
		return NULL;
	nc = ns_counters_of(netns);
	/* Payload already moved by TCP (TCP Fast Open, data on the final
	 * handshake ACK): redirecting later data could overtake it. */
	if (skops->data_segs_in != 0 || skops->data_segs_out != 0) {
		count_ns(nc, policy_refused);
		return NULL;
	}

	lport = skops->local_port;
	rport = bpf_ntohl(skops->remote_port);
	load_addrs(skops->family, CTX(skops->local_ip4), CTX(skops->remote_ip4),
		   skops->local_ip6, skops->remote_ip6, lk.addr, dk.addr);
	if (!port_allowed(pol, lport, rport)) {
		count_ns(nc, policy_refused);
		return NULL;
	}

	peerns = peer_netns(netns, &lk, &dk);
	/* Both ends must run the same engine: neither engine can complete a
	 * pairing the other one started. */
	if (!peerns || (peerns != netns && !enrolled(peerns, engine))) {
		count_ns(nc, no_peer);
		return NULL;
	}
	if (peerns == netns && !(pol->flags & SS_POLICY_LOOPBACK)) {
		count_ns(nc, policy_refused);
		return NULL;
	}
	/* Last, so that mptcp counts the flows that would have been paired. */
	if (is_mptcp_subflow(skops)) {
		count_ns(nc, mptcp);
		return NULL;
	}

	f->nc = nc;
	f->netns = netns;
	f->peerns = peerns;
	__builtin_memcpy(f->local, lk.addr, sizeof(f->local));
	__builtin_memcpy(f->remote, dk.addr, sizeof(f->remote));
	f->lport = lport;
	f->rport = rport;
	return pol;
}

#endif /* SOCKSPLICE_COMMON_H */
