// SPDX-License-Identifier: GPL-2.0
/*
 * The socket operations of a spliced socket. Our struct proto copy takes
 * sendmsg/recvmsg/ioctl and the teardown entry points; our proto_ops copy
 * takes poll and splice_read, which struct proto cannot reach. Everything
 * else is TCP's. A socket that is not (or no longer) paired falls through
 * to TCP's own functions.
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

static struct ss_sock *ss_paired(struct sock *sk)
{
	struct ss_sock *ss = ss_of(sk);

	if (ss && ss != &ss_listener_mark && smp_load_acquire(&ss->state) == SP_PAIRED)
		return ss;
	return NULL;
}

void ss_wake_reader(struct sock *sk)
{
	sk->sk_data_ready(sk);
}

void ss_wake_writer(struct sock *sk)
{
	struct socket_wq *wq;

	rcu_read_lock();
	wq = rcu_dereference(sk->sk_wq);
	if (skwq_has_sleeper(wq))
		wake_up_interruptible_poll(&wq->wait, EPOLLOUT | EPOLLWRNORM | EPOLLWRBAND);
	if (sk->sk_socket && test_bit(SOCK_NOSPACE, &sk->sk_socket->flags))
		sk_wake_async_rcu(sk, SOCK_WAKE_SPACE, POLL_OUT);
	rcu_read_unlock();
}

static void ss_kick_peer(struct ss_sock *ss, bool reader)
{
	struct sock *psk = ss_peer_get(ss);

	if (!psk)
		return;
	if (reader)
		ss_wake_reader(psk);
	else
		ss_wake_writer(psk);
	sock_put(psk);
}

/* ---- send ---- */

/* Copies msg into the peer's ring, waiting for room as TCP waits for
 * memory. */
static int ss_send_ring(struct sock *sk, struct ss_sock *ss, struct msghdr *msg, size_t len)
{
	DEFINE_WAIT_FUNC(wait, woken_wake_function);
	struct ubuf_info *uarg = NULL;
	struct ss_ring *r;
	int copied = 0, err = 0, n;
	long timeo;

	r = ss->pair->ring[!ss->side];
	lock_sock(sk);
	/* The ring copies, so MSG_ZEROCOPY completes at once, reported as
	 * copied: what TCP reports on loopback. */
	if ((msg->msg_flags & MSG_ZEROCOPY) && sock_flag(sk, SOCK_ZEROCOPY)) {
		uarg = ss_zerocopy_realloc(sk, len);
		if (!uarg) {
			release_sock(sk);
			return -ENOBUFS;
		}
		uarg_to_msgzc(uarg)->zerocopy = 0;
	}
	timeo = sock_sndtimeo(sk, msg->msg_flags & MSG_DONTWAIT);
	while (msg_data_left(msg)) {
		if (sk->sk_err) {
			err = sock_error(sk);
			break;
		}
		if (sk->sk_shutdown & SEND_SHUTDOWN) {
			err = -EPIPE;
			break;
		}
		if (ss_peer_gone(ss)) {
			if (!copied) {
				if (uarg)
					net_zcopy_put_abort(uarg, true);
				release_sock(sk);
				return tcp_prot.sendmsg(sk, msg, len);
			}
			break;
		}
		n = ss_ring_write(r, &msg->msg_iter, msg_data_left(msg));
		if (n > 0) {
			copied += n;
			ss_count(ring_bytes, n);
			ss_kick_peer(ss, true);
			continue;
		}
		if (n < 0) {
			err = n;
			break;
		}
		/* Ring full: wait for the reader, as TCP waits for memory. */
		ss_count(ring_full_waits, 1);
		if (!timeo) {
			err = -EAGAIN;
			break;
		}
		if (sk->sk_socket)
			set_bit(SOCK_NOSPACE, &sk->sk_socket->flags);
		add_wait_queue(sk_sleep(sk), &wait);
		sk_wait_event(sk, &timeo,
			      ss_ring_free_space(r) || ss_peer_gone(ss) || sk->sk_err ||
			      (READ_ONCE(sk->sk_shutdown) & SEND_SHUTDOWN), &wait);
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
	if (uarg) {
		if (copied)
			net_zcopy_put(uarg);
		else
			net_zcopy_put_abort(uarg, true);
	}
	release_sock(sk);
	if (copied)
		return copied;
	return sk_stream_error(sk, msg->msg_flags, err);
}

static int ss_send_oob(struct sock *sk, struct ss_sock *ss, struct msghdr *msg, size_t len)
{
	struct ss_pair *p = ss->pair;
	struct iov_iter last;
	struct sock *psk;
	int copied = 0;
	u8 b;

	if (len > 1) {
		/* Everything but the last byte, as a normal send. */
		msg->msg_flags &= ~MSG_OOB;
		last = msg->msg_iter;
		iov_iter_truncate(&msg->msg_iter, len - 1);
		copied = ss_send_ring(sk, ss, msg, len - 1);
		if (copied < 0 || copied < len - 1)
			return copied;
		iov_iter_advance(&last, len - 1);
		msg->msg_iter = last;
	}
	if (copy_from_iter(&b, 1, &msg->msg_iter) != 1)
		return copied ? copied : -EFAULT;
	psk = ss_peer_get(ss);
	if (!psk)
		return copied ? copied : -EPIPE;
	if (sock_flag(psk, SOCK_URGINLINE)) {
		/* SO_OOBINLINE: the byte is in band. */
		struct kvec v = { .iov_base = &b, .iov_len = 1 };
		struct msghdr m = { .msg_flags = msg->msg_flags & ~MSG_OOB };
		int n;

		iov_iter_kvec(&m.msg_iter, ITER_SOURCE, &v, 1, 1);
		n = ss_send_ring(sk, ss, &m, 1);
		sock_put(psk);
		if (n < 0)
			return copied ? copied : n;
		return copied + n;
	}
	spin_lock_bh(&p->lock);
	p->urg_byte[!ss->side] = b;
	WRITE_ONCE(p->urg_valid[!ss->side], true);
	spin_unlock_bh(&p->lock);
	sk_send_sigurg(psk);
	ss_wake_reader(psk);
	sock_put(psk);
	return copied + 1;
}

static int ss_sendmsg(struct sock *sk, struct msghdr *msg, size_t len)
{
	struct ss_sock *ss = ss_of(sk);

	if (ss == &ss_listener_mark)
		ss = NULL;
	if (ss && READ_ONCE(ss->state) == SP_PENDING)
		ss_give_up(ss);
	ss = ss_paired(sk);
	/* After the peer went, TCP delivers the right error (the peer answers
	 * with RST). */
	if (!ss || ss_peer_gone(ss))
		return tcp_prot.sendmsg(sk, msg, len);
	/* The last byte of an urgent send is TCP's out-of-band byte: the rest
	 * goes into the ring, the byte beside it. */
	if ((msg->msg_flags & MSG_OOB) && len > 0)
		return ss_send_oob(sk, ss, msg, len);

	return ss_send_ring(sk, ss, msg, len);
}

/* ---- receive ---- */

static bool ss_busy_poll(struct ss_sock *ss, struct ss_ring *r)
{
	u64 end = local_clock() + (u64)ss->busy_poll_us * NSEC_PER_USEC;

	ss_count(busy_polls, 1);
	do {
		if (ss_ring_avail(r)) {
			ss_count(busy_poll_hits, 1);
			return true;
		}
		if (signal_pending(current) || need_resched() ||
		    (READ_ONCE(ss->sk->sk_shutdown) & RCV_SHUTDOWN))
			return false;
		cpu_relax();
	} while (local_clock() < end);
	return false;
}

/* A pending socket waits for either pairing or TCP data. */
static int ss_recv_pending(struct sock *sk, struct ss_sock *ss, int flags, long *timeo)
{
	DEFINE_WAIT_FUNC(wait, woken_wake_function);
	int err = 0;

	lock_sock(sk);
	while (READ_ONCE(ss->state) == SP_PENDING) {
		if (!skb_queue_empty(&sk->sk_receive_queue) || sk->sk_err ||
		    (sk->sk_shutdown & RCV_SHUTDOWN)) {
			release_sock(sk);
			ss_give_up(ss);
			return 0;
		}
		if (!*timeo) {
			err = -EAGAIN;	/* still pending: pairing wakes pollers */
			break;
		}
		add_wait_queue(sk_sleep(sk), &wait);
		sk_wait_event(sk, timeo,
			      READ_ONCE(ss->state) != SP_PENDING ||
			      !skb_queue_empty(&sk->sk_receive_queue) || sk->sk_err ||
			      (READ_ONCE(sk->sk_shutdown) & RCV_SHUTDOWN), &wait);
		remove_wait_queue(sk_sleep(sk), &wait);
		if (signal_pending(current)) {
			err = sock_intr_errno(*timeo);
			break;
		}
	}
	release_sock(sk);
	return err;
}

/* recv(MSG_OOB): the urgent byte once, EINVAL when there is none, as
 * TCP answers. */
static int ss_recv_oob(struct sock *sk, struct ss_sock *ss, struct msghdr *msg,
		       size_t len, int flags)
{
	struct ss_pair *p = ss->pair;
	bool have;
	u8 b = 0;

	if (sock_flag(sk, SOCK_URGINLINE) || !len)
		return -EINVAL;
	spin_lock_bh(&p->lock);
	have = p->urg_valid[ss->side];
	if (have) {
		b = p->urg_byte[ss->side];
		if (!(flags & MSG_PEEK))
			p->urg_valid[ss->side] = false;
	}
	spin_unlock_bh(&p->lock);
	if (!have)
		return -EINVAL;
	if (copy_to_iter(&b, 1, &msg->msg_iter) != 1)
		return -EFAULT;
	msg->msg_flags |= MSG_OOB;
	return 1;
}

static int ss_recvmsg(struct sock *sk, struct msghdr *msg, size_t len,
		      int flags, int *addr_len)
{
	struct ss_sock *ss = ss_of(sk);
	DEFINE_WAIT_FUNC(wait, woken_wake_function);
	bool peek = flags & MSG_PEEK;
	int copied = 0, err = 0, n, target;
	struct ss_ring *r;
	long timeo;

	if (ss == &ss_listener_mark)
		ss = NULL;
	if (flags & MSG_ERRQUEUE)
		return ss_tcp_recvmsg(sk, msg, len, flags, addr_len);
	if (flags & MSG_OOB) {
		struct ss_sock *ps = ss_paired(sk);

		if (!ps)
			return ss_tcp_recvmsg(sk, msg, len, flags, addr_len);
		return ss_recv_oob(sk, ps, msg, len, flags);
	}
	timeo = sock_rcvtimeo(sk, flags & MSG_DONTWAIT);
	if (ss && READ_ONCE(ss->state) == SP_PENDING) {
		err = ss_recv_pending(sk, ss, flags, &timeo);
		if (err)
			return err;
	}
	ss = ss_paired(sk);
	if (!ss)
		return ss_tcp_recvmsg(sk, msg, len, flags, addr_len);

	r = ss->pair->ring[ss->side];
	lock_sock(sk);
	target = sock_rcvlowat(sk, flags & MSG_WAITALL, len);
	while (copied < len) {
		/* MSG_TRUNC: TCP discards (or, peeking, counts) without copying. */
		n = ss_ring_read(r, (flags & MSG_TRUNC) ? NULL : &msg->msg_iter,
				 len - copied, peek ? copied : 0, peek);
		if (n > 0) {
			copied += n;
			if (!peek)
				ss_kick_peer(ss, false);
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
			if (ss_ring_avail(r) <= (peek ? copied : 0))
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
		if (ss->busy_poll_us) {
			release_sock(sk);
			n = ss_busy_poll(ss, r);
			lock_sock(sk);
			if (n)
				continue;
		}
		add_wait_queue(sk_sleep(sk), &wait);
		sk_wait_event(sk, &timeo,
			      ss_ring_avail(r) > (peek ? copied : 0) || sk->sk_err ||
			      (READ_ONCE(sk->sk_shutdown) & RCV_SHUTDOWN), &wait);
		remove_wait_queue(sk_sleep(sk), &wait);
	}
	release_sock(sk);
	if (copied)
		return copied;
	return err;
}

static int ss_ioctl(struct sock *sk, int cmd, int *karg)
{
	struct ss_sock *ss = ss_paired(sk);

	if (!ss)
		return tcp_prot.ioctl(sk, cmd, karg);
	switch (cmd) {
	case SIOCINQ:
		*karg = ss_ring_avail(ss->pair->ring[ss->side]);
		return 0;
	case SIOCOUTQ: {
		/* Written but not yet read by the peer: TCP's unacked bytes. */
		struct ss_ring *r = ss->pair->ring[!ss->side];

		*karg = READ_ONCE(r->head) - smp_load_acquire(&r->tail);
		return 0;
	}
	case SIOCOUTQNSD:
		*karg = 0;
		return 0;
	}
	return tcp_prot.ioctl(sk, cmd, karg);
}

/* tcp_poll asks this when TCP's own queue is not readable: honour
 * SO_RCVLOWAT as TCP does for its queue. */
static bool ss_sock_is_readable(struct sock *sk)
{
	struct ss_sock *ss = ss_paired(sk);

	return ss && ss_ring_avail(ss->pair->ring[ss->side]) >=
		     max_t(int, READ_ONCE(sk->sk_rcvlowat), 1);
}

/* ---- teardown entry points ---- */

static void ss_close(struct sock *sk, long timeout)
{
	struct proto *base = ss_fam[ss_family_of(sk)].base_prot;
	bool listener = ss_of(sk) == &ss_listener_mark;

	if (listener)
		__module_get(THIS_MODULE);	/* keep our code while TCP closes */
	/* TCP resets a connection closed with received data unread
	 * (tcp_close, RFC 2525) and our ring is received data it cannot see:
	 * linger 0 takes tcp_close down the same reset path. Nobody can read
	 * the option any more: the file is gone. */
	if (ss_teardown(sk)) {
		lock_sock(sk);	/* sk_flags: softirq sets bits too */
		sock_set_flag(sk, SOCK_LINGER);
		WRITE_ONCE(sk->sk_lingertime, 0);
		release_sock(sk);
	}
	/* A child of a prepared listener that never paired still has the
	 * listen proto; TCP's own closes it. */
	WRITE_ONCE(sk->sk_prot, base);
	base->close(sk, timeout);
	if (listener)
		module_put(THIS_MODULE);
}

static int ss_disconnect(struct sock *sk, int flags)
{
	ss_teardown(sk);
	return tcp_prot.disconnect(sk, flags);
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
	struct ss_sock *ss = ss_paired(sk);
	struct ss_ring *r;

	if (!ss)
		return mask;
	r = ss->pair->ring[ss->side];
	if (ss_ring_avail(r) >= max_t(int, READ_ONCE(sk->sk_rcvlowat), 1))
		mask |= EPOLLIN | EPOLLRDNORM;
	if (READ_ONCE(ss->pair->urg_valid[ss->side]))
		mask |= EPOLLPRI;
	if (!ss_peer_gone(ss) && !(READ_ONCE(sk->sk_shutdown) & SEND_SHUTDOWN)) {
		if (ss_ring_free_space(ss->pair->ring[!ss->side])) {
			mask |= EPOLLOUT | EPOLLWRNORM;
		} else {
			mask &= ~(EPOLLOUT | EPOLLWRNORM);
			set_bit(SOCK_NOSPACE, &sock->flags);
			/* The reader may have freed space since the check. */
			smp_mb__after_atomic();
			if (ss_ring_free_space(ss->pair->ring[!ss->side]))
				mask |= EPOLLOUT | EPOLLWRNORM;
		}
	}
	return mask;
}

static ssize_t ss_splice_read(struct socket *sock, loff_t *ppos,
			      struct pipe_inode_info *pipe, size_t len,
			      unsigned int flags)
{
	struct ss_sock *ss = ss_of(sock->sk);

	/* Through recvmsg, which knows the ring (and a pending socket). */
	if (ss && ss != &ss_listener_mark)
		return copy_splice_read(sock->file, ppos, pipe, len, flags);
	return ss_fam[ss_family_of(sock->sk)].base_ops->splice_read(sock, ppos, pipe, len, flags);
}

#if !SS_RECVMSG_ADDR_LEN
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
#if SS_RECVMSG_ADDR_LEN
	f->prot.recvmsg = ss_recvmsg;
#else
	f->prot.recvmsg = ss_recvmsg_noaddr;
#endif
	f->prot.ioctl = ss_ioctl;
	f->prot.sock_is_readable = ss_sock_is_readable;
	f->prot.close = ss_close;
	f->prot.disconnect = ss_disconnect;
	f->prot.destroy = ss_destroy;

	/* Children of a prepared listener are cloned from this one, which
	 * takes a module reference per child (sk_prot_alloc). The same
	 * overrides serve them: each falls through to TCP for a socket that
	 * is not paired. */
	f->listen_prot = f->prot;
	f->listen_prot.owner = THIS_MODULE;

	f->ops = *f->base_ops;
	f->ops.poll = ss_poll;
	f->ops.splice_read = ss_splice_read;
}

/* The first socket of a family gives us TCP's proto_ops for it (IPv6's
 * are not exported). */
int ss_prepare_family(struct sock *sk, int fam)
{
	struct proto *want = fam == SS_INET6 ? &tcpv6_prot : &tcp_prot;
	struct ss_family *f = &ss_fam[fam];
	const struct proto_ops *ops;

	if (smp_load_acquire(&f->ready))
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
		smp_store_release(&f->ready, true);
	}
	spin_unlock_bh(&ss_fam_lock);
	return 0;
}

/* Accepted sockets inherit the listener's proto_ops (do_accept), and
 * children its proto (sk_clone_lock): preparing the listener is how a
 * passive socket gets our poll and splice_read before it exists. */
int ss_prepare_listener(struct sock *sk)
{
	int fam = ss_family_of(sk), err;

	err = ss_prepare_family(sk, fam);
	if (err)
		return err;
	if (ss_of(sk) == &ss_listener_mark)
		return 1;	/* a program on another cgroup level did it */
	if (__sk_user_data(sk) || sk->sk_prot != ss_fam[fam].base_prot ||
	    READ_ONCE(sk->sk_socket->ops) != ss_fam[fam].base_ops)
		return -EBUSY;
	__module_get(THIS_MODULE);	/* dropped at the listener's teardown */
	__rcu_assign_sk_user_data_with_flags(sk, &ss_listener_mark, SK_USER_DATA_NOCOPY);
	WRITE_ONCE(sk->sk_socket->ops, &ss_fam[fam].ops);
	WRITE_ONCE(sk->sk_prot, &ss_fam[fam].listen_prot);
	return 0;
}
