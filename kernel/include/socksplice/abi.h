/* SPDX-License-Identifier: GPL-2.0 */
/*
 * socksplice ABI: the one definition of everything the BPF programs
 * (the programs in bpf/), the splice kernel module (kernel/module) and the Go plugin
 * share: the kfunc's argument block, the policy and map key layouts, the
 * counters, limits and flag bits, and the ABI version.
 *
 * Go sees this file through BTF: bpf/abi.c anchors every type here, bpf2go
 * turns them into Go types and abigen turns the enums into Go constants
 * (bpf/abi_const.go, conf/limits_gen.go). Change something here, bump
 * SS_ABI_VERSION if the module or a pinned map would read it differently,
 * and run `make generate`.
 *
 * Constants are enum members, not macros: macros leave no trace in BTF.
 */
#ifndef _SOCKSPLICE_ABI_H
#define _SOCKSPLICE_ABI_H

#include <linux/types.h>

enum ss_abi {
	/*
	 * What the module expects in bpf_sock_splice_args.abi_version; a
	 * program built against another version is refused, and counted.
	 */
	SS_ABI_VERSION = 2,
};

/*
 * What a network config may ask for; conf validates against these and the
 * module clamps to them.
 * - The port allowlist is a small fixed array the BPF program scans once
 *   per connection.
 * - A ring is at least one page. At most 4 MiB per direction, so that a
 *   few thousand paired connections cannot pin gigabytes of kernel memory.
 * - Busy polling at most 1 ms per blocking read: a sleeping reader wakes
 *   within tens of microseconds, so longer spins buy no latency and burn
 *   a core (the kernel's own busy_read guidance is 50-100 us).
 */
enum ss_limits {
	SS_MAX_PORTS = 32,
	SS_MIN_RING_KIB = 4,
	SS_MAX_RING_KIB = 4096,
	SS_MAX_BUSY_POLL_US = 1000,
};

/* The counters array (union ss_slot below). */
enum ss_counter_layout {
	SS_MAX_CPUS = 1024,		/* slots; larger CPU ids share one */
	SS_SLOT_WORDS = 16,		/* u64 words per slot */
};

/* struct ss_policy.flags */
enum ss_policy_flags {
	SS_POLICY_ENABLED = 1,
	SS_POLICY_LOOPBACK = 2,		/* pair flows inside one netns too */
	SS_POLICY_SPLICE = 4,		/* the splice engine owns this netns */
};

/*
 * The kfunc's argument block (bpf_sock_splice_pair), filled by
 * bpf/splice.c. abi_version comes first so that any size can be checked;
 * the module refuses a block of another version or size.
 */
struct bpf_sock_splice_args {
	__u32 abi_version;	/* SS_ABI_VERSION of the program */
	__u32 flags;		/* none yet: a flag comes with a new version */
	__u64 self_netns;
	__u64 peer_netns;
	__u32 local_ip[4];	/* IPv6 or v4-mapped, network order */
	__u32 remote_ip[4];
	__u16 local_port;	/* host order */
	__u16 remote_port;
	__u32 busy_poll_us;	/* 0..SS_MAX_BUSY_POLL_US */
	__u32 ring_kib;		/* SS_MIN_RING_KIB..SS_MAX_RING_KIB, power of 2 */
	__u32 pad;
};

/* enroll map: netns cookie -> policy. */
struct ss_policy {
	__u32 flags;		/* enum ss_policy_flags */
	__u32 busy_poll_us;	/* splice engine only */
	__u32 ring_kib;		/* splice engine only */
	__u16 nports;
	__u16 pad;
	__u16 ports[SS_MAX_PORTS];
};

/* local_addrs map: {netns, address} -> isolation domain. */
struct ss_local_key {
	__u64 netns;
	__u32 addr[4];
};

/* domain_addrs map: {domain, address} -> netns cookie. */
struct ss_domain_key {
	__u64 domain;
	__u32 addr[4];
};

/* pairs SOCKHASH (sockmap engine): the key the socket's peer builds. */
struct ss_pair_key {
	__u64 netns;		/* netns cookie of the socket that looks this up */
	__u32 local[4];		/* its local address, IPv6 or v4-mapped */
	__u32 remote[4];
	__u16 lport;		/* host order */
	__u16 rport;
	__u32 pad;
};

/*
 * Counters of both engines' programs, one slot per CPU (the objects'
 * .bss). Each field is one reason an operator may need to see.
 */
struct ss_counters {
	__u64 paired;		/* sockets inserted into the pair map */
	__u64 redirect_msgs;	/* messages moved to the peer */
	__u64 redirect_bytes;
	__u64 lookup_miss;	/* sender paired, its peer not in the map */
	__u64 tcp_msgs;		/* kept on TCP: TCP already carried payload */
	__u64 no_peer;		/* the peer is not an enrolled endpoint */
	__u64 policy_refused;	/* refused by port/loopback policy */
	__u64 insert_failures;	/* pair map full, or already present */
	__u64 splice_paired;	/* the module took the socket */
	__u64 splice_refused;	/* the module refused it: plain TCP */
	__u64 splice_listen_fail; /* a listener could not be prepared */
	__u64 splice_abi_mismatch; /* the module has another SS_ABI_VERSION */
	__u64 mptcp;		/* an MPTCP subflow or listener: stays TCP */
	/* The self-test's messages, counted here instead of redirect_*. */
	__u64 selftest_redirect_msgs;
	__u64 selftest_redirect_bytes;
};

/*
 * ns_counters map: netns cookie -> why that netns's sockets were or were
 * not paired. The programs touch it only where they already looked up the
 * netns's enrollment (ESTABLISHED, listen), never per message, so
 * per-message counters (tcp_msgs, lookup_miss, redirected bytes) stay
 * node-wide only. The plugin creates an entry when it enrolls a netns and
 * folds it into its network's totals when it un-enrolls it.
 */
struct ss_ns_counters {
	__u64 paired;		/* paired (sockmap) or handed to the module (splice) */
	__u64 no_peer;
	__u64 policy_refused;
	__u64 insert_failures;
	__u64 splice_refused;
	__u64 splice_listen_fail;
	__u64 splice_abi_mismatch;
	__u64 mptcp;
};

union ss_slot {
	struct ss_counters c;
	__u64 words[SS_SLOT_WORDS];	/* two cache lines per CPU */
};

_Static_assert(sizeof(struct ss_counters) <= sizeof(union ss_slot),
	       "counters outgrew the per-CPU slot");

#endif /* _SOCKSPLICE_ABI_H */
