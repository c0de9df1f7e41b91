// SPDX-License-Identifier: GPL-2.0
/*
 * The socket operations of a spliced socket. Our struct proto copy takes
 * sendmsg/recvmsg/ioctl and the teardown entry points; our proto_ops copy
 * takes poll and splice_read, which struct proto cannot reach. Everything
 * else is TCP's. A socket that is not (or no longer) paired goes on to
 * TCP's own functions.
 */
#include <asm/ioctls.h>
#include <linux/module.h>
#include <linux/sched/signal.h>
#include <linux/splice.h>
#include <net/inet_common.h>
#include <net/tcp.h>
#include <net/transp_v6.h>

#include "socksplice.h"

struct ss_family ss_fam[SS_NFAM];
static DEFINE_SPINLOCK(ss_fam_lock);

int ss_family_of(struct sock *sk)
{
	return sk->sk_family == AF_INET6 ? SS_INET6 : SS_INET;
}

/*
 * What a syscall uses while it moves bytes: the pair and which side it is.
 * Under the socket's lock the pair is alive: this side's ss_sock holds a
 * reference until its teardown, which needs that lock. A call that sleeps
 * (letting the lock go) takes a reference of its own first, so the rings
 * outlive a teardown that runs meanwhile (a disconnect from another
 * thread, then the peer's close); the fast path and busy-poll take none.
 * The ss_sock itself is not used once the call may have slept.
 */
struct ss_ctx {
	struct ss_pair *p;
	int side;
	u32 busy_poll_us;
	bool held;
};

static void ss_ctx_fill(struct ss_ctx *c, const struct ss_sock *ss, bool held)
{
	c->p = ss->pair;
	c->side = ss->side;
	c->busy_poll_us = ss->busy_poll_us;
	c->held = held;
}

/* With the socket locked. */
static bool ss_enter_locked(struct sock *sk, struct ss_ctx *c)
{
	struct ss_sock *ss = ss_of(sk);

	/* Acquire: pairs with the release in ss_pair_sock (softirq, under
	 * the pending buckets' locks, not ours): pair is set.
	 */
	if (!ss || smp_load_acquire(&ss->state) != SP_PAIRED)
		return false;
	ss_ctx_fill(c, ss, false);
	return true;
}

/* Before the socket lock is let go. */
static void ss_hold(struct ss_ctx *c)
{
	if (!c->held) {
		refcount_inc(&c->p->ref);
		c->held = true;
	}
}

/* Without the socket lock (the urgent-data paths): a reference at once. */
static bool ss_enter(struct sock *sk, struct ss_ctx *c)
{
	struct ss_sock *ss;
	bool ok = false;

	rcu_read_lock();
	ss = ss_of(sk);
	/* Pairs with the release in ss_pair_sock: pair is set. */
	if (ss && smp_load_acquire(&ss->state) == SP_PAIRED &&
	    refcount_inc_not_zero(&ss->pair->ref)) {
		ss_ctx_fill(c, ss, true);
		ok = true;
	}
	rcu_read_unlock();
	return ok;
}

static void ss_leave(struct ss_ctx *c)
{
	if (c->held)
		ss_pair_put(c->p);
}

/* This side tore down while the call slept: the rest is TCP's. */
static bool ss_self_gone(const struct ss_ctx *c)
{
	return READ_ONCE(c->p->gone[c->side]);
}

static bool ss_peer_gone(const struct ss_ctx *c)
{
	return READ_ONCE(c->p->gone[!c->side]);
}

/* The peer socket with a reference, or NULL once it tore down. */
static struct sock *ss_peer_get(const struct ss_ctx *c)
{
	struct sock *psk;

	spin_lock_bh(&c->p->lock);
	psk = c->p->sk[!c->side];
	if (psk)
		sock_hold(psk);
	spin_unlock_bh(&c->p->lock);
	return psk;
}

/* A paired socket's pair, for lockless readers under rcu_read_lock(). */
static struct ss_pair *ss_pair_rcu(struct sock *sk, int *side)
{
	struct ss_sock *ss = ss_of(sk);

	/* Pairs with the release in ss_pair_sock: pair is set. */
	if (!ss || smp_load_acquire(&ss->state) != SP_PAIRED)
		return NULL;
	*side = ss->side;
	return ss->pair;
}

void ss_wake_reader(struct sock *sk)
{
	sk->sk_data_ready(sk);
}

/*
 * How a read or a teardown wakes the other end of the ring (enum
 * ss_wake). SS_WAKE_ROOM: a reader made room. As TCP's
 * sk_stream_write_space, that wakes only a socket that ran out of room
 * (SOCK_NOSPACE: set by a blocked send and by poll) and clears the mark.
 * SS_WAKE_ALL (teardown): whoever sleeps.
 *
 * SS_WAKE_AHEAD: a read drained the ring. The writer that sent what we
 * just read is, in a request/response exchange, a thread asleep in recv
 * waiting for our answer: woken now, it comes out of idle while we work
 * on the answer instead of after it, and the answer finds it awake. It
 * costs that thread a second, short wake-up per message (it finds nothing
 * and sleeps again), and pays: without it sockperf 1 KiB ping-pong between
 * two containers ran at 0.70-0.76 of the rate (kernel/README.md, "Waking
 * the peer"). The key, EPOLLMSG, is an event no poller asks for, so
 * epoll, poll, select and io_uring waiters (which filter on the key) are
 * not woken for nothing; only threads asleep in this module's recv or
 * send (woken_wake_function, which ignores the key) are. Room made for a
 * writer out of it is still announced as SS_WAKE_ROOM does.
 */
void ss_wake_writer(struct sock *sk, enum ss_wake how)
{
	__poll_t key = EPOLLOUT | EPOLLWRNORM | EPOLLWRBAND;
	struct socket_wq *wq;
	struct socket *sock;
	bool nospace;

	rcu_read_lock();
	sock = READ_ONCE(sk->sk_socket);
	/* Pairs with the barrier between a writer's setting SOCK_NOSPACE and
	 * its reading the room (ss_send_ring, ss_poll): the tail we moved is
	 * ordered before the flag's read, so it sees the room or we see it.
	 */
	smp_mb();
	nospace = sock && test_bit(SOCK_NOSPACE, &sock->flags);
	if (nospace && how != SS_WAKE_ALL)
		clear_bit(SOCK_NOSPACE, &sock->flags);
	else if (how == SS_WAKE_AHEAD)
		key = EPOLLMSG;
	else if (how == SS_WAKE_ROOM)
		goto out;
	wq = rcu_dereference(sk->sk_wq);
	/* The smp_mb() above orders it, as wq_has_sleeper() would. */
	if (wq && waitqueue_active(&wq->wait))
		wake_up_interruptible_poll(&wq->wait, key);
	if (nospace)
		sk_wake_async_rcu(sk, SOCK_WAKE_SPACE, POLL_OUT);
out:
	rcu_read_unlock();
}

/*
 * Per message, so without the pair's lock and without a reference: the
 * caller keeps the pair (its socket lock or a reference), and the pair's
 * rings hold both sockets until it is freed. The peer read here may tear
 * down at once; the wake then finds TCP's callbacks or no waiter, a
 * spurious wake at worst, as the locked lookup allowed too.
 */
static struct sock *ss_peer_sk(const struct ss_ctx *c)
{
	/* Our receive ring's writer is the peer. */
	return ss_peer_gone(c) ? NULL : c->p->ring[c->side]->wsk;
}

static void ss_kick_reader(const struct ss_ctx *c)
{
	struct sock *psk = ss_peer_sk(c);

	if (psk)
		ss_wake_reader(psk);
}

/*
 * A wake ahead is only for a thread asleep in the peer's recv. Anything
 * else on the peer's wait queue is a poller, which the wake's key would
 * not reach, and an epoll registration stays on the queue for good: the
 * wake would take the queue's lock and walk it on every message for
 * nothing (sockperf 64 B ping-pong with busy-poll, where neither end
 * sleeps, spent 2-5 % of each end's time there). Without the count a
 * wake ahead that races the peer's going to sleep is lost, which costs
 * only the head start: the answer's own wake still comes.
 */
static void ss_kick_writer(const struct ss_ctx *c, enum ss_wake how)
{
	struct sock *psk = ss_peer_sk(c);

	if (!psk)
		return;
	if (how == SS_WAKE_AHEAD && !atomic_read(&c->p->recv_sleepers[!c->side]))
		how = SS_WAKE_ROOM;
	ss_wake_writer(psk, how);
}

/* ---- send ---- */

/* Copies msg into the peer's ring, waiting for room as TCP waits for
 * memory. Called with the socket locked; returns with it released.
 */
static int ss_send_ring(struct sock *sk, struct ss_ctx *c, struct msghdr *msg,
			size_t len)
{
	DEFINE_WAIT_FUNC(wait, woken_wake_function);
	struct ubuf_info *uarg = NULL;
	struct ss_ring *r = c->p->ring[!c->side];
	int copied = 0, err = 0, n;
	bool kick = false;
	long timeo;

	/* The ring copies, so MSG_ZEROCOPY completes at once, reported as
	 * copied: what TCP reports on loopback.
	 */
	if ((msg->msg_flags & MSG_ZEROCOPY) && sock_flag(sk, SOCK_ZEROCOPY)) {
		uarg = ss_zerocopy_realloc(sk, len);
		if (!uarg) {
			release_sock(sk);
			return -ENOBUFS;
		}
		uarg_to_msgzc(uarg)->zerocopy = 0;
	}
	timeo = sock_sndtimeo(sk, msg->msg_flags & MSG_DONTWAIT);
	/* The buffers that bound the ring are read again unless what is
	 * queued stays within a page, below any limit they can set (not for
	 * small request/response messages), and whenever it is full by the
	 * limit last seen (below).
	 */
	if (ss_ring_queued_over_page(r, len))
		ss_ring_set_limit(r);
	while (msg_data_left(msg)) {
		if (sk->sk_err) {
			err = sock_error(sk);
			break;
		}
		if (sk->sk_shutdown & SEND_SHUTDOWN) {
			err = -EPIPE;
			break;
		}
		if (ss_self_gone(c) || ss_peer_gone(c)) {
			if (!copied) {
				/* TCP gives the right answer: the peer resets, or
				 * this socket was disconnected.
				 */
				if (uarg)
					net_zcopy_put_abort(uarg, true);
				if (!ss_self_gone(c))
					ss_ring_writer_gone(r);
				release_sock(sk);
				return tcp_prot.sendmsg(sk, msg, len);
			}
			break;
		}
		n = ss_ring_write(r, sk, &msg->msg_iter, msg_data_left(msg));
		if (n > 0) {
			copied += n;
			ss_count(ring_bytes, n);
			kick = true;
			continue;
		}
		/* Full by the limit last seen: the buffers may have grown
		 * since (setsockopt, autotuning). Only then is it read again,
		 * off the fast path.
		 */
		if (!n && ss_ring_set_limit(r))
			continue;
		if (n < 0 && n != -ENOBUFS) {
			err = n;
			break;
		}
		/* Ring full, or no socket memory for a page: wait for the
		 * reader or for memory, as TCP waits for memory.
		 */
		if (n == -ENOBUFS)
			ss_count(mem_waits, 1);
		else
			ss_count(ring_full_waits, 1);
		/* Out of room: the reader wakes us (or a poller) once there
		 * is room again. Set also before EAGAIN, as TCP sets it, so an
		 * edge-triggered epoll hears of the room.
		 */
		if (sk->sk_socket) {
			set_bit(SOCK_NOSPACE, &sk->sk_socket->flags);
			/* Pairs with ss_wake_writer: we see the room the
			 * reader made since, or it sees the mark.
			 */
			smp_mb__after_atomic();
		}
		if (!timeo) {
			/* The reader made room before it could see the mark. */
			if (n != -ENOBUFS && ss_ring_free_space(r))
				continue;
			err = -EAGAIN;
			break;
		}
		/* The reader makes room only once it knows what is there. */
		if (kick) {
			ss_kick_reader(c);
			kick = false;
		}
		ss_hold(c);
		add_wait_queue(sk_sleep(sk), &wait);
		if (n == -ENOBUFS) {
			/* Memory frees without a wakeup of ours: retry soon,
			 * as sk_stream_wait_memory does under pressure.
			 */
			long t = min_t(long, timeo, HZ / 20 + 1);

			timeo -= t;
			sk_wait_event(sk, &t, ss_self_gone(c) || ss_peer_gone(c) || sk->sk_err ||
				      (READ_ONCE(sk->sk_shutdown) & SEND_SHUTDOWN), &wait);
			timeo += t;
		} else {
			sk_wait_event(sk, &timeo,
				      ss_ring_free_space(r) || ss_self_gone(c) || ss_peer_gone(c) ||
				      sk->sk_err || (READ_ONCE(sk->sk_shutdown) & SEND_SHUTDOWN),
				      &wait);
		}
		remove_wait_queue(sk_sleep(sk), &wait);
		if (signal_pending(current)) {
			err = sock_intr_errno(timeo);
			break;
		}
		if (!timeo && !ss_ring_free_space(r)) {
			err = -EAGAIN;
			break;
		}
	}
	/* One wake per call for what fitted at once. */
	if (kick)
		ss_kick_reader(c);
	if (uarg) {
		if (copied)
			net_zcopy_put(uarg);
		else
			net_zcopy_put_abort(uarg, true);
	}
	/* In the reader's buffer at once: sent and acknowledged for TCP_INFO. */
	tcp_sk(sk)->bytes_sent += copied;
	tcp_sk(sk)->bytes_acked += copied;
	release_sock(sk);
	if (copied)
		return copied;
	return sk_stream_error(sk, msg->msg_flags, err);
}

static int ss_send_oob(struct sock *sk, struct ss_ctx *c, struct msghdr *msg,
		       size_t len)
{
	struct ss_pair *p = c->p;
	struct iov_iter last;
	struct sock *psk;
	int copied = 0;
	u8 b;

	if (len > 1) {
		/* Everything but the last byte, as a normal send. */
		msg->msg_flags &= ~MSG_OOB;
		last = msg->msg_iter;
		iov_iter_truncate(&msg->msg_iter, len - 1);
		lock_sock(sk);
		copied = ss_send_ring(sk, c, msg, len - 1);
		if (copied < 0 || copied < len - 1)
			return copied;
		iov_iter_advance(&last, len - 1);
		msg->msg_iter = last;
	}
	if (copy_from_iter(&b, 1, &msg->msg_iter) != 1)
		return copied ? copied : -EFAULT;
	/* The peer is held from here on: its flags and wakeups stay valid
	 * even if it tears down now.
	 */
	psk = ss_peer_get(c);
	if (!psk || ss_self_gone(c)) {
		if (psk)
			sock_put(psk);
		return copied ? copied : -EPIPE;
	}
	if (sock_flag(psk, SOCK_URGINLINE)) {
		/* SO_OOBINLINE: the byte is in band. */
		struct kvec v = { .iov_base = &b, .iov_len = 1 };
		struct msghdr m = { .msg_flags = msg->msg_flags & ~MSG_OOB };
		int n;

		iov_iter_kvec(&m.msg_iter, ITER_SOURCE, &v, 1, 1);
		lock_sock(sk);
		n = ss_send_ring(sk, c, &m, 1);
		sock_put(psk);
		if (n < 0)
			return copied ? copied : n;
		return copied + n;
	}
	spin_lock_bh(&p->lock);
	p->urg_byte[!c->side] = b;
	WRITE_ONCE(p->urg_valid[!c->side], true);
	spin_unlock_bh(&p->lock);
	sk_send_sigurg(psk);
	ss_wake_reader(psk);
	sock_put(psk);
	return copied + 1;
}

static int ss_sendmsg(struct sock *sk, struct msghdr *msg, size_t len)
{
	struct ss_sock *ss;
	struct ss_ctx c;
	int ret;

	/* The last byte of an urgent send is TCP's out-of-band byte: the rest
	 * goes into the ring, the byte beside it.
	 */
	if ((msg->msg_flags & MSG_OOB) && len > 0) {
		rcu_read_lock();
		ss = ss_of(sk);
		if (ss && READ_ONCE(ss->state) == SP_PENDING)
			ss_give_up(ss);
		rcu_read_unlock();
		if (!ss_enter(sk, &c))
			return tcp_prot.sendmsg(sk, msg, len);
		if (ss_peer_gone(&c))
			ret = tcp_prot.sendmsg(sk, msg, len);
		else
			ret = ss_send_oob(sk, &c, msg, len);
		ss_leave(&c);
		return ret;
	}
	lock_sock(sk);
	/* A pending socket that sends through TCP gives up for good. */
	ss = ss_of(sk);
	if (ss && READ_ONCE(ss->state) == SP_PENDING)
		ss_give_up(ss);
	if (!ss_enter_locked(sk, &c)) {
		release_sock(sk);
		return tcp_prot.sendmsg(sk, msg, len);
	}
	/* After the peer went, TCP delivers the right error (the peer answers
	 * with RST); what we left in its ring stops counting as ours.
	 */
	if (ss_peer_gone(&c)) {
		ss_ring_writer_gone(c.p->ring[!c.side]);
		release_sock(sk);
		return tcp_prot.sendmsg(sk, msg, len);
	}
	ret = ss_send_ring(sk, &c, msg, len);
	ss_leave(&c);
	return ret;
}

/* ---- receive ---- */

/* Spins until the ring holds more than skip bytes (what a peek already
 * saw), for at most busy_poll_us; gives up at once for a signal, a
 * reschedule or a shutdown. With out (the ring this end writes), *held
 * gets how long the peer had taken in all of it by the end of a spin
 * that found nothing, in ns: 0 if it had not, the whole spin if it had
 * before the spin began.
 */
static bool ss_busy_poll(struct sock *sk, u32 us, struct ss_ring *r, u32 skip,
			 struct ss_ring *out, u64 *held)
{
	u64 now = local_clock(), end = now + (u64)us * NSEC_PER_USEC;
	u64 since = out && ss_ring_used(out) ? 0 : now;

	ss_count(busy_polls, 1);
	for (;;) {
		if (ss_ring_avail(r) > skip) {
			ss_count(busy_poll_hits, 1);
			return true;
		}
		if (signal_pending(current) || need_resched() ||
		    (READ_ONCE(sk->sk_shutdown) & RCV_SHUTDOWN))
			break;
		if (!since && !ss_ring_used(out))
			since = now;
		cpu_relax();
		now = local_clock();
		if (now >= end)
			break;
	}
	if (held)
		*held = since ? now - since : 0;
	return false;
}

/* At most 2^(SS_BP_MAX_MISSES - 1) - 1 blocking reads sleep without a spin. */
#define SS_BP_MAX_MISSES 7

/* What the busy-poll before the socket lock did for a blocking read. */
enum ss_bp {
	SS_BP_NONE,	/* none configured, or the data was there */
	SS_BP_HIT,
	SS_BP_MISS,	/* spun and found nothing */
	SS_BP_SKIP,	/* the adaptation skipped the spin */
};

/* A spin's outcome for the adaptation (below): found data, or a miss
 * that counts.
 */
static void ss_bp_account(struct ss_sock *ss, bool found)
{
	u8 misses;

	if (found) {
		if (READ_ONCE(ss->bp_misses))
			WRITE_ONCE(ss->bp_misses, 0);
		return;
	}
	misses = min_t(u8, READ_ONCE(ss->bp_misses) + 1, SS_BP_MAX_MISSES);
	WRITE_ONCE(ss->bp_misses, misses);
	WRITE_ONCE(ss->bp_skip, (1U << (misses - 1)) - 1);
}

/*
 * As tcp_recvmsg busy-polls before it locks the socket, so does a blocking
 * read of an empty ring: another thread writing to this socket meanwhile
 * is not held up by the spin. rcu_read_lock keeps the pair and its rings
 * (freed after a grace period); the read itself then takes the lock.
 *
 * The spin pays only while the peer answers within the budget. One spin
 * that found nothing (a peer that was descheduled once) changes nothing;
 * after the second in a row the next read sleeps at once, after the third
 * the next 3, then 7, 15, 31 and 63 (busy_poll_skips). A spin that finds
 * data spins in full again. A reader whose peer is idle or slow so spins
 * once in 64 reads, and one whose peer turns fast again is back to
 * spinning within 63 reads.
 *
 * A spin counts as a miss only if the peer had taken in all this end sent
 * for at least half the budget by its end: a peer that did so late in the
 * spin was waking up, not slow to answer. Counting that would let two
 * blocking ends talk each other into sleeping: one that skips its spins
 * sleeps, its wake-up makes the other's spins miss, and so on, where both
 * spinning needs no wake-up at all (sockperf 1 KiB ping-pong with 50 us
 * lost a quarter of its rate to that under emulation). The price: a peer
 * that both wakes late and answers late is spun for on every read.
 */
static enum ss_bp ss_busy_poll_unlocked(struct sock *sk)
{
	enum ss_bp res = SS_BP_NONE;
	struct ss_ring *r, *out;
	struct ss_sock *ss;
	u8 skip;
	u64 held;

	rcu_read_lock();
	ss = ss_of(sk);
	/* Pairs with the release in ss_pair_sock: pair is set. */
	if (ss && smp_load_acquire(&ss->state) == SP_PAIRED && ss->busy_poll_us) {
		r = ss->pair->ring[ss->side];
		out = ss->pair->ring[!ss->side];
		skip = READ_ONCE(ss->bp_skip);
		if (ss_ring_avail(r)) {
			/* Nothing to wait for. */
		} else if (skip) {
			WRITE_ONCE(ss->bp_skip, skip - 1);
			ss_count(busy_poll_skips, 1);
			res = SS_BP_SKIP;
		} else if (ss_busy_poll(sk, ss->busy_poll_us, r, 0, out, &held)) {
			ss_bp_account(ss, true);
			res = SS_BP_HIT;
		} else {
			if (held >= (u64)ss->busy_poll_us * NSEC_PER_USEC / 2)
				ss_bp_account(ss, false);
			res = SS_BP_MISS;
		}
	}
	rcu_read_unlock();
	return res;
}

/*
 * A read that slept and was woken with nothing to read was most likely
 * woken ahead (ss_wake_writer): the peer has taken all this end sent and
 * works on the answer. A second sleep would need a second wake-up, so a
 * busy-polling reader spins for it once more, with the socket unlocked
 * (the caller holds the pair) as before the first sleep. Not after the
 * adaptation skipped the spin (the peer was slow), and at most once per
 * read. The peer had the request for the whole spin, so one that finds
 * nothing counts as a miss.
 */
static void ss_busy_poll_woken(struct sock *sk, struct ss_ctx *c, struct ss_ring *r,
			       u32 skip)
{
	struct ss_sock *ss;
	bool found;

	release_sock(sk);
	found = ss_busy_poll(sk, c->busy_poll_us, r, skip, NULL, NULL);
	lock_sock(sk);
	ss = ss_of(sk);
	/* The same pairing still (the lock keeps it from here on). */
	if (ss && smp_load_acquire(&ss->state) == SP_PAIRED && ss->pair == c->p)
		ss_bp_account(ss, found);
}

/* A pending socket waits for either pairing or TCP data. Called and
 * returns with the socket locked; the ss_sock is looked up again after
 * every sleep, since a disconnect may have freed it.
 */
static int ss_recv_pending(struct sock *sk, long *timeo)
{
	DEFINE_WAIT_FUNC(wait, woken_wake_function);
	struct ss_sock *ss;

	while ((ss = ss_of(sk)) && READ_ONCE(ss->state) == SP_PENDING) {
		if (!skb_queue_empty(&sk->sk_receive_queue) || sk->sk_err ||
		    (sk->sk_shutdown & RCV_SHUTDOWN)) {
			ss_give_up(ss);
			return 0;
		}
		if (!*timeo)
			return -EAGAIN;	/* still pending: pairing wakes pollers */
		add_wait_queue(sk_sleep(sk), &wait);
		sk_wait_event(sk, timeo,
			      READ_ONCE(ss->state) != SP_PENDING ||
			      !skb_queue_empty(&sk->sk_receive_queue) || sk->sk_err ||
			      (READ_ONCE(sk->sk_shutdown) & RCV_SHUTDOWN), &wait);
		remove_wait_queue(sk_sleep(sk), &wait);
		if (signal_pending(current))
			return sock_intr_errno(*timeo);
	}
	return 0;
}

/* recv(MSG_OOB): the urgent byte once, EINVAL when there is none, as
 * TCP answers.
 */
static int ss_recv_oob(struct sock *sk, const struct ss_ctx *c, struct msghdr *msg,
		       size_t len, int flags)
{
	struct ss_pair *p = c->p;
	bool have;
	u8 b = 0;

	if (sock_flag(sk, SOCK_URGINLINE) || !len)
		return -EINVAL;
	spin_lock_bh(&p->lock);
	have = p->urg_valid[c->side];
	if (have) {
		b = p->urg_byte[c->side];
		if (!(flags & MSG_PEEK))
			p->urg_valid[c->side] = false;
	}
	spin_unlock_bh(&p->lock);
	if (!have)
		return -EINVAL;
	if (copy_to_iter(&b, 1, &msg->msg_iter) != 1)
		return -EFAULT;
	msg->msg_flags |= MSG_OOB;
	return 1;
}

/* Called with the socket locked; returns with it released. *inq: what
 * stays readable, for TCP_INQ.
 */
static int ss_recv_ring(struct sock *sk, struct ss_ctx *c, struct msghdr *msg,
			size_t len, int flags, long timeo, enum ss_bp bp, int *inq)
{
	DEFINE_WAIT_FUNC(wait, woken_wake_function);
	struct ss_ring *r = c->p->ring[c->side];
	bool missed = bp == SS_BP_MISS || bp == SS_BP_SKIP;
	bool woken_spin = c->busy_poll_us && bp != SS_BP_SKIP;
	bool peek = flags & MSG_PEEK, kick = false, trim;
	int copied = 0, err = 0, n, target;
	u32 skip = 0;

	target = sock_rcvlowat(sk, flags & MSG_WAITALL, len);
	if (peek)
		skip = max(sk_peek_offset(sk, flags), 0);	/* SO_PEEK_OFF */
	while (copied < len) {
		if (ss_self_gone(c)) {
			/* Disconnected meanwhile: TCP answers the rest. */
			err = copied ? 0 : -ENOTCONN;
			break;
		}
		/* MSG_TRUNC: TCP discards (or, peeking, counts) without copying. */
		n = ss_ring_read(r, (flags & MSG_TRUNC) ? NULL : &msg->msg_iter,
				 len - copied, peek ? skip + copied : 0, peek);
		if (n > 0) {
			copied += n;
			kick = !peek;
			continue;
		}
		if (n < 0) {
			err = n;
			break;
		}
		if (copied >= target)
			break;
		if (sk->sk_err) {
			err = sock_error(sk);
			break;
		}
		if (READ_ONCE(sk->sk_shutdown) & RCV_SHUTDOWN) {
			/* FIN follows every byte the peer put in the ring. */
			if (ss_ring_avail(r) <= (peek ? skip + copied : 0))
				break;
			continue;
		}
		if (!timeo) {
			err = -EAGAIN;
			break;
		}
		if (signal_pending(current)) {
			err = sock_intr_errno(timeo);
			break;
		}
		/* A writer waiting for room gets it before we wait for data. */
		if (kick && ss_ring_writable(r)) {
			ss_kick_writer(c, SS_WAKE_ROOM);
			kick = false;
		}
		/* Once a spin of this read found nothing, or the read skipped
		 * it (ss_busy_poll_unlocked), it sleeps; woken with nothing to
		 * read, it spins once more (ss_busy_poll_woken). Later spins
		 * (MSG_WAITALL, SO_RCVLOWAT, a peek past what is there) keep
		 * the socket locked: no teardown can run, and the fast path
		 * needs no reference on the pair. They are short (at most
		 * SS_MAX_BUSY_POLL_US) and end on need_resched; what TCP
		 * queued meanwhile (a FIN) waits in the backlog.
		 */
		if (c->busy_poll_us && !missed) {
			if (ss_busy_poll(sk, c->busy_poll_us, r, peek ? skip + copied : 0,
					 NULL, NULL))
				continue;
			missed = true;
		}
		ss_hold(c);
		add_wait_queue(sk_sleep(sk), &wait);
		atomic_inc(&c->p->recv_sleepers[c->side]);
		sk_wait_event(sk, &timeo,
			      ss_ring_avail(r) > (peek ? skip + copied : 0) || sk->sk_err ||
			      ss_self_gone(c) ||
			      (READ_ONCE(sk->sk_shutdown) & RCV_SHUTDOWN), &wait);
		atomic_dec(&c->p->recv_sleepers[c->side]);
		remove_wait_queue(sk_sleep(sk), &wait);
		if (woken_spin && timeo && !sk->sk_err && !ss_self_gone(c) &&
		    !(READ_ONCE(sk->sk_shutdown) & RCV_SHUTDOWN) && !signal_pending(current) &&
		    ss_ring_avail(r) <= (peek ? skip + copied : 0)) {
			woken_spin = false;
			ss_busy_poll_woken(sk, c, r, peek ? skip + copied : 0);
		}
	}
	if (peek) {
		sk_peek_offset_fwd(sk, copied);
	} else if (copied) {
		sk_peek_offset_bwd(sk, copied);
		tcp_sk(sk)->bytes_received += copied;
	}
	/* A writer out of room only when TCP would call it writable again;
	 * and once we took all there was, whoever waits for our answer
	 * (ss_wake_writer).
	 */
	*inq = ss_ring_avail(r);
	if (kick && !*inq)
		ss_kick_writer(c, SS_WAKE_AHEAD);
	else if (kick && ss_ring_writable(r))
		ss_kick_writer(c, SS_WAKE_ROOM);
	trim = !peek && ss_ring_reader_should_trim(r);
	if (trim)
		ss_hold(c);
	release_sock(sk);
	/* Takes the writer's lock: only with ours let go. */
	if (trim)
		ss_ring_reader_trim(r);
	if (copied)
		return copied;
	return err;
}

/* What tcp_recvmsg adds after the bytes: TCP_INQ's count and the
 * receive timestamp (the ring keeps no arrival time: the time of the
 * read, as a reader that polls and reads at once would see).
 */
static void ss_recv_cmsgs(struct sock *sk, int avail, struct msghdr *msg)
{
	bool inq = tcp_sk(sk)->recvmsg_inq;
	struct timespec64 ts;

	if (inq || msg->msg_get_inq) {
		msg->msg_get_inq = 1;
		msg->msg_inq = avail;
		if (inq)
			put_cmsg(msg, SOL_TCP, TCP_CM_INQ, sizeof(msg->msg_inq), &msg->msg_inq);
	}
	if (!sock_flag(sk, SOCK_RCVTSTAMP))
		return;
	ktime_get_real_ts64(&ts);
	if (sock_flag(sk, SOCK_RCVTSTAMPNS)) {
		if (sock_flag(sk, SOCK_TSTAMP_NEW)) {
			struct __kernel_timespec k = { .tv_sec = ts.tv_sec, .tv_nsec = ts.tv_nsec };

			put_cmsg(msg, SOL_SOCKET, SO_TIMESTAMPNS_NEW, sizeof(k), &k);
		} else {
			struct __kernel_old_timespec k = { .tv_sec = ts.tv_sec,
							   .tv_nsec = ts.tv_nsec };

			put_cmsg(msg, SOL_SOCKET, SO_TIMESTAMPNS_OLD, sizeof(k), &k);
		}
	} else if (sock_flag(sk, SOCK_TSTAMP_NEW)) {
		struct __kernel_sock_timeval k = { .tv_sec = ts.tv_sec,
						   .tv_usec = ts.tv_nsec / NSEC_PER_USEC };

		put_cmsg(msg, SOL_SOCKET, SO_TIMESTAMP_NEW, sizeof(k), &k);
	} else {
		struct __kernel_old_timeval k = { .tv_sec = ts.tv_sec,
						  .tv_usec = ts.tv_nsec / NSEC_PER_USEC };

		put_cmsg(msg, SOL_SOCKET, SO_TIMESTAMP_OLD, sizeof(k), &k);
	}
}

static int ss_recvmsg(struct sock *sk, struct msghdr *msg, size_t len,
		      int flags, int *addr_len)
{
	enum ss_bp bp = SS_BP_NONE;
	struct ss_sock *ss;
	struct ss_ctx c;
	int ret, inq;
	long timeo;

	if (flags & MSG_ERRQUEUE)
		return ss_tcp_recvmsg(sk, msg, len, flags, addr_len);
	if (flags & MSG_OOB) {
		if (!ss_enter(sk, &c))
			return ss_tcp_recvmsg(sk, msg, len, flags, addr_len);
		ret = ss_recv_oob(sk, &c, msg, len, flags);
		ss_leave(&c);
		return ret;
	}
	timeo = sock_rcvtimeo(sk, flags & MSG_DONTWAIT);
	/* A peek may need more than the first byte: it spins locked. */
	if (timeo && !(flags & MSG_PEEK))
		bp = ss_busy_poll_unlocked(sk);
	lock_sock(sk);
	ss = ss_of(sk);
	if (ss && ss->state == SP_PENDING) {
		ret = ss_recv_pending(sk, &timeo);
		if (ret) {
			release_sock(sk);
			return ret;
		}
	}
	if (!ss_enter_locked(sk, &c)) {
		release_sock(sk);
		return ss_tcp_recvmsg(sk, msg, len, flags, addr_len);
	}
	ret = ss_recv_ring(sk, &c, msg, len, flags, timeo, bp, &inq);
	if (ret >= 0)
		ss_recv_cmsgs(sk, inq, msg);
	ss_leave(&c);
	if (ret == -ENOTCONN)
		return ss_tcp_recvmsg(sk, msg, len, flags, addr_len);
	return ret;
}

static int ss_ioctl(struct sock *sk, int cmd, int *karg)
{
	struct ss_pair *p;
	int side;

	rcu_read_lock();
	p = ss_pair_rcu(sk, &side);
	if (!p) {
		rcu_read_unlock();
		return tcp_prot.ioctl(sk, cmd, karg);
	}
	switch (cmd) {
	case SIOCINQ:
		*karg = ss_ring_avail(p->ring[side]);
		break;
	case SIOCOUTQ:
	case SIOCOUTQNSD:
		/* Bytes within the reader's receive buffer have reached it:
		 * TCP counts them neither as unacknowledged nor as unsent.
		 * What lies beyond it, TCP would still hold unsent.
		 */
		*karg = ss_ring_unsent(p->ring[!side]);
		break;
	default:
		rcu_read_unlock();
		return tcp_prot.ioctl(sk, cmd, karg);
	}
	rcu_read_unlock();
	return 0;
}

/* tcp_poll asks this when TCP's own queue is not readable: honour
 * SO_RCVLOWAT as TCP does for its queue.
 */
static bool ss_sock_is_readable(struct sock *sk)
{
	struct ss_pair *p;
	bool ret = false;
	int side;

	rcu_read_lock();
	p = ss_pair_rcu(sk, &side);
	if (p)
		ret = ss_ring_avail(p->ring[side]) >= max_t(int, READ_ONCE(sk->sk_rcvlowat), 1);
	rcu_read_unlock();
	return ret;
}

/* ---- options that take the byte stream elsewhere ---- */

static void ss_drop_creator(struct sock *sk, int fam);

/*
 * A ULP (kTLS) reads and writes TCP's queues itself and builds its proto
 * tables from the socket's proto; repair mode dumps and restores TCP's
 * queues. A socket that is not paired leaves our proto before the option
 * applies, so they see TCP's own; a paired socket refuses (EBUSY), as its
 * bytes are in the rings, where neither could follow them.
 */
static bool ss_stream_option(int level, int optname)
{
	return level == SOL_TCP &&
	       (optname == TCP_ULP || optname == TCP_REPAIR || optname == TCP_REPAIR_QUEUE ||
		optname == TCP_QUEUE_SEQ || optname == TCP_REPAIR_OPTIONS ||
		optname == TCP_REPAIR_WINDOW);
}

static int ss_leave_proto(struct sock *sk)
{
	int fam = ss_family_of(sk);
	struct ss_sock *ss;
	int err = 0;

	lock_sock(sk);
	ss = ss_of(sk);
	if (ss && ss->state == SP_PAIRED) {
		err = -EBUSY;
	} else if (ss_proto_ours(sk->sk_prot)) {
		ss_teardown(sk);
		WRITE_ONCE(sk->sk_prot, ss_fam[fam].base_prot);
		ss_drop_creator(sk, fam);
	}
	release_sock(sk);
	return err;
}

/*
 * A ULP (kTLS) puts its own proto_ops on the file, so __sock_release would
 * never drop the module reference that came with ours. The socket's
 * creator proto takes it over instead (sk_prot_free drops it), as a
 * prepared listener's child holds one.
 */
static void ss_adopt_ops_ref(struct sock *sk, int fam)
{
	lock_sock(sk);
	if (sk->sk_socket && READ_ONCE(sk->sk_socket->ops) != &ss_fam[fam].ops &&
	    sk->sk_prot_creator == ss_fam[fam].base_prot)
		sk->sk_prot_creator = &ss_fam[fam].prot;
	release_sock(sk);
}

static int ss_setsockopt(struct sock *sk, int level, int optname, sockptr_t optval,
			 unsigned int optlen)
{
	int fam = ss_family_of(sk), err;
	struct proto *base = ss_fam[fam].base_prot;

	if (!ss_stream_option(level, optname))
		return base->setsockopt(sk, level, optname, optval, optlen);
	err = ss_leave_proto(sk);
	if (err)
		return err;
	err = base->setsockopt(sk, level, optname, optval, optlen);
	ss_adopt_ops_ref(sk, fam);
	return err;
}

/* TCP_ZEROCOPY_RECEIVE maps TCP's queue, which a paired socket does not
 * use: refused as MPTCP refuses it (EOPNOTSUPP), so the reader copies.
 */
static int ss_getsockopt(struct sock *sk, int level, int optname, char __user *optval,
			 int __user *optlen)
{
	struct proto *base = ss_fam[ss_family_of(sk)].base_prot;

	if (level == SOL_TCP && optname == TCP_ZEROCOPY_RECEIVE) {
		struct ss_pair *p;
		int side;

		rcu_read_lock();
		p = ss_pair_rcu(sk, &side);
		rcu_read_unlock();
		if (p)
			return -EOPNOTSUPP;
	}
	return base->getsockopt(sk, level, optname, optval, optlen);
}

/* ---- teardown entry points ---- */

/*
 * A prepared listener's child holds the module through its creator proto
 * (sk_prot_alloc) until it is freed, and a TIME_WAIT socket made from it
 * would hold it for another 60 s. Once the child runs as plain TCP, give
 * it TCP's own creator and drop that reference. Only from a syscall on its
 * file: the file's reference (our proto_ops) keeps the module until this
 * code has returned.
 */
static void ss_drop_creator(struct sock *sk, int fam)
{
	if (sk->sk_prot_creator != &ss_fam[fam].prot || !in_task() || !sk->sk_socket ||
	    READ_ONCE(sk->sk_socket->ops) != &ss_fam[fam].ops)
		return;
	sk->sk_prot_creator = ss_fam[fam].base_prot;
	module_put(THIS_MODULE);
}

static void ss_close(struct sock *sk, long timeout)
{
	int fam = ss_family_of(sk);
	struct proto *base = ss_fam[fam].base_prot;

	lock_sock(sk);
	/* TCP resets a connection closed with received data unread
	 * (tcp_close, RFC 2525) and our ring is received data it cannot see:
	 * linger 0 takes tcp_close down the same reset path. Nobody can read
	 * the option any more: the file is gone.
	 */
	if (ss_teardown(sk)) {
		sock_set_flag(sk, SOCK_LINGER);
		WRITE_ONCE(sk->sk_lingertime, 0);
	}
	/* A child of a prepared listener that never paired still has our
	 * proto; TCP's own closes it.
	 */
	WRITE_ONCE(sk->sk_prot, base);
	ss_drop_creator(sk, fam);
	release_sock(sk);
	base->close(sk, timeout);
}

/* Under the socket's lock: connect(AF_UNSPEC), or a listener's close for
 * a child it never handed out.
 */
static int ss_disconnect(struct sock *sk, int flags)
{
	int fam = ss_family_of(sk);
	struct proto *base = ss_fam[fam].base_prot;

	ss_teardown(sk);
	WRITE_ONCE(sk->sk_prot, base);
	ss_drop_creator(sk, fam);
	return base->disconnect(sk, flags);
}

/*
 * Under the socket's lock, from shutdown(2) on the file. A FIN sent now
 * can meet the peer's before close(), and tcp_fin turns the socket into a
 * TIME_WAIT one in softirq, made from its creator proto: a prepared
 * listener's child must have TCP's creator by then, as ss_close gives it.
 */
static void ss_shutdown(struct sock *sk, int how)
{
	int fam = ss_family_of(sk);

	ss_drop_creator(sk, fam);
	ss_fam[fam].base_prot->shutdown(sk, how);
}

static void ss_destroy(struct sock *sk)
{
	struct proto *base = ss_fam[ss_family_of(sk)].base_prot;

	ss_teardown(sk);
	base->destroy(sk);
}

/* ---- proto_ops ---- */

static __poll_t ss_poll(struct file *file, struct socket *sock, poll_table *wait)
{
	struct sock *sk = sock->sk;
	__poll_t mask = tcp_poll(file, sock, wait);
	struct ss_ring *w;
	struct ss_pair *p;
	int side;

	rcu_read_lock();
	p = ss_pair_rcu(sk, &side);
	if (!p)
		goto out;
	if (ss_ring_avail(p->ring[side]) >= max_t(int, READ_ONCE(sk->sk_rcvlowat), 1))
		mask |= EPOLLIN | EPOLLRDNORM;
	if (READ_ONCE(p->urg_valid[side]))
		mask |= EPOLLPRI;
	if (!READ_ONCE(p->gone[!side]) && !(READ_ONCE(sk->sk_shutdown) & SEND_SHUTDOWN)) {
		w = p->ring[!side];
		if (ss_ring_writable(w)) {
			mask |= EPOLLOUT | EPOLLWRNORM;
		} else {
			mask &= ~(EPOLLOUT | EPOLLWRNORM);
			set_bit(SOCK_NOSPACE, &sock->flags);
			/* The reader may have freed space since the check. */
			smp_mb__after_atomic();
			if (ss_ring_writable(w))
				mask |= EPOLLOUT | EPOLLWRNORM;
		}
	}
out:
	rcu_read_unlock();
	return mask;
}

static ssize_t ss_splice_read(struct socket *sock, loff_t *ppos,
			      struct pipe_inode_info *pipe, size_t len,
			      unsigned int flags)
{
	struct ss_sock *ss;
	bool ours;

	rcu_read_lock();
	ss = ss_of(sock->sk);
	ours = ss && (READ_ONCE(ss->state) == SP_PAIRED || READ_ONCE(ss->state) == SP_PENDING);
	rcu_read_unlock();
	/* Through recvmsg, which knows the ring (and a pending socket). */
	if (ours)
		return copy_splice_read(sock->file, ppos, pipe, len, flags);
	return ss_fam[ss_family_of(sock->sk)].base_ops->splice_read(sock, ppos, pipe, len, flags);
}

#ifndef SS_RECVMSG_ADDR_LEN
static int ss_recvmsg_noaddr(struct sock *sk, struct msghdr *msg, size_t len, int flags)
{
	int addr_len = 0;

	return ss_recvmsg(sk, msg, len, flags, &addr_len);
}
#endif

/* ---- building the copies ---- */

static void ss_build(struct ss_family *f)
{
	f->prot = *f->base_prot;
	f->prot.sendmsg = ss_sendmsg;
#ifdef SS_RECVMSG_ADDR_LEN
	f->prot.recvmsg = ss_recvmsg;
#else
	f->prot.recvmsg = ss_recvmsg_noaddr;
#endif
	f->prot.ioctl = ss_ioctl;
	f->prot.setsockopt = ss_setsockopt;
	f->prot.getsockopt = ss_getsockopt;
	f->prot.sock_is_readable = ss_sock_is_readable;
	f->prot.close = ss_close;
	f->prot.disconnect = ss_disconnect;
	f->prot.shutdown = ss_shutdown;
	f->prot.destroy = ss_destroy;
	/* Children of a prepared listener are cloned with this proto, which
	 * takes a module reference per child (sk_prot_alloc). The overrides
	 * hand over to TCP for a socket that is not paired.
	 */
	f->prot.owner = THIS_MODULE;

	f->ops = *f->base_ops;
	f->ops.poll = ss_poll;
	f->ops.splice_read = ss_splice_read;
	f->ops.owner = THIS_MODULE;
}

/* The first socket of a family gives us TCP's proto_ops for it (IPv6's
 * are not exported).
 */
int ss_prepare_family(struct sock *sk, int fam)
{
	struct proto *want = fam == SS_INET6 ? &tcpv6_prot : &tcp_prot;
	struct ss_family *f = &ss_fam[fam];
	const struct proto_ops *ops;

	if (smp_load_acquire(&f->ready))	/* the copies below are built */
		return 0;
	if (sk->sk_prot != want || !sk->sk_socket)
		return -EOPNOTSUPP;
	ops = READ_ONCE(sk->sk_socket->ops);
	if (ops->family != (fam == SS_INET6 ? PF_INET6 : PF_INET) || ops->poll != tcp_poll)
		return -EOPNOTSUPP;
	spin_lock_bh(&ss_fam_lock);
	if (!f->ready) {
		f->base_prot = want;
		f->base_ops = ops;
		ss_build(f);
		smp_store_release(&f->ready, true);	/* after the copies */
	}
	spin_unlock_bh(&ss_fam_lock);
	return 0;
}

/*
 * Our proto_ops on the socket's file, once, with the module reference that
 * __sock_release drops after the release (our close) has returned. The
 * file is held meanwhile, so a close that races the handshake releases the
 * socket after this and drops the reference it took.
 */
int ss_take_ops(struct sock *sk, int fam)
{
	struct socket *sock = sk->sk_socket;
	const struct proto_ops *ops = READ_ONCE(sock->ops);
	struct file *file;

	if (ops == &ss_fam[fam].ops)
		return 0;
	if (ops != ss_fam[fam].base_ops)
		return -EOPNOTSUPP;
	file = sock->file ? get_file_active(&sock->file) : NULL;
	if (!file)
		return -EBADF;	/* a kernel socket, or one being released */
	__module_get(THIS_MODULE);
	WRITE_ONCE(sock->ops, &ss_fam[fam].ops);
	fput(file);
	return 0;
}

/* Accepted sockets inherit the listener's proto_ops (do_accept, with a
 * module reference), and children its proto (sk_clone_lock): preparing
 * the listener is how a passive socket gets our poll and splice_read
 * before it exists. Called at listen(), with the socket locked.
 */
int ss_prepare_listener(struct sock *sk)
{
	int fam = ss_family_of(sk), err;

	err = ss_prepare_family(sk, fam);
	if (err)
		return err;
	if (ss_of(sk) == &ss_listener_mark)
		return 1;	/* a program on another cgroup level did it */
	if (__sk_user_data(sk) || sk->sk_prot != ss_fam[fam].base_prot)
		return -EBUSY;
	err = ss_take_ops(sk, fam);
	if (err)
		return err;
	rcu_assign_sk_user_data(sk, &ss_listener_mark);
	WRITE_ONCE(sk->sk_prot, &ss_fam[fam].prot);
	return 0;
}
