// SPDX-License-Identifier: GPL-2.0
/*
 * The per-direction ring: the sender copies in (sendmsg), the receiver
 * copies out (recvmsg), so a sender runs ahead of its reader by up to the
 * ring's size and both sides batch. One producer and one consumer, each
 * serialized by its own socket lock; release/acquire on the cursors orders
 * the bytes against them.
 */
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/slab.h>

#include "socksplice.h"

struct ss_ring *ss_ring_alloc(u32 kib, gfp_t gfp)
{
	struct ss_ring *r;

	kib = clamp_t(u32, kib, SS_MIN_RING_KIB, SS_MAX_RING_KIB);
	kib = roundup_pow_of_two(kib);
	r = kzalloc(sizeof(*r), gfp);
	if (!r)
		return NULL;
	r->size = kib << 10;
	r->mask = r->size - 1;
	/* Called from sock_ops, often in softirq: no vmalloc. A large ring
	 * that cannot be had atomically leaves the connection on TCP. */
	r->buf = kmalloc(r->size, gfp | __GFP_NOWARN);
	if (!r->buf) {
		kfree(r);
		return NULL;
	}
	return r;
}

void ss_ring_free(struct ss_ring *r)
{
	if (!r)
		return;
	kfree(r->buf);
	kfree(r);
}

u32 ss_ring_avail(struct ss_ring *r)
{
	return smp_load_acquire(&r->head) - r->tail;
}

u32 ss_ring_free_space(struct ss_ring *r)
{
	return r->size - (READ_ONCE(r->head) - smp_load_acquire(&r->tail));
}

/* Returns bytes copied (0: ring full) or -EFAULT. */
int ss_ring_write(struct ss_ring *r, struct iov_iter *from, size_t len)
{
	u32 head = r->head, free, off, first, n, c;

	free = r->size - (head - r->cached_tail);
	if (free < len) {
		r->cached_tail = smp_load_acquire(&r->tail);
		free = r->size - (head - r->cached_tail);
	}
	n = min_t(size_t, len, free);
	if (!n)
		return 0;
	off = head & r->mask;
	first = min(n, r->size - off);
	c = copy_from_iter(r->buf + off, first, from);
	if (c == first && n > first)
		c += copy_from_iter(r->buf, n - first, from);
	if (!c)
		return -EFAULT;
	smp_store_release(&r->head, head + c);
	return c;
}

/* Copies up to len bytes starting skip bytes into the readable data;
 * consumes them unless peek. Returns bytes copied (0: nothing there) or
 * -EFAULT. */
int ss_ring_read(struct ss_ring *r, struct iov_iter *to, size_t len,
		 u32 skip, bool peek)
{
	u32 tail = r->tail, avail, off, first, n, c;

	avail = r->cached_head - tail;
	if (avail < skip + len) {
		r->cached_head = smp_load_acquire(&r->head);
		avail = r->cached_head - tail;
	}
	if (avail <= skip)
		return 0;
	n = min_t(size_t, len, avail - skip);
	off = (tail + skip) & r->mask;
	first = min(n, r->size - off);
	c = copy_to_iter(r->buf + off, first, to);
	if (c == first && n > first)
		c += copy_to_iter(r->buf, n - first, to);
	if (!c)
		return -EFAULT;
	if (!peek)
		smp_store_release(&r->tail, tail + c);
	return c;
}
