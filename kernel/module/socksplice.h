/* SPDX-License-Identifier: GPL-2.0 */
/*
 * socksplice: pair two same-host TCP sockets at ESTABLISHED (a kfunc called
 * by the sock_ops program) and move their payload through one ring per
 * direction. TCP keeps the connection: handshake, FIN, RST, keepalive and
 * close stay real TCP; only the payload bypasses the stack.
 */
#ifndef _SOCKSPLICE_H
#define _SOCKSPLICE_H

/* First: it stops the build with a clear message on too old a kernel. */
#include "compat.h"

#include <linux/cache.h>
#include <linux/hashtable.h>
#include <linux/percpu.h>
#include <linux/refcount.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/uio.h>
#include <net/sock.h>

/* The kfunc's argument block, the limits: shared with the BPF programs. */
#include <socksplice/abi.h>

/* ring.c: single producer, single consumer, power-of-two bytes of lazily
 * allocated pages. The
 * cursors run freely (u32 wrap) and sit on separate cache lines; each side
 * caches the other's cursor so the hot path stays off the shared line. */
struct ss_ring {
	u32 size;
	u32 mask;
	struct page **pages;	/* size / PAGE_SIZE slots, filled on first write */
	u32 head ____cacheline_aligned_in_smp;	/* producer */
	u32 cached_tail;
	u32 tail ____cacheline_aligned_in_smp;	/* consumer */
	u32 cached_head;
};

struct ss_ring *ss_ring_alloc(u32 kib, gfp_t gfp);
void ss_ring_free(struct ss_ring *r);
int ss_ring_write(struct ss_ring *r, struct iov_iter *from, size_t len);
int ss_ring_read(struct ss_ring *r, struct iov_iter *to, size_t len,
		 u32 skip, bool peek);
u32 ss_ring_avail(struct ss_ring *r);	/* consumer side */
u32 ss_ring_free_space(struct ss_ring *r);	/* producer side */

/* pair.c */
struct ss_key {
	u64 netns;
	u32 local[4];
	u32 remote[4];
	u16 lport;
	u16 rport;
};

enum sp_state {
	SP_PENDING,	/* waiting for the peer's call; TCP untouched */
	SP_PAIRED,	/* payload goes through the rings */
	SP_TCP,		/* gave up before pairing: plain TCP for good */
};

/* Shared by the two paired sockets; freed when both have let go. */
struct ss_pair {
	refcount_t ref;
	spinlock_t lock;	/* guards sk[] against teardown */
	struct sock *sk[2];
	struct ss_ring *ring[2];	/* ring[i] is read by side i */
	bool gone[2];		/* side i tore down */
	/* TCP urgent data for side i (MSG_OOB): the byte travels beside the
	 * ring, as TCP's out-of-band byte travels beside its queue. */
	bool urg_valid[2];
	u8 urg_byte[2];
};

/* Per socket, in sk_user_data while our proto is installed. */
struct ss_sock {
	struct sock *sk;
	struct proto *base_prot;
	const struct proto_ops *base_ops;	/* NULL: ops were not swapped */
	enum sp_state state;	/* under ss_pending_lock until SP_PAIRED */
	struct ss_pair *pair;
	int side;
	struct ss_ring *ring;	/* own receive ring until pairing hands it over */
	u32 busy_poll_us;
	struct ss_key self, peer;
	struct hlist_node node;
};

extern spinlock_t ss_pending_lock;
/* sk_user_data of a prepared listener (not copied to children). */
extern struct ss_sock ss_listener_mark;

int ss_pair_sock(struct sock *sk, const struct bpf_sock_splice_args *a,
		 bool passive, int fam);
bool ss_teardown(struct sock *sk);
struct ss_sock *ss_of(const struct sock *sk);
struct sock *ss_peer_get(struct ss_sock *ss);
bool ss_peer_gone(struct ss_sock *ss);
void ss_give_up(struct ss_sock *ss);

/* proto.c: the overrides, one set per address family. */
enum { SS_INET, SS_INET6, SS_NFAM };

struct ss_family {
	struct proto *base_prot;
	const struct proto_ops *base_ops;
	struct proto prot;		/* for paired and pending sockets */
	struct proto listen_prot;	/* listeners and their children */
	struct proto_ops ops;
	bool ready;
};

extern struct ss_family ss_fam[SS_NFAM];
int ss_family_of(struct sock *sk);
int ss_prepare_family(struct sock *sk, int fam);
int ss_prepare_listener(struct sock *sk);
void ss_wake_reader(struct sock *sk);
void ss_wake_writer(struct sock *sk);

/* main.c: counters, per CPU. */
struct ss_stats {
	u64 paired;	/* connections (counted once, at the second end) */
	u64 refused;
	u64 ring_bytes;
	u64 ring_full_waits;
	u64 busy_poll_hits;
	u64 busy_polls;
	u64 abi_mismatch;	/* calls from a program of another SS_ABI_VERSION */
};
DECLARE_PER_CPU(struct ss_stats, ss_stats);
#define ss_count(f, n) this_cpu_add(ss_stats.f, (n))

/* What is alive now: all three return to zero once every spliced socket
 * has closed (the churn and soak tests check it). */
extern atomic_long_t ss_live_socks, ss_live_pairs, ss_live_ring_bytes;

#endif
