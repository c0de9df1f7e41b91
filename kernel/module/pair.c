// SPDX-License-Identifier: GPL-2.0
/*
 * Pairing state. Both ends call the kfunc at ESTABLISHED. The kfunc takes
 * each end's own netns cookie and tuple from the socket itself, and only
 * the peer's netns cookie from the program (it comes from the plugin's
 * per-network maps, so a socket never pairs with a socket of another
 * isolation domain). The first end waits in a hash table under its own
 * key; the second finds it under the peer key and links the two only if
 * each really is the other's peer: netns cookies as claimed and sequence
 * numbers that agree.
 *
 * Ordering. A pending socket that sends or receives anything through TCP
 * before its peer arrives gives up (SP_TCP) under its bucket's lock, so the
 * pairing end only ever links sockets whose streams are still empty.
 */
#include <linux/jhash.h>
#include <linux/module.h>
#include <linux/random.h>
#include <linux/slab.h>
#include <net/tcp.h>

#include "socksplice.h"

#define SS_PENDING_BITS 12

/* Per-bucket locks: a handshake takes one or two bucket locks, never a
 * host-wide one.
 */
struct ss_bucket {
	spinlock_t lock;	/* the chain, and its sockets' pending state */
	struct hlist_head head;
};

static struct ss_bucket ss_pending[1 << SS_PENDING_BITS];
static u32 ss_hash_seed __read_mostly;
static atomic_t ss_npending;
unsigned int ss_max_pending __read_mostly = 65536;

void ss_pending_init(void)
{
	int i;

	/* A seed the programs cannot know: flows cannot be steered into one
	 * bucket.
	 */
	ss_hash_seed = get_random_u32();
	for (i = 0; i < ARRAY_SIZE(ss_pending); i++) {
		spin_lock_init(&ss_pending[i].lock);
		INIT_HLIST_HEAD(&ss_pending[i].head);
	}
}

static u32 ss_bucket_of(const struct ss_key *k)
{
	return hash_32(jhash2((const u32 *)k, sizeof(*k) / sizeof(u32), ss_hash_seed),
		       SS_PENDING_BITS);
}

/* Two buckets in index order, so two handshakes never wait on each other. */
static void ss_lock2(u32 a, u32 b)
{
	if (a > b)
		swap(a, b);
	spin_lock_bh(&ss_pending[a].lock);
	if (a != b)
		spin_lock_nested(&ss_pending[b].lock, SINGLE_DEPTH_NESTING);
}

static void ss_unlock2(u32 a, u32 b)
{
	if (a != b)
		spin_unlock(&ss_pending[max(a, b)].lock);
	spin_unlock_bh(&ss_pending[min(a, b)].lock);
}

bool ss_proto_ours(const struct proto *prot)
{
	return prot == &ss_fam[SS_INET].prot || prot == &ss_fam[SS_INET6].prot;
}

/*
 * sk_user_data is shared with other kernel users (a sockmap's psock, for
 * one): it is ours only with exactly our flag bits and while our proto is
 * installed. Callers hold rcu_read_lock() or the socket's lock.
 */
struct ss_sock *ss_of(const struct sock *sk)
{
	uintptr_t v = (uintptr_t)rcu_dereference_check(__sk_user_data(sk), 1);
	struct ss_sock *ss = (struct ss_sock *)(v & SK_USER_DATA_PTRMASK);

	if (!ss_proto_ours(READ_ONCE(sk->sk_prot)))
		return NULL;
	if ((v & ~SK_USER_DATA_PTRMASK) == SK_USER_DATA_NOCOPY ||
	    (ss == &ss_listener_mark && !(v & ~SK_USER_DATA_PTRMASK)))
		return ss;
	return NULL;
}

struct ss_sock ss_listener_mark = { .state = SP_LISTENER };

static struct ss_sock *ss_lookup(u32 b, const struct ss_key *k)
{
	struct ss_sock *ss;

	hlist_for_each_entry(ss, &ss_pending[b].head, node)
		if (!memcmp(&ss->self, k, sizeof(*k)))
			return ss;
	return NULL;
}

static void ss_unhash(struct ss_sock *ss)
{
	hlist_del(&ss->node);
	atomic_dec(&ss_npending);
}

/* The socket's own tuple, as the programs write it (IPv6 or v4-mapped,
 * network order; ports in host order).
 */
static void ss_own_tuple(struct sock *sk, u32 local[4], u32 remote[4], u16 *lport,
			 u16 *rport)
{
	const struct inet_sock *inet = inet_sk(sk);

#if IS_ENABLED(CONFIG_IPV6)
	if (sk->sk_family == AF_INET6) {
		memcpy(local, &sk->sk_v6_rcv_saddr, 16);
		memcpy(remote, &sk->sk_v6_daddr, 16);
		goto ports;
	}
#endif
	{
		local[0] = 0;
		local[1] = 0;
		local[2] = htonl(0xffff);
		local[3] = inet->inet_rcv_saddr;
		remote[0] = 0;
		remote[1] = 0;
		remote[2] = htonl(0xffff);
		remote[3] = inet->inet_daddr;
	}
#if IS_ENABLED(CONFIG_IPV6)
ports:
#endif
	*lport = inet->inet_num;
	*rport = ntohs(inet->inet_dport);
}

/* The keys from the socket itself; the program may only add its peer's
 * netns, and what it says of this socket must be true.
 */
static int ss_fill_keys(struct ss_sock *ss, struct sock *sk,
			const struct bpf_sock_splice_args *a)
{
	struct ss_key *k = &ss->self;

	k->netns = sock_net(sk)->net_cookie;
	ss_own_tuple(sk, k->local, k->remote, &k->lport, &k->rport);
	if (a->self_netns != k->netns || memcmp(a->local_ip, k->local, 16) ||
	    memcmp(a->remote_ip, k->remote, 16) || a->local_port != k->lport ||
	    a->remote_port != k->rport)
		return -EINVAL;
	ss->peer.netns = a->peer_netns;
	memcpy(ss->peer.local, k->remote, 16);
	memcpy(ss->peer.remote, k->local, 16);
	ss->peer.lport = k->rport;
	ss->peer.rport = k->lport;
	return 0;
}

/* Each is the other's peer: the netns each claims for the other is the
 * other's, and each has sent exactly what the other expects next (both
 * streams are empty, so this is the handshake's sequence numbers).
 */
static bool ss_are_peers(struct sock *a, struct sock *b)
{
	const struct tcp_sock *ta = tcp_sk(a), *tb = tcp_sk(b);

	return READ_ONCE(ta->snd_nxt) == READ_ONCE(tb->rcv_nxt) &&
	       READ_ONCE(tb->snd_nxt) == READ_ONCE(ta->rcv_nxt);
}

/*
 * Installs our proto on sk. Our proto_ops are installed once per socket
 * file with the module reference that __sock_release drops (ss_take_ops);
 * a passive socket got them from its listener at accept, or gets them
 * then.
 */
static void ss_install(struct sock *sk, struct ss_sock *ss, int fam)
{
	atomic_long_inc(&ss_live_socks);
	__rcu_assign_sk_user_data_with_flags(sk, ss, SK_USER_DATA_NOCOPY);
	WRITE_ONCE(sk->sk_prot, &ss_fam[fam].prot);
}

int ss_pair_sock(struct sock *sk, const struct bpf_sock_splice_args *a,
		 bool passive, int fam)
{
	struct tcp_sock *tp = tcp_sk(sk);
	struct ss_sock *ss, *e;
	struct ss_pair *p;
	u32 bself, bpeer;
	int err;

	if (__sk_user_data(sk)) {
		e = ss_of(sk);
		/* Ours: a program on another cgroup level got here first. */
		if (e && !(passive && e == &ss_listener_mark))
			return 1;
		if (!e)
			return -EBUSY;	/* someone else's (sockmap, a ULP) */
		/* else: a prepared listener's child, marked, may pair. */
	}
	/* Payload already moved by TCP: pairing now could reorder it. */
	if (tp->data_segs_in || tp->data_segs_out || tp->bytes_received ||
	    tp->write_seq != tp->snd_nxt)
		return -EALREADY;
	/* A ULP (kTLS) or repair mode owns the byte stream. */
	if (inet_csk(sk)->icsk_ulp_ops || tp->repair)
		return -EBUSY;
	if (passive) {
		if (sk->sk_prot != &ss_fam[fam].prot)
			return -EOPNOTSUPP;	/* listener predates the attach */
	} else {
		if (sk->sk_prot != ss_fam[fam].base_prot || !sk->sk_socket)
			return -EOPNOTSUPP;
		err = ss_take_ops(sk, fam);
		if (err)
			return err;
	}

	ss = kzalloc(sizeof(*ss), GFP_ATOMIC);
	if (!ss)
		return -ENOMEM;
	ss->sk = sk;
	ss->base_prot = ss_fam[fam].base_prot;
	ss->busy_poll_us = min_t(u32, a->busy_poll_us, SS_MAX_BUSY_POLL_US);
	if (ss_fill_keys(ss, sk, a)) {
		kfree(ss);
		ss_count(forged, 1);
		return -EINVAL;
	}
	p = kzalloc(sizeof(*p), GFP_ATOMIC);
	ss->ring = ss_ring_alloc(a->ring_kib, GFP_ATOMIC);
	if (!p || !ss->ring) {
		ss_ring_free(ss->ring);
		kfree(ss);
		kfree(p);
		return -ENOMEM;
	}
	bself = ss_bucket_of(&ss->self);
	bpeer = ss_bucket_of(&ss->peer);
	ss->bucket = bself;

	ss_lock2(bself, bpeer);
	e = ss_lookup(bpeer, &ss->peer);
	if (e && !memcmp(&e->peer, &ss->self, sizeof(ss->self))) {
		if (e->sk->sk_family != sk->sk_family || !ss_are_peers(e->sk, sk)) {
			ss_unlock2(bself, bpeer);
			ss_count(peer_mismatch, 1);
			err = -EINVAL;
			goto free;
		}
		/* The peer waits: link both. */
		ss_unhash(e);
		refcount_set(&p->ref, 2);
		spin_lock_init(&p->lock);
		p->sk[0] = e->sk;
		p->sk[1] = sk;
		p->ring[0] = e->ring;
		p->ring[1] = ss->ring;
		ss_ring_attach(p->ring[0], sk, e->sk);
		ss_ring_attach(p->ring[1], e->sk, sk);
		e->ring = NULL;
		ss->ring = NULL;
		e->pair = p;
		e->side = 0;
		ss->pair = p;
		ss->side = 1;
		ss->state = SP_PAIRED;
		atomic_long_inc(&ss_live_pairs);
		ss_install(sk, ss, fam);
		/* Publishes pair before state for lockless readers. */
		smp_store_release(&e->state, SP_PAIRED);
		/* A reader blocked while pending waits for this. */
		e->sk->sk_data_ready(e->sk);
		ss_unlock2(bself, bpeer);
		ss_count(paired, 1);
		return 0;
	}
	if (ss_lookup(bself, &ss->self)) {
		ss_unlock2(bself, bpeer);
		err = -EEXIST;
		goto free;
	}
	if (atomic_inc_return(&ss_npending) > READ_ONCE(ss_max_pending)) {
		atomic_dec(&ss_npending);
		ss_unlock2(bself, bpeer);
		ss_count(pending_full, 1);
		err = -ENOSPC;
		goto free;
	}
	ss->state = SP_PENDING;
	hlist_add_head(&ss->node, &ss_pending[bself].head);
	ss_install(sk, ss, fam);
	ss_unlock2(bself, bpeer);
	kfree(p);
	return 0;
free:
	ss_ring_free(ss->ring);
	kfree(ss);
	kfree(p);
	return err;
}

/* A pending socket that touches TCP gives up for good. */
void ss_give_up(struct ss_sock *ss)
{
	spin_lock_bh(&ss_pending[ss->bucket].lock);
	if (ss->state == SP_PENDING) {
		ss_unhash(ss);
		ss->state = SP_TCP;
	}
	spin_unlock_bh(&ss_pending[ss->bucket].lock);
}

static void ss_pair_free_rcu(struct rcu_head *head)
{
	struct ss_pair *p = container_of(head, struct ss_pair, rcu);

	ss_ring_free(p->ring[0]);
	ss_ring_free(p->ring[1]);
	kfree(p);
}

void ss_pair_put(struct ss_pair *p)
{
	if (refcount_dec_and_test(&p->ref)) {
		atomic_long_dec(&ss_live_pairs);
		call_rcu(&p->rcu, ss_pair_free_rcu);
	}
}

static void ss_sock_free_rcu(struct rcu_head *head)
{
	struct ss_sock *ss = container_of(head, struct ss_sock, rcu);

	ss_ring_free(ss->ring);
	kfree(ss);
}

/* Idempotent: from close, disconnect and destroy, whichever comes first.
 * Restores TCP's own proto, so none of our proto code runs afterwards
 * (our proto_ops stay until the file is released and hand over to
 * TCP's). Returns whether bytes the peer sent were left unread in our
 * ring. Called with the socket locked or unreachable.
 */
bool ss_teardown(struct sock *sk)
{
	struct ss_sock *ss = ss_of(sk);
	struct ss_pair *p;
	struct sock *psk = NULL;
	bool unread = false;

	if (!ss)
		return false;
	if (ss == &ss_listener_mark) {
		WRITE_ONCE(sk->sk_prot, ss_fam[ss_family_of(sk)].base_prot);
		rcu_assign_sk_user_data(sk, NULL);
		return false;
	}
	WRITE_ONCE(sk->sk_prot, ss->base_prot);
	rcu_assign_sk_user_data(sk, NULL);
	spin_lock_bh(&ss_pending[ss->bucket].lock);
	if (ss->state == SP_PENDING)
		ss_unhash(ss);
	p = ss->state == SP_PAIRED ? ss->pair : NULL;
	WRITE_ONCE(ss->state, SP_TCP);
	spin_unlock_bh(&ss_pending[ss->bucket].lock);

	if (p) {
		spin_lock_bh(&p->lock);
		p->sk[ss->side] = NULL;
		WRITE_ONCE(p->gone[ss->side], true);
		psk = p->sk[!ss->side];
		if (psk)
			sock_hold(psk);
		spin_unlock_bh(&p->lock);
		/* Read after gone is set: a writer that checks gone afterwards
		 * goes to TCP instead, which the reset then answers.
		 */
		unread = ss_ring_avail(p->ring[ss->side]) > 0;
		/* We write no more: the peer's ring stops charging us. */
		ss_ring_writer_gone(p->ring[!ss->side]);
		/* Our own threads asleep in recv or send re-check the pair. */
		sk->sk_state_change(sk);
		if (psk) {
			/* A writer blocked on our full ring must see us go. */
			ss_wake_writer(psk, SS_WAKE_ALL);
			sock_put(psk);
		}
		ss_pair_put(p);
	}
	atomic_long_dec(&ss_live_socks);
	call_rcu(&ss->rcu, ss_sock_free_rcu);
	return unread;
}
