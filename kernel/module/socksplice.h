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

/* ring.c: single producer, single consumer, power-of-two bytes of page
 * slots. The cursors run freely (u32 wrap) and sit on separate cache
 * lines; each side caches the other's cursor so the hot path stays off the
 * shared line. A slot has a page only while it holds unread bytes (or is
 * being filled): the reader hands drained pages back through a stash, so
 * memory follows the bytes in flight, not the ring's size.
 */
#define SS_RING_SPARE 4		/* stashed pages kept beyond the bytes in flight */

struct ss_ring {
	u32 size;
	u32 mask;
	u32 nslots;
	struct page **pages;	/* nslots slots, then the nslots-entry stash */
	struct sock *wsk;	/* the writer, charged for the pages (held) */
	struct sock *rsk;	/* the reader (held) */
	atomic_long_t *memory_allocated;	/* TCP's, counting the pages */
	u32 limit;		/* what the writer may have unread: ss_ring_set_limit */
	/* Under wsk's socket lock: */
	int charged;		/* pages counted in wsk's queued bytes */
	bool wsk_gone;		/* wsk tore down: its queue counts none */
	u32 head ____cacheline_aligned_in_smp;	/* producer */
	u32 cached_tail;
	u32 spare_tail;		/* producer takes stashed pages here */
	u32 tail ____cacheline_aligned_in_smp;	/* consumer */
	u32 cached_head;
	u32 spare_head;		/* consumer returns drained pages here */
	u32 reader_mark;	/* spare_tail when the reader last looked */
};

struct ss_ring *ss_ring_alloc(u32 kib, gfp_t gfp);
void ss_ring_attach(struct ss_ring *r, struct sock *writer, struct sock *reader);
bool ss_ring_set_limit(struct ss_ring *r);
u32 ss_ring_unsent(struct ss_ring *r);
bool ss_ring_queued_over_page(struct ss_ring *r, size_t len);
bool ss_ring_writable(struct ss_ring *r);
void ss_ring_writer_gone(struct ss_ring *r);
bool ss_ring_reader_should_trim(struct ss_ring *r);
void ss_ring_reader_trim(struct ss_ring *r);
void ss_ring_free(struct ss_ring *r);
int ss_ring_write(struct ss_ring *r, struct sock *sk, struct iov_iter *from, size_t len);
int ss_ring_read(struct ss_ring *r, struct iov_iter *to, size_t len,
		 u32 skip, bool peek);
u32 ss_ring_free_space(struct ss_ring *r);	/* producer side */

/* Inline: the busy-poll loop and every send and receive ask. */

/* Bytes written and not yet read. */
static inline u32 ss_ring_used(const struct ss_ring *r)
{
	return READ_ONCE(r->head) - READ_ONCE(r->tail);
}

/* Consumer side: bytes readable. */
static inline u32 ss_ring_avail(const struct ss_ring *r)
{
	/* Acquire: the bytes before head are written. */
	return smp_load_acquire(&r->head) - r->tail;
}

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
	SP_TCP,		/* gave up before pairing, or torn down: plain TCP */
	SP_LISTENER,	/* ss_listener_mark: a prepared listener or its child */
};

/*
 * Shared by the two paired sockets. Each side's ss_sock holds a reference
 * until its teardown, and every syscall that uses the pair holds one for
 * its duration, so a ring outlives a teardown that races a sleeping reader
 * or writer. The last put frees it after an RCU grace period: lockless
 * readers (poll, ioctl) find it through the socket under rcu_read_lock().
 */
struct ss_pair {
	refcount_t ref;
	spinlock_t lock;	/* guards sk[] and the urgent bytes */
	struct sock *sk[2];	/* NULL once side i tore down */
	struct ss_ring *ring[2];	/* ring[i] is read by side i */
	bool gone[2];		/* side i tore down */
	/* Threads of side i asleep in the module's recv: a read that drains
	 * the ring wakes ahead only these (ss_kick_writer).
	 */
	atomic_t recv_sleepers[2];
	/* TCP urgent data for side i (MSG_OOB): the byte travels beside the
	 * ring, as TCP's out-of-band byte travels beside its queue.
	 */
	bool urg_valid[2];
	u8 urg_byte[2];
	struct rcu_head rcu;
};

/* Per socket, in sk_user_data while our proto is installed; freed after
 * an RCU grace period.
 */
struct ss_sock {
	struct sock *sk;
	struct proto *base_prot;
	enum sp_state state;	/* under its pending bucket's lock until SP_PAIRED */
	struct ss_pair *pair;
	int side;
	struct ss_ring *ring;	/* own receive ring until pairing hands it over */
	u32 busy_poll_us;
	/* Adaptive busy-poll, the reader's: after misses spins in a row found
	 * nothing the next 2^(misses - 1) - 1 blocking reads sleep at once.
	 * Written by concurrent readers without a lock: a hint, never a
	 * correctness matter.
	 */
	u8 bp_misses;
	u8 bp_skip;
	u32 bucket;		/* pending table bucket of self */
	struct ss_key self, peer;
	struct hlist_node node;
	struct rcu_head rcu;
};

int ss_pair_sock(struct sock *sk, const struct bpf_sock_splice_args *a,
		 bool passive, int fam);
bool ss_teardown(struct sock *sk);
struct ss_sock *ss_of(const struct sock *sk);
/*
 * sk_user_data of a prepared listener, copied into every child it clones
 * (no SK_USER_DATA_NOCOPY): a child that has not paired is still marked
 * as ours, so no other user (a sockmap, which would build its proto from
 * ours) takes it. Static: children hold the module, never the mark.
 */
extern struct ss_sock ss_listener_mark;
void ss_give_up(struct ss_sock *ss);
void ss_pair_put(struct ss_pair *p);
void ss_pending_init(void);
extern unsigned int ss_max_pending;

/* proto.c: the overrides, one set per address family. */
enum { SS_INET, SS_INET6, SS_NFAM };

struct ss_family {
	struct proto *base_prot;
	const struct proto_ops *base_ops;
	/* Paired, pending and listening sockets and a prepared listener's
	 * children; its owner is what holds the module for a child from its
	 * clone until it is accepted or freed.
	 */
	struct proto prot;
	/* Every socket file that ran our code keeps these until it is
	 * released: __sock_release drops their module reference after the
	 * last of our code (close) has returned.
	 */
	struct proto_ops ops;	/* built at load, so not const */
	bool ready;
};

extern struct ss_family ss_fam[SS_NFAM];
int ss_family_of(struct sock *sk);
int ss_prepare_family(struct sock *sk, int fam);
int ss_prepare_listener(struct sock *sk);
bool ss_proto_ours(const struct proto *prot);
int ss_take_ops(struct sock *sk, int fam);
void ss_wake_reader(struct sock *sk);
/* How a reader or a teardown wakes the writer: proto.c, ss_wake_writer. */
enum ss_wake { SS_WAKE_ROOM, SS_WAKE_AHEAD, SS_WAKE_ALL };
void ss_wake_writer(struct sock *sk, enum ss_wake how);

/* main.c: counters, per CPU. */
struct ss_stats {
	u64 paired;	/* connections (counted once, at the second end) */
	u64 refused;
	u64 ring_bytes;
	u64 ring_full_waits;
	u64 busy_poll_hits;
	u64 busy_poll_skips;	/* blocking reads that slept without a spin */
	u64 busy_polls;
	u64 abi_mismatch;	/* calls from a program of another SS_ABI_VERSION */
	u64 forged;		/* arguments that disagree with the socket */
	u64 peer_mismatch;	/* keys matched, the sockets are not peers */
	u64 pending_full;	/* the pending table was full: stayed TCP */
	u64 mem_waits;		/* ring page refused by socket memory limits */
};
DECLARE_PER_CPU(struct ss_stats, ss_stats);
#define ss_count(f, n) this_cpu_add(ss_stats.f, (n))

/* What is alive now: all three return to zero once every spliced socket
 * has closed (the churn and soak tests check it).
 */
extern atomic_long_t ss_live_socks, ss_live_pairs, ss_live_ring_bytes;

#endif
