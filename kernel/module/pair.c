// SPDX-License-Identifier: GPL-2.0
/*
 * Pairing state. Both ends call the kfunc at ESTABLISHED with the same two
 * keys seen from opposite sides: {own netns cookie, own tuple} and {peer's
 * netns cookie, peer's tuple}. The first end waits in a hash table under
 * its own key; the second finds it under the peer key and links the two.
 * The netns cookies come from the plugin's per-network maps, so a socket
 * never pairs with a socket of another isolation domain.
 *
 * Ordering. A pending socket that sends or receives anything through TCP
 * before its peer arrives gives up (SP_TCP) under ss_pending_lock, so the
 * pairing end only ever links sockets whose streams are still empty.
 */
#include <linux/jhash.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <net/tcp.h>

#include "socksplice.h"

DEFINE_SPINLOCK(ss_pending_lock);
struct ss_sock ss_listener_mark;
static DEFINE_HASHTABLE(ss_pending, 12);

static u32 ss_hash(const struct ss_key *k)
{
	return jhash2((const u32 *)k, sizeof(*k) / sizeof(u32), 0);
}

struct ss_sock *ss_of(const struct sock *sk)
{
	/* Ours exactly while one of our protos is installed; readers are the
	 * socket's own syscalls and teardown, never concurrent with free. */
	return (struct ss_sock *)((uintptr_t)rcu_dereference_raw(__sk_user_data(sk)) &
				  SK_USER_DATA_PTRMASK);
}

static struct ss_sock *ss_lookup(const struct ss_key *k)
{
	struct ss_sock *ss;

	hash_for_each_possible(ss_pending, ss, node, ss_hash(k))
		if (!memcmp(&ss->self, k, sizeof(*k)))
			return ss;
	return NULL;
}

static void ss_fill_keys(struct ss_sock *ss, const struct bpf_sock_splice_args *a)
{
	ss->self.netns = a->self_netns;
	memcpy(ss->self.local, a->local_ip, 16);
	memcpy(ss->self.remote, a->remote_ip, 16);
	ss->self.lport = a->local_port;
	ss->self.rport = a->remote_port;
	ss->peer.netns = a->peer_netns;
	memcpy(ss->peer.local, a->remote_ip, 16);
	memcpy(ss->peer.remote, a->local_ip, 16);
	ss->peer.lport = a->remote_port;
	ss->peer.rport = a->local_port;
}

static void ss_install(struct sock *sk, struct ss_sock *ss, int fam, bool passive)
{
	__module_get(THIS_MODULE);
	atomic_long_inc(&ss_live_socks);
	__rcu_assign_sk_user_data_with_flags(sk, ss, SK_USER_DATA_NOCOPY);
	WRITE_ONCE(sk->sk_prot, &ss_fam[fam].prot);
	/* A passive socket's ops came from its prepared listener at accept
	 * (ours already); an active one has its socket now. */
	if (!passive) {
		ss->base_ops = READ_ONCE(sk->sk_socket->ops);
		WRITE_ONCE(sk->sk_socket->ops, &ss_fam[fam].ops);
	}
}

int ss_pair_sock(struct sock *sk, const struct bpf_sock_splice_args *a,
		 bool passive, int fam)
{
	struct tcp_sock *tp = tcp_sk(sk);
	struct ss_sock *ss, *e;
	struct ss_pair *p;

	if (__sk_user_data(sk)) {
		/* Ours: a program on another cgroup level got here first. */
		if (sk->sk_prot == &ss_fam[fam].prot)
			return 1;
		return -EBUSY;	/* someone else's (sockmap, a ULP) */
	}
	/* Payload already moved by TCP: pairing now could reorder it. */
	if (tp->data_segs_in || tp->data_segs_out || tp->bytes_received ||
	    tp->write_seq != tp->snd_nxt)
		return -EALREADY;
	if (passive) {
		if (sk->sk_prot != &ss_fam[fam].listen_prot)
			return -EOPNOTSUPP;	/* listener predates the attach */
	} else {
		if (sk->sk_prot != ss_fam[fam].base_prot || !sk->sk_socket ||
		    READ_ONCE(sk->sk_socket->ops) != ss_fam[fam].base_ops)
			return -EOPNOTSUPP;
	}

	ss = kzalloc(sizeof(*ss), GFP_ATOMIC);
	p = kzalloc(sizeof(*p), GFP_ATOMIC);
	if (ss)
		ss->ring = ss_ring_alloc(a->ring_kib, GFP_ATOMIC);
	if (!ss || !p || !ss->ring) {
		if (ss)
			ss_ring_free(ss->ring);
		kfree(ss);
		kfree(p);
		return -ENOMEM;
	}
	ss->sk = sk;
	ss->base_prot = passive ? ss_fam[fam].base_prot : sk->sk_prot;
	ss->busy_poll_us = min_t(u32, a->busy_poll_us, SS_MAX_BUSY_POLL_US);
	ss_fill_keys(ss, a);

	spin_lock_bh(&ss_pending_lock);
	e = ss_lookup(&ss->peer);
	if (e && !memcmp(&e->peer, &ss->self, sizeof(ss->self))) {
		/* The peer waits: link both. */
		hash_del(&e->node);
		refcount_set(&p->ref, 2);
		spin_lock_init(&p->lock);
		p->sk[0] = e->sk;
		p->sk[1] = sk;
		p->ring[0] = e->ring;
		p->ring[1] = ss->ring;
		e->ring = NULL;
		ss->ring = NULL;
		e->pair = p;
		e->side = 0;
		ss->pair = p;
		ss->side = 1;
		ss->state = SP_PAIRED;
		atomic_long_inc(&ss_live_pairs);
		ss_install(sk, ss, fam, passive);
		/* Publishes pair before state for lockless readers. */
		smp_store_release(&e->state, SP_PAIRED);
		/* A reader blocked while pending waits for this. */
		e->sk->sk_data_ready(e->sk);
		spin_unlock_bh(&ss_pending_lock);
		ss_count(paired, 1);
		return 0;
	}
	if (ss_lookup(&ss->self)) {
		spin_unlock_bh(&ss_pending_lock);
		ss_ring_free(ss->ring);
		kfree(ss);
		kfree(p);
		return -EEXIST;
	}
	ss->state = SP_PENDING;
	hash_add(ss_pending, &ss->node, ss_hash(&ss->self));
	ss_install(sk, ss, fam, passive);
	spin_unlock_bh(&ss_pending_lock);
	kfree(p);
	return 0;
}

/* A pending socket that touches TCP gives up for good. */
void ss_give_up(struct ss_sock *ss)
{
	spin_lock_bh(&ss_pending_lock);
	if (ss->state == SP_PENDING) {
		hash_del(&ss->node);
		ss->state = SP_TCP;
	}
	spin_unlock_bh(&ss_pending_lock);
}

/* The peer socket with a reference, or NULL once it tore down. */
struct sock *ss_peer_get(struct ss_sock *ss)
{
	struct ss_pair *p = ss->pair;
	struct sock *psk;

	spin_lock_bh(&p->lock);
	psk = p->sk[!ss->side];
	if (psk)
		sock_hold(psk);
	spin_unlock_bh(&p->lock);
	return psk;
}

bool ss_peer_gone(struct ss_sock *ss)
{
	return READ_ONCE(ss->pair->gone[!ss->side]);
}

static void ss_pair_put(struct ss_pair *p)
{
	if (refcount_dec_and_test(&p->ref)) {
		atomic_long_dec(&ss_live_pairs);
		ss_ring_free(p->ring[0]);
		ss_ring_free(p->ring[1]);
		kfree(p);
	}
}

/* Idempotent: from close, disconnect and destroy, whichever comes first.
 * Restores TCP's own proto and ops, so nothing of ours runs afterwards.
 * Returns whether bytes the peer sent were left unread in our ring. */
bool ss_teardown(struct sock *sk)
{
	struct ss_sock *ss = ss_of(sk);
	struct ss_pair *p;
	struct sock *psk = NULL;
	bool unread = false;

	if (!ss)
		return false;
	if (ss == &ss_listener_mark) {
		/* A listener: children keep their own module references. */
		int fam = ss_family_of(sk);

		WRITE_ONCE(sk->sk_prot, ss_fam[fam].base_prot);
		if (sk->sk_socket)
			WRITE_ONCE(sk->sk_socket->ops, ss_fam[fam].base_ops);
		rcu_assign_sk_user_data(sk, NULL);
		module_put(THIS_MODULE);
		return false;
	}
	spin_lock_bh(&ss_pending_lock);
	if (ss->state == SP_PENDING)
		hash_del(&ss->node);
	ss->state = SP_TCP;
	spin_unlock_bh(&ss_pending_lock);

	p = ss->pair;
	if (p) {
		spin_lock_bh(&p->lock);
		p->sk[ss->side] = NULL;
		WRITE_ONCE(p->gone[ss->side], true);
		psk = p->sk[!ss->side];
		if (psk)
			sock_hold(psk);
		spin_unlock_bh(&p->lock);
		/* Read after gone is set: a writer that checks gone afterwards
		 * goes to TCP instead, which the reset then answers. */
		unread = ss_ring_avail(p->ring[ss->side]) > 0;
		if (psk) {
			/* A writer blocked on our full ring must see us go. */
			ss_wake_writer(psk);
			sock_put(psk);
		}
		ss_pair_put(p);
	}
	WRITE_ONCE(sk->sk_prot, ss->base_prot);
	if (ss->base_ops && sk->sk_socket)
		WRITE_ONCE(sk->sk_socket->ops, ss->base_ops);
	rcu_assign_sk_user_data(sk, NULL);
	ss_ring_free(ss->ring);
	kfree(ss);
	atomic_long_dec(&ss_live_socks);
	module_put(THIS_MODULE);
	return unread;
}
