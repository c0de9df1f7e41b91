// SPDX-License-Identifier: GPL-2.0
/*
 * The per-direction ring: the sender copies in (sendmsg), the receiver
 * copies out (recvmsg), so a sender runs ahead of its reader by up to the
 * ring's size and both sides batch. One producer and one consumer, each
 * serialized by its own socket lock; release/acquire on the cursors orders
 * the bytes and the page slots against them.
 *
 * Memory follows the bytes in flight, as with TCP. The producer puts a
 * page in a slot when it first writes there, taking a stashed one before
 * it allocates. The consumer takes the page out of every slot it has
 * drained, before it publishes the cursor that hands the slot back, and
 * stashes it. The producer never writes into the page the consumer still
 * reads (ss_ring_room), so a drained page is the consumer's alone. A
 * request/response connection so keeps a page or two per direction.
 *
 * Every page is charged to the writer socket's memory cgroup as it is
 * allocated, and the charge goes with the page when it is freed, by
 * whichever side frees it: so a container's memory.max bounds what its
 * writers leave in rings, also after they closed, and a charge refused at
 * the limit makes the writer wait (or EAGAIN), never invokes the OOM
 * killer. The pages also count in TCP's memory accounting (tcp_mem), whose
 * pressure and hard limit stop a writer as they stop TCP's, and in the
 * writer's queued bytes (sk_wmem_queued, under its socket lock), which
 * SO_MEMINFO and ss -m report. The producer trims the stash to
 * SS_RING_SPARE pages after each write; after a burst the consumer takes
 * the writer's lock to trim it.
 */
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/memcontrol.h>
#include <linux/page_counter.h>
#include <linux/sched/mm.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <net/sock.h>
#include <net/tcp.h>

#include "socksplice.h"

struct ss_ring *ss_ring_alloc(u32 kib, gfp_t gfp)
{
	struct ss_ring *r;
	u32 size;

	kib = clamp_t(u32, kib, SS_MIN_RING_KIB, SS_MAX_RING_KIB);
	size = roundup_pow_of_two(kib) << 10;
	if (size < PAGE_SIZE)
		size = PAGE_SIZE;
	r = kzalloc(sizeof(*r), gfp);
	if (!r)
		return NULL;
	r->size = size;
	r->mask = size - 1;
	r->nslots = size >> PAGE_SHIFT;
	r->pages = kcalloc(2 * r->nslots, sizeof(*r->pages), gfp | __GFP_NOWARN);
	if (!r->pages) {
		kfree(r);
		return NULL;
	}
	return r;
}

/* At pairing: the socket that will write into r pays for its pages. */
void ss_ring_attach(struct ss_ring *r, struct sock *writer, struct sock *reader)
{
	sock_hold(writer);
	sock_hold(reader);
	r->wsk = writer;
	r->rsk = reader;
	r->memory_allocated = writer->sk_prot->memory_allocated;
	ss_ring_set_limit(r);
}

/*
 * What TCP would let the writer have outstanding towards a reader that
 * does not read, at most the ring: the reader's receive buffer, plus the
 * writer's send buffer. A send buffer the application did not set grows
 * as TCP's autotuning would let it (tcp_wmem[2]); TCP_NOTSENT_LOWAT caps
 * the part beyond the reader's buffer, which TCP would still hold unsent,
 * overshooting the mark by at most a page as TCP's writes overshoot it by
 * a segment. So SO_SNDBUF, SO_RCVBUF and TCP_NOTSENT_LOWAT bound a writer
 * as they bound TCP's. The writer reads them again whenever the ring is
 * full by the limit it last saw; returns whether the limit changed.
 */
bool ss_ring_set_limit(struct ss_ring *r)
{
	struct sock *w = r->wsk;
	u64 snd = READ_ONCE(w->sk_sndbuf), lowat = tcp_notsent_lowat(tcp_sk(w));

	if (!(READ_ONCE(w->sk_userlocks) & SOCK_SNDBUF_LOCK))
		snd = max_t(u64, snd, READ_ONCE(sock_net(w)->ipv4.sysctl_tcp_wmem[2]));
	snd = min_t(u64, snd, lowat + PAGE_SIZE);
	snd += READ_ONCE(r->rsk->sk_rcvbuf);
	snd = max_t(u32, min_t(u64, snd, r->size), PAGE_SIZE);
	if (snd == r->limit)
		return false;
	/* The line is the reader's too: written only when it changes. */
	WRITE_ONCE(r->limit, snd);
	return true;
}

/*
 * The writer, with its socket locked: whether what is queued, with len
 * more, would exceed a page. Its cached tail (never ahead of the reader's)
 * answers first; the reader's line, written on every read, is read only
 * when that view says more than a page.
 */
bool ss_ring_queued_over_page(struct ss_ring *r, size_t len)
{
	if (r->head - r->cached_tail + len <= PAGE_SIZE)
		return false;
	/* Acquire: as in ss_ring_write. */
	r->cached_tail = smp_load_acquire(&r->tail);
	return r->head - r->cached_tail + len > PAGE_SIZE;
}

/* Bytes beyond the reader's receive buffer: what TCP would still hold
 * unsent in the writer's queue (SIOCOUTQ, SIOCOUTQNSD).
 */
u32 ss_ring_unsent(struct ss_ring *r)
{
	u32 used = ss_ring_used(r), rcv = READ_ONCE(r->rsk->sk_rcvbuf);

	return used > rcv ? used - rcv : 0;
}

static struct page **ss_stash(struct ss_ring *r, u32 i)
{
	return &r->pages[r->nslots + (i & (r->nslots - 1))];
}

/* Any context: the page's memory cgroup charge goes with the page. */
static void ss_page_free(struct ss_ring *r, struct page *pg)
{
	__free_page(pg);
	atomic_long_dec(r->memory_allocated);
	atomic_long_sub(PAGE_SIZE, &ss_live_ring_bytes);
}

/* Under wsk's lock: a page no longer counts in the writer's queue. */
static void ss_page_unqueue(struct ss_ring *r)
{
	if (r->wsk_gone)
		return;
	r->charged--;
	sk_wmem_queued_add(r->wsk, -(int)PAGE_SIZE);
}

/* Under wsk's lock: frees stashed pages beyond keep. */
static void ss_ring_trim(struct ss_ring *r, u32 keep)
{
	/* Acquire: the consumer stashed the page before publishing it. */
	while (smp_load_acquire(&r->spare_head) - r->spare_tail > keep) {
		ss_page_free(r, *ss_stash(r, r->spare_tail));
		/* Release: the place is the consumer's again. */
		smp_store_release(&r->spare_tail, r->spare_tail + 1);
		ss_page_unqueue(r);
	}
}

/* The writer tears down, with its socket locked: no page will be written
 * again, and what stays (unread bytes) is no longer charged to it.
 */
void ss_ring_writer_gone(struct ss_ring *r)
{
	if (r->wsk_gone)
		return;
	ss_ring_trim(r, 0);
	sk_wmem_queued_add(r->wsk, -r->charged * (int)PAGE_SIZE);
	r->charged = 0;
	r->wsk_gone = true;
}

/* After a burst the reader gives the writer's memory back: with its own
 * socket unlocked, so two sockets' locks are never held at once.
 */
/*
 * The reader, with its socket locked: after a burst, once the ring is empty
 * and the writer has taken no stashed page since the reader last looked
 * (it is idle), the stash beyond SS_RING_SPARE pages should go. A stream
 * keeps its pages circulating.
 */
bool ss_ring_reader_should_trim(struct ss_ring *r)
{
	u32 st;
	bool idle;

	/* No more than SS_RING_SPARE pages stashed even if the writer took
	 * none since the reader last looked: decided without reading the
	 * writer's line, which it writes on every message.
	 */
	if (r->spare_head - r->reader_mark <= SS_RING_SPARE)
		return false;
	st = READ_ONCE(r->spare_tail);
	idle = st == r->reader_mark;
	r->reader_mark = st;
	return idle && r->spare_head - st > SS_RING_SPARE && !ss_ring_avail(r);
}

void ss_ring_reader_trim(struct ss_ring *r)
{
	lock_sock(r->wsk);
	ss_ring_trim(r, SS_RING_SPARE);
	release_sock(r->wsk);
}

/* After both ends tore down. */
void ss_ring_free(struct ss_ring *r)
{
	u32 i;

	if (!r)
		return;
	WARN_ON_ONCE(r->charged);
	for (i = 0; i < r->nslots; i++)
		if (r->pages[i])
			ss_page_free(r, r->pages[i]);
	for (i = r->spare_tail; i != r->spare_head; i++)
		ss_page_free(r, *ss_stash(r, i));
	if (r->wsk) {
		sock_put(r->wsk);
		sock_put(r->rsk);
	}
	kfree(r->pages);
	kfree(r);
}

/*
 * The producer never enters the page the consumer is still reading (the
 * tail's page, one lap on): that page is the consumer's until it has
 * drained it and taken it out of its slot.
 */
static u32 ss_ring_room(const struct ss_ring *r, u32 head, u32 tail)
{
	u32 used = head - (tail & (u32)PAGE_MASK), limit = READ_ONCE(r->limit);

	return used < limit ? limit - used : 0;
}

/* TCP's rule for a writable socket (sk_stream_is_writeable): the free
 * space is at least half of what is queued, so a writer is not woken for
 * every byte its reader takes.
 */
bool ss_ring_writable(struct ss_ring *r)
{
	u32 room = ss_ring_free_space(r);

	return room && room >= ss_ring_used(r) / 2;
}

u32 ss_ring_free_space(struct ss_ring *r)
{
	/* Acquire: the bytes and pages before tail are done with. */
	return ss_ring_room(r, READ_ONCE(r->head), smp_load_acquire(&r->tail));
}

/*
 * Ring pages hold bytes a reader has not taken, which no reclaim can free:
 * they never take the last quarter (at most 64 MiB) of the writer's
 * memory cgroup or of any of its ancestors with a limit, so the
 * container's own allocations keep room and its writers wait instead of
 * driving it into its OOM killer. TCP's buffers stay far below that.
 */
static bool ss_memcg_room(struct sock *sk)
{
#ifdef CONFIG_MEMCG
	struct mem_cgroup *m;
	bool ok = true;

	rcu_read_lock();
	for (m = mem_cgroup_from_sk(sk); m; m = parent_mem_cgroup(m)) {
		unsigned long max = READ_ONCE(m->memory.max);
		unsigned long keep = min_t(unsigned long, max / 4, SZ_64M >> PAGE_SHIFT);

		if (max != PAGE_COUNTER_MAX && page_counter_read(&m->memory) + keep + 1 > max) {
			ok = false;
			break;
		}
	}
	rcu_read_unlock();
	return ok;
#else
	return true;
#endif
}

/*
 * A new page, charged to the writer socket's memory cgroup. The charge may
 * reclaim but never invokes the OOM killer (__GFP_RETRY_MAYFAIL): at the
 * cgroup's limit the writer waits or gets EAGAIN, as TCP's writers do.
 */
static struct page *ss_page_alloc(struct sock *sk)
{
	struct mem_cgroup *old = set_active_memcg(mem_cgroup_from_sk(sk));
	struct page *pg = alloc_page(GFP_KERNEL_ACCOUNT | __GFP_RETRY_MAYFAIL | __GFP_NOWARN);

	set_active_memcg(old);
	return pg;
}

/* A page for a slot: a stashed one, or a new one the writer pays for. */
static struct page *ss_page_get(struct ss_ring *r, struct sock *sk)
{
	struct page *pg;

	/* Acquire/release: as in ss_ring_trim. */
	if (r->spare_tail != smp_load_acquire(&r->spare_head)) {
		pg = *ss_stash(r, r->spare_tail);
		/* Release: the place is the consumer's again. */
		smp_store_release(&r->spare_tail, r->spare_tail + 1);
		return pg;
	}
	/* Under memory pressure (the host's tcp_mem or the writer's memory
	 * cgroup) TCP shrinks the send buffer and its writers wait once
	 * their queue fills it (sk_stream_memory_free), and beyond tcp_mem's
	 * hard limit it allocates nothing: so do ours.
	 */
	if (tcp_under_memory_pressure(sk) &&
	    READ_ONCE(sk->sk_wmem_queued) >= READ_ONCE(sk->sk_sndbuf))
		return NULL;
	if (atomic_long_read(sk->sk_prot->memory_allocated) >=
	    READ_ONCE(sk->sk_prot->sysctl_mem[2]) || !ss_memcg_room(sk))
		return NULL;
	pg = ss_page_alloc(sk);
	if (!pg)
		return NULL;
	atomic_long_inc(sk->sk_prot->memory_allocated);
	sk_wmem_queued_add(sk, PAGE_SIZE);
	r->charged++;
	atomic_long_add(PAGE_SIZE, &ss_live_ring_bytes);
	return pg;
}

/* The writer, with its socket locked. Returns bytes copied (0: ring
 * full), -EFAULT, or -ENOBUFS when no page could be had within the
 * socket memory limits.
 */
int ss_ring_write(struct ss_ring *r, struct sock *sk, struct iov_iter *from, size_t len)
{
	u32 head = r->head, free, done = 0;
	bool took = false;
	int err = 0;

	free = ss_ring_room(r, head, r->cached_tail);
	if (free < len) {
		/* Acquire: the consumer is done with what lies before tail. */
		r->cached_tail = smp_load_acquire(&r->tail);
		free = ss_ring_room(r, head, r->cached_tail);
	}
	len = min_t(size_t, len, free);
	while (done < len) {
		u32 off = (head + done) & r->mask;
		u32 slot = off >> PAGE_SHIFT, poff = off & ~PAGE_MASK;
		u32 chunk = min_t(u32, len - done, PAGE_SIZE - poff);
		size_t c;

		if (!r->pages[slot]) {
			struct page *pg = ss_page_get(r, sk);

			if (!pg) {
				err = -ENOBUFS;
				break;
			}
			r->pages[slot] = pg;
			took = true;
		}
		c = copy_page_from_iter(r->pages[slot], poff, chunk, from);
		done += c;
		if (c < chunk) {
			err = -EFAULT;
			break;
		}
	}
	/* Keeps what this write cycled through, so a stream reuses its pages
	 * instead of allocating them again. The stash grows only by pages
	 * this side filled, each taken by a write that trimmed after it, so
	 * a write that took no page has nothing new to trim (and leaves the
	 * reader's line alone).
	 */
	if (took)
		ss_ring_trim(r, max_t(u32, SS_RING_SPARE, (done >> PAGE_SHIFT) + 2));
	if (!done)
		return err;
	/* Release: the bytes and their pages before the new head. */
	smp_store_release(&r->head, head + done);
	return done;
}

/* The consumer stashes the pages of the slots it drained, moving the
 * tail from old to new, before it publishes new. The stash has a place
 * for every slot, so it cannot overflow.
 */
static void ss_ring_drained(struct ss_ring *r, u32 old, u32 new)
{
	u32 pos = old & (u32)PAGE_MASK;

	for (; new - pos >= PAGE_SIZE; pos += PAGE_SIZE) {
		u32 slot = (pos & r->mask) >> PAGE_SHIFT;
		struct page *pg = r->pages[slot];

		if (!pg)
			continue;
		r->pages[slot] = NULL;
		*ss_stash(r, r->spare_head) = pg;
		/* Release: the page is in its place. */
		smp_store_release(&r->spare_head, r->spare_head + 1);
	}
}

/* Copies up to len bytes starting skip bytes into the readable data (to
 * NULL: copies nothing, as TCP's MSG_TRUNC); consumes them unless peek.
 * Returns bytes copied (0: nothing there) or -EFAULT.
 */
int ss_ring_read(struct ss_ring *r, struct iov_iter *to, size_t len,
		 u32 skip, bool peek)
{
	u32 tail = r->tail, avail, done = 0;

	avail = r->cached_head - tail;
	if (avail < skip + len) {
		/* Acquire: pairs with the producer's release of head. */
		r->cached_head = smp_load_acquire(&r->head);
		avail = r->cached_head - tail;
	}
	if (avail <= skip)
		return 0;
	len = min_t(size_t, len, avail - skip);
	if (!to)
		done = len;
	while (done < len) {
		u32 off = (tail + skip + done) & r->mask;
		u32 slot = off >> PAGE_SHIFT, poff = off & ~PAGE_MASK;
		u32 chunk = min_t(u32, len - done, PAGE_SIZE - poff);
		size_t c = copy_page_to_iter(r->pages[slot], poff, chunk, to);

		done += c;
		if (c < chunk)
			break;
	}
	if (!done)
		return -EFAULT;
	if (!peek) {
		ss_ring_drained(r, tail, tail + done);
		/* Release: after the copy and the emptied slots. */
		smp_store_release(&r->tail, tail + done);
	}
	return done;
}
