// SPDX-License-Identifier: GPL-2.0
/*
 * The per-direction ring: the sender copies in (sendmsg), the receiver
 * copies out (recvmsg), so a sender runs ahead of its reader by up to the
 * ring's size and both sides batch. One producer and one consumer, each
 * serialized by its own socket lock; release/acquire on the cursors orders
 * the bytes against them.
 *
 * The ring is a power-of-two span of page slots. The producer fills a slot
 * with a page the first time it writes there, in process context, so a
 * connection pays memory only for what its peer actually left unread, as
 * with TCP, and pairing (often in softirq) allocates only the slot array.
 * Pages stay until the ring is freed.
 */
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/slab.h>

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
	r->pages = kcalloc(size >> PAGE_SHIFT, sizeof(*r->pages), gfp | __GFP_NOWARN);
	if (!r->pages) {
		kfree(r);
		return NULL;
	}
	return r;
}

void ss_ring_free(struct ss_ring *r)
{
	u32 i;

	if (!r)
		return;
	for (i = 0; i < r->size >> PAGE_SHIFT; i++) {
		if (r->pages[i]) {
			__free_page(r->pages[i]);
			atomic_long_sub(PAGE_SIZE, &ss_live_ring_bytes);
		}
	}
	kfree(r->pages);
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

/* Returns bytes copied (0: ring full), -EFAULT or -ENOMEM. */
int ss_ring_write(struct ss_ring *r, struct iov_iter *from, size_t len)
{
	u32 head = r->head, free, done = 0;
	int err = 0;

	free = r->size - (head - r->cached_tail);
	if (free < len) {
		r->cached_tail = smp_load_acquire(&r->tail);
		free = r->size - (head - r->cached_tail);
	}
	len = min_t(size_t, len, free);
	while (done < len) {
		u32 off = (head + done) & r->mask;
		u32 slot = off >> PAGE_SHIFT, poff = off & ~PAGE_MASK;
		u32 chunk = min_t(u32, len - done, PAGE_SIZE - poff);
		size_t c;

		if (!r->pages[slot]) {
			struct page *p = alloc_page(GFP_KERNEL | __GFP_NOWARN);

			if (!p) {
				err = -ENOMEM;
				break;
			}
			r->pages[slot] = p;
			atomic_long_add(PAGE_SIZE, &ss_live_ring_bytes);
		}
		c = copy_page_from_iter(r->pages[slot], poff, chunk, from);
		done += c;
		if (c < chunk) {
			err = -EFAULT;
			break;
		}
	}
	if (!done)
		return err;
	smp_store_release(&r->head, head + done);
	return done;
}

/* Copies up to len bytes starting skip bytes into the readable data (to
 * NULL: copies nothing, as TCP's MSG_TRUNC); consumes them unless peek.
 * Returns bytes copied (0: nothing there) or -EFAULT. */
int ss_ring_read(struct ss_ring *r, struct iov_iter *to, size_t len,
		 u32 skip, bool peek)
{
	u32 tail = r->tail, avail, done = 0;

	avail = r->cached_head - tail;
	if (avail < skip + len) {
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
	if (!peek)
		smp_store_release(&r->tail, tail + done);
	return done;
}
